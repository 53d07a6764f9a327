"""The loaded configuration: frozen, fully validated, secrets wrapped."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from monitor.rules.model import DEFAULT_RULES, Rule
from monitor.secret import Secret


@dataclass(frozen=True)
class MonitorSettings:
    database_url: Secret  # may carry a database password
    poll_interval: timedelta
    bitget_url: str
    request_timeout: timedelta
    risk_poll_interval: timedelta = timedelta(seconds=5)
    spot_poll_interval: timedelta = timedelta(minutes=5)
    ip_budget: tuple[int, float] = (6000, 60.0)  # requests per window seconds
    ip_lockout: timedelta = timedelta(minutes=5)
    permanent_error_retry: timedelta = timedelta(minutes=5)
    stale_grace: timedelta = timedelta(seconds=30)
    lease_ttl: timedelta = timedelta(seconds=30)
    max_response_size: int = 4 * 1024 * 1024  # bytes
    state_dir: str = ""  # the alert spool's folder; empty: chosen from the database URL (monitor.alerts.spool)

    @property
    def database_display(self) -> str:
        """The database URL with any password masked, for logs and pages."""
        return mask_url_password(self.database_url.reveal())


@dataclass(frozen=True)
class StorageSettings:
    raw_retention: timedelta = timedelta(days=7)
    snapshot_interval: timedelta = timedelta(minutes=5)
    hourly_retention: timedelta = timedelta(days=400)
    write_buffer: int = 10_000


@dataclass(frozen=True)
class MarketSettings:
    """The shared market feed: public marks of the positions' product types, spot prices, confirming reads."""

    mark_interval: timedelta = timedelta(seconds=1)
    spot_interval: timedelta = timedelta(seconds=10)
    confirm_timeout: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class AccountConfig:
    name: str
    api_key: Secret
    api_secret: Secret  # HMAC secret or PEM private key
    passphrase: Secret
    demo: bool
    products: tuple[str, ...]
    tags: tuple[str, ...]
    key_type: str  # "hmac" or "rsa", detected from the secret ("" when the credentials were not read)
    secret_file: Path | None = None
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    urls: tuple[Secret, ...]  # apprise URLs carry tokens and passwords
    min_severity: str = "warning"
    quiet_hours: tuple[time, time] | None = None  # local start and end; may wrap past midnight
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    send_resolved: bool = True


@dataclass(frozen=True)
class AlertSettings:
    templates: Path | None = None  # the user's template folder, searched before the built-in one
    max_items: int = 10


@dataclass(frozen=True)
class ReportSchedule:
    """When a report is due, in its time zone: "hourly" (on the hour), "daily 08:00" or "weekly mon 08:00"."""

    kind: str  # hourly | daily | weekly
    at: time = time(0, 0)  # local time of day (daily, weekly)
    weekday: int = 0  # 0 is Monday (weekly)
    text: str = "hourly"  # as written, for messages

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ReportConfig:
    """A scheduled report ([[reports]]): which accounts, when, and where it goes."""

    name: str
    schedule: ReportSchedule
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    accounts: tuple[str, ...] = ("*",)  # globs on account names
    tags: tuple[str, ...] = ()  # when set, only accounts carrying one of these
    channels: tuple[str, ...] = ()  # resolved by the loader: the file's list, or every channel

    def selects(self, account: str, tags: tuple[str, ...]) -> bool:
        """Whether the report covers an account: a glob of `accounts` matches and, when `tags` is set, the
        account carries one of them (the same selection as a rule's)."""
        if not any(fnmatch.fnmatchcase(account, pattern) for pattern in self.accounts):
            return False
        return not self.tags or any(t in self.tags for t in tags)


@dataclass(frozen=True)
class WebSettings:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    token: Secret | None = None  # None: no authentication (refused on a non-loopback address by default)
    metrics_public: bool = False
    ready_fresh_share: float = 0.8
    public_url: str | None = None
    max_connections: int = 256  # open connections to the status page; past it new ones get a 503
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))  # the page's times (UTC by default)


@dataclass(frozen=True)
class Config:
    path: Path
    monitor: MonitorSettings
    accounts: tuple[AccountConfig, ...]
    storage: StorageSettings = field(default_factory=StorageSettings)
    market: MarketSettings = field(default_factory=MarketSettings)
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    rules: tuple[Rule, ...] = DEFAULT_RULES  # the file's [[rules]], or these when it has none
    alerts: AlertSettings = field(default_factory=AlertSettings)
    web: WebSettings = field(default_factory=WebSettings)
    reports: tuple[ReportConfig, ...] = ()
    warnings: tuple[str, ...] = ()  # things `check` reports: literal secrets, readable secret files

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)


def mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
