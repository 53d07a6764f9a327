"""bitget-monitor: a risk monitor for many Bitget accounts."""

__version__ = "0.1.0"
