"""What the page reads (web.status.StatusReader), built from the running service's parts."""

from monitor.readmodel.reader import ServiceReader

__all__ = ["ServiceReader"]
