"""Every key the accounts file accepts, declared once, with its parser, default and documentation.

The loader rejects anything not declared here; a test checks that each key is documented in
accounts.example.toml and the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.config import values


def _size(value: Any) -> int:
    from monitor.exchange.bitget.body import parse_size  # the client owns its cap; imported when needed

    return parse_size(value)


@dataclass(frozen=True)
class Setting:
    section: str  # one of SECTIONS
    key: str
    parse: Callable[[Any], Any]
    default: Any = None  # None: required (unless `optional`)
    optional: bool = False
    doc: str = ""
    secret: bool = False  # its value never appears in a message


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "monitor",
        "database_url",
        values.nonempty_text,
        "sqlite:///monitor.db",
        doc="SQLAlchemy URL of the database; env MONITOR_DATABASE_URL overrides",
        secret=True,
    ),
    Setting("monitor", "poll_interval", values.duration, "30s", doc="how often each account is read"),
    Setting(
        "monitor",
        "bitget_url",
        values.http_url,
        "https://api.bitget.com",
        doc="Bitget's REST host, or the simulator, or a proxy",
    ),
    Setting(
        "monitor",
        "request_timeout",
        values.duration,
        "10s",
        doc="how long one request to Bitget may take before it counts as a timeout",
    ),
    Setting(
        "monitor",
        "risk_poll_interval",
        values.duration,
        "5s",
        doc="how often an account near liquidation is re-read (positions and account only)",
    ),
    Setting(
        "monitor",
        "spot_poll_interval",
        values.duration,
        "5m",
        doc="how often a classic account's spot balances are read (valued at the spot prices in between)",
    ),
    Setting(
        "monitor",
        "ip_budget",
        values.budget,
        "6000/min",
        doc="Bitget's per-IP request budget, shared by every account this process polls",
    ),
    Setting(
        "monitor", "ip_lockout", values.duration, "5m", doc="how long to pause everything when Bitget locks the IP out"
    ),
    Setting(
        "monitor",
        "permanent_error_retry",
        values.duration,
        "5m",
        doc="how often an account with a permanent error (bad key, IP, permission) is retried",
    ),
    Setting("monitor", "stale_grace", values.duration, "30s", doc="data older than poll_interval plus this is stale"),
    Setting(
        "monitor",
        "lease_ttl",
        values.duration,
        "30s",
        doc="with PostgreSQL, how long a process holds an account it stopped renewing (shared polling)",
    ),
    Setting(
        "monitor",
        "max_response_size",
        _size,
        "4MB",
        doc="the largest answer read from Bitget; a larger one is dropped as a malformed answer and retried",
    ),
    Setting(
        "monitor",
        "state_dir",
        values.text,
        "",
        doc="where the alert spool lives (alert changes the database has not taken yet); empty: beside a SQLite "
        "database, else ~/.local/state/bitget-monitor",
    ),
    Setting(
        "storage",
        "raw_retention",
        values.duration,
        "7d",
        doc="how long raw snapshots and the equity series are kept before only hourly rollups remain",
    ),
    Setting(
        "storage",
        "snapshot_interval",
        values.duration,
        "5m",
        doc="balance and position rows are stored at least this often per account, and at every poll while the "
        "account is at risk or its positions or coins change; the equity series keeps every poll (0s: every poll)",
    ),
    Setting("storage", "hourly_retention", values.duration, "400d", doc="how long the hourly rollups are kept"),
    Setting(
        "storage",
        "write_buffer",
        values.positive_int,
        10000,
        doc="poll results held in memory while the database is unreachable; beyond it the oldest are dropped",
    ),
    Setting(
        "market",
        "mark_interval",
        values.duration,
        "1s",
        doc="how often the mark prices of the open positions' product types are read (one public request each)",
    ),
    Setting(
        "market",
        "spot_interval",
        values.duration,
        "10s",
        doc="how often the spot prices are read (one public request)",
    ),
    Setting(
        "market",
        "confirm_timeout",
        values.duration,
        "2s",
        doc="how long an alert raised by a mark waits for a confirming account read before it goes out as an estimate",
    ),
    Setting("accounts", "name", values.name, doc="unique account name, shown everywhere"),
    Setting("accounts", "api_key", values.nonempty_text, doc="the API key", secret=True),
    Setting(
        "accounts",
        "api_secret",
        values.nonempty_text,
        optional=True,
        doc="HMAC secret, or a PEM private key for an RSA (self-generated) key",
        secret=True,
    ),
    Setting(
        "accounts",
        "api_secret_file",
        values.nonempty_text,
        optional=True,
        doc="read the secret or PEM from this file instead (relative to the accounts file)",
    ),
    Setting(
        "accounts", "passphrase", values.nonempty_text, doc="the passphrase chosen when creating the key", secret=True
    ),
    Setting("accounts", "demo", values.boolean, False, doc="demo-trading key: sends paptrading: 1"),
    Setting(
        "accounts",
        "products",
        values.products,
        ["spot", "USDT-FUTURES"],
        doc="spot, USDT-FUTURES, COIN-FUTURES, USDC-FUTURES; unified accounts are detected",
    ),
    Setting("accounts", "tags", values.text_list, [], doc="free labels for grouping and rule selection"),
    Setting(
        "accounts",
        "channels",
        values.text_list,
        [],
        doc="channels that get every alert about this account, besides the rule's own",
    ),
    # [channels.NAME] in table form (the short form is NAME = ["apprise://..."]).
    Setting("channel", "urls", values.nonempty_text_list, doc="apprise URLs of the channel", secret=True),
    Setting(
        "channel",
        "min_severity",
        values.severity,
        "warning",
        doc="the least severe alert this channel gets: warning or critical",
    ),
    Setting(
        "channel",
        "quiet_hours",
        values.quiet_hours,
        optional=True,
        doc='e.g. "22:00-07:00": non-critical messages are held and sent as one summary when it ends',
    ),
    Setting("channel", "timezone", values.timezone, "UTC", doc="the time zone of quiet_hours, e.g. Europe/Berlin"),
    Setting("channel", "send_resolved", values.boolean, True, doc="whether this channel hears about resolved alerts"),
    Setting("rules", "name", values.name, doc="unique rule name, part of every alert's identity"),
    Setting("rules", "type", values.nonempty_text, doc="what the rule watches (see the rule types)"),
    Setting("rules", "warning", values.anything, optional=True, doc="the warning level"),
    Setting("rules", "critical", values.anything, optional=True, doc="the critical level"),
    Setting(
        "rules",
        "clear",
        values.anything,
        optional=True,
        doc="hysteresis: an alert resolves only once the value is this far past its level",
    ),
    Setting("rules", "for", values.duration_or_zero, "0s", doc="how long the condition must hold before firing"),
    Setting("rules", "repeat", values.duration, "30m", doc="reminder interval while an alert fires"),
    Setting("rules", "repeat_warning", values.duration, optional=True, doc="repeat for warnings, if different"),
    Setting("rules", "repeat_critical", values.duration, optional=True, doc="repeat for critical alerts, if different"),
    Setting("rules", "accounts", values.text_list, ["*"], doc="globs on account names the rule watches"),
    Setting("rules", "tags", values.text_list, [], doc="when set, only accounts with one of these tags"),
    Setting("rules", "channels", values.text_list, [], doc="where the rule's alerts go (default: every channel)"),
    Setting("rules", "send_resolved", values.boolean, True, doc="whether a resolved message is sent"),
    Setting("rules", "window", values.duration, optional=True, doc="drawdown: how far back the peak is taken (24h)"),
    Setting("rules", "horizon", values.duration, optional=True, doc="liquidation_probability: within how long (24h)"),
    Setting(
        "rules",
        "scope",
        values.nonempty_text,
        optional=True,
        doc='drawdown: "account" (each one) or "portfolio" (the selected accounts together)',
    ),
    Setting(
        "alerts",
        "templates",
        values.nonempty_text,
        optional=True,
        doc="a folder with your own message templates (relative to the accounts file)",
    ),
    Setting("alerts", "max_items", values.positive_int, 10, doc='alerts listed in one message before "and N more"'),
    Setting("reports", "name", values.name, doc="unique report name, shown in its title"),
    Setting(
        "reports",
        "schedule",
        values.schedule,
        doc='when it is sent: "hourly", "daily 08:00" or "weekly mon 08:00" (in its timezone)',
    ),
    Setting("reports", "timezone", values.timezone, "UTC", doc="the time zone of schedule, e.g. Europe/Berlin"),
    Setting("reports", "accounts", values.text_list, ["*"], doc="globs on account names the report covers"),
    Setting("reports", "tags", values.text_list, [], doc="when set, only accounts with one of these tags"),
    Setting("reports", "channels", values.text_list, [], doc="where the report goes (default: every channel)"),
    Setting("web", "listen", values.listen, "127.0.0.1:8080", doc="host:port the status page listens on"),
    Setting(
        "web",
        "token",
        values.nonempty_text,
        optional=True,
        doc="turns on authentication: a bearer token, or the password of the login form",
        secret=True,
    ),
    Setting(
        "web",
        "metrics_public",
        values.boolean,
        False,
        doc="whether /metrics is open even when a token is set (for a Prometheus without credentials)",
    ),
    Setting(
        "web",
        "ready_fresh_share",
        values.fraction,
        0.8,
        doc="/readyz fails while fewer than this share of the accounts have fresh data",
    ),
    Setting(
        "web",
        "public_url",
        values.http_url,
        optional=True,
        doc="where people reach the status page; messages link to it",
    ),
    Setting(
        "web",
        "max_connections",
        values.positive_int,
        256,
        doc="open connections the status page accepts; past it new ones are refused with a 503",
    ),
    Setting("web", "timezone", values.timezone, "UTC", doc="the time zone the status page shows times in"),
)

SECTIONS = ("monitor", "storage", "market", "alerts", "web", "channels", "rules", "reports", "accounts")


def section(name: str) -> dict[str, Setting]:
    return {s.key: s for s in SETTINGS if s.section == name}
