"""Every key the accounts file accepts, declared once, with its parser, default and documentation.

The loader rejects anything not declared here; a test checks that each key is documented in
accounts.example.toml and the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.config import values


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
        "storage",
        "raw_retention",
        values.duration,
        "7d",
        doc="how long every poll's snapshots are kept before only hourly rollups remain",
    ),
    Setting("storage", "hourly_retention", values.duration, "400d", doc="how long the hourly rollups are kept"),
    Setting(
        "storage",
        "write_buffer",
        values.positive_int,
        10000,
        doc="poll results held in memory while the database is unreachable; beyond it the oldest are dropped",
    ),
    Setting("accounts", "name", values.nonempty_text, doc="unique account name, shown everywhere"),
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
)

SECTIONS = ("monitor", "storage", "channels", "accounts")


def section(name: str) -> dict[str, Setting]:
    return {s.key: s for s in SETTINGS if s.section == name}
