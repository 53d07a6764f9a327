"""What the rules see of an account (AccountView) and what they say of it (Observation, Evaluation): the data
that crosses from the poller to the rules and from the rules to the alerts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from monitor.domain import AccountSnapshot, KeyInfo
from monitor.rules.model import Rule, Severity


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the rules see of one account."""

    name: str
    tags: tuple[str, ...]
    snapshot: AccountSnapshot | None  # the last good one
    last_good_at: datetime | None
    fresh: bool  # the snapshot is recent enough to judge (not stale)
    watched_since: datetime  # when this process started watching (no data yet counts from here)
    poll_interval: timedelta
    polled: bool = True  # read at least once by this process (before that, nothing is judged)
    permanent_error: bool = False  # a Bitget error that retrying does not fix
    error_code: str | None = None
    error_message: str | None = None
    key: KeyInfo | None = None
    stalled: timedelta = timedelta(0)  # time since the last good data when the monitor could not poll at all
    # (product type, symbol) -> the symbol's realized volatility per square root of a second (monitor.risk.odds),
    # None with too little mark history: liquidation_probability rules hold meanwhile.
    volatility: Callable[[str, str], float | None] | None = None
    estimated: bool = False  # positions at the latest mark, the read that would confirm them not in yet
    fix: str | None = None  # what fixes the last error (monitor.exchange.bitget.codes.fix_of)
    # On the first fresh data after a time without: when that time began (the last good data before it).
    blind_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    rule: Rule
    account: str | None  # None for portfolio rules
    subject: str  # "USDT-FUTURES BTCUSDT long", "USDT-FUTURES USDT", "" for the account as a whole
    severity: Severity | None  # None: the condition does not hold
    value: Decimal | None
    summary: str  # one line for people ("" when quiet: judged, no severity, no active alert)
    details: dict[str, str] = field(default_factory=dict)  # symbol, side, mark, liquidation price, ... (idem)
    held: bool = False  # the value cannot be judged now (no peak yet, no margin): the alert keeps its state

    @property
    def key(self) -> str:
        return alert_key(self.rule.name, self.account, self.subject)


def alert_key(rule: str, account: str | None, subject: str) -> str:
    return f"{rule}|{account or '*'}|{subject}"


@dataclass(frozen=True, slots=True)
class Evaluation:
    observations: tuple[Observation, ...]
    held: frozenset[str]  # rule names whose alerts for this account keep their state (no data to judge)


# What the rules are given besides the data, so they judge without calling back into anyone:
Current = Mapping[str, Severity]  # alert key -> the severity of its active alert (hysteresis is measured from it)
Peaks = Mapping[str, Decimal]  # rule name -> the equity peak within the rule's window, at the evaluation's time
NONE: Mapping[str, Any] = MappingProxyType({})
