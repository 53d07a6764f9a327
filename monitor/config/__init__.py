"""The accounts file: settings table, typed model and loader."""

from monitor.config.loader import load_config
from monitor.config.model import AccountConfig, Config, MonitorSettings

__all__ = ["AccountConfig", "Config", "MonitorSettings", "load_config"]
