"""What the poller knows about one account between polls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from operator import attrgetter

from monitor.config.model import AccountConfig
from monitor.domain import AccountSnapshot, KeyInfo, Position
from monitor.exchange.bitget.client import BitgetClient
from monitor.poller.lag import LoopWatch
from monitor.poller.spot import SpotBook
from monitor.rules.model import Rule, RuleType

INVALID_SNAPSHOT = "InvalidSnapshot"  # the error code of an answer whose numbers cannot be used
# Beyond these a number is not an amount, price or ratio any account can have; formatting or storing it could
# take the process down (a huge exponent written out in full), so the whole answer is refused.
MAGNITUDE = (-30, 20)  # allowed range of Decimal.adjusted() (the exponent of the leading digit)


class Status:
    OK = "ok"
    FAILING = "failing"  # transient errors: retried at the normal cadence
    UNREACHABLE = "unreachable"  # a permanent error: retried slowly until the configuration changes
    PENDING = "pending"  # not read yet


# What the page, the API, the metrics, /readyz and the summary line call an account's data, worst first: one
# account has one of these (unreachable before stale before failing), so the counts add up to the accounts.
STATUSES = ("unreachable", "stale", "failing", "pending", "ok")
FRESH = frozenset({"ok", "failing"})  # the statuses whose data is recent enough to show and judge
# The risk an account's firing alerts put it at, worst first; a risk outranks any data status, because an account
# at critical risk is not "ok" whatever the freshness of its data (which is shown beside it).
RISKS = ("liquidation", "critical", "warning")
ACCOUNT_STATUSES = RISKS + STATUSES  # what the page sorts and counts by, worst first


def account_status(status: str, has_snapshot: bool, stale: bool, error_code: str | None = None,
                   risk: str | None = None) -> str:  # fmt: skip
    """The one account status: its risk (from `risk`, one of RISKS, when given) or else its data health, from
    the poller's `status` of it, whether it has data, whether that is stale, and its error code (a snapshot
    whose numbers cannot be shown counts as failing). Without `risk` this is the data health alone."""
    if risk is not None:
        if risk not in RISKS:
            raise ValueError(f"risk must be one of {RISKS}, not {risk!r}")
        return risk
    if status == Status.UNREACHABLE:
        return "unreachable"
    if status == Status.PENDING and not has_snapshot:
        return "pending"
    if stale:
        return "stale"
    if status == Status.FAILING or error_code == INVALID_SNAPSHOT:
        return "failing"
    return "ok"


def margin_ratio(snapshot: AccountSnapshot) -> Decimal | None:
    """The highest of the account's cross risk ratios and its unified margin ratio (1 means liquidation)."""
    ratios = [f.cross_risk_ratio for f in snapshot.futures if f.cross_risk_ratio is not None]
    if snapshot.unified is not None and snapshot.unified.margin_ratio is not None:
        ratios.append(snapshot.unified.margin_ratio)
    return max(ratios) if ratios else None


@dataclass(frozen=True)
class RiskLevels:
    """When an account counts as at risk and is re-read at risk_poll_interval: inside the widest warning
    level (plus its hysteresis) of any liquidation-distance or margin-ratio rule."""

    liquidation_pct: Decimal = Decimal(15)
    margin_ratio: Decimal = Decimal("0.6")

    @classmethod
    def from_rules(cls, rules: Iterable[Rule]) -> RiskLevels:
        distances, ratios = [], []
        for rule in rules:
            levels = [level for _, level in rule.levels()]
            if rule.type is RuleType.LIQUIDATION_DISTANCE and levels:
                distances.append(max(levels) + rule.clear)
            elif rule.type is RuleType.MARGIN_RATIO and levels:
                ratios.append(min(levels) - rule.clear)
        default = cls()
        return cls(max(distances, default=default.liquidation_pct), min(ratios, default=default.margin_ratio))

    def at_risk(self, snapshot: AccountSnapshot) -> bool:
        distance = snapshot.worst_liquidation_distance_pct
        if distance is not None and distance <= self.liquidation_pct:
            return True
        ratio = margin_ratio(snapshot)
        return ratio is not None and ratio >= self.margin_ratio


def is_stale(last_good_at: datetime | None, stalled: timedelta, now: datetime, interval: timedelta,
             grace: timedelta) -> bool:  # fmt: skip
    """The one definition of fresh data: good data within an interval and its grace, leaving out time the
    monitor could not run."""
    return last_good_at is None or now - last_good_at - stalled > interval + grace


@dataclass(frozen=True, slots=True)
class Reading:
    """What the poller knows of one account at one moment, as data: what alerting and the page are handed
    (never the poller's mutable state or its client)."""

    name: str
    tags: tuple[str, ...]
    snapshot: AccountSnapshot | None  # the last good one
    last_good_at: datetime | None
    status: str  # Status
    polls: int
    error_code: str | None
    error_message: str | None
    key: KeyInfo | None
    stalled: timedelta  # time since the last good data the monitor could not run
    cadence: timedelta | None  # how often accounts are really read (longer than poll_interval while behind)
    at_risk: bool = False
    restored: bool = False  # the data is the database's, from before this process started (AccountViews.completed)
    read_started_at: datetime | None = None  # when the read that gave `snapshot` began (None: restored)

    def stale(self, now: datetime, interval: timedelta, grace: timedelta) -> bool:
        return is_stale(self.last_good_at, self.stalled, now, interval, grace)


@dataclass
class AccountState:
    config: AccountConfig
    client: BitgetClient
    status: str = Status.PENDING
    snapshot: AccountSnapshot | None = None  # the last good one
    key: KeyInfo | None = None
    last_good_at: datetime | None = None
    read_started_at: datetime | None = None  # when the read that gave `snapshot` began
    error_code: str | None = None
    error_message: str | None = None
    failures: int = 0  # consecutive
    at_risk: bool = False
    key_checked_at: datetime | None = None
    polls: int = 0
    full_read_at: float | None = None  # monotonic time of the last full (not risk-only) read
    history: list[float] = field(default_factory=list)  # recent gaps between poll starts, seconds
    watch: LoopWatch | None = None  # the poller's measure of time it could not poll
    stall_mark: float = 0.0  # the watch's total when this account last gave good data (or was added)
    spot: SpotBook = field(default_factory=SpotBook)  # classic spot balances, read less often than the futures

    @property
    def name(self) -> str:
        return self.config.name

    def stalled(self) -> timedelta:
        """Time since the last good data (or since the account was added) during which the monitor could not
        have polled at all: a stalled event loop or a suspended machine is not the account's fault."""
        if self.watch is None:
            return timedelta(0)
        return timedelta(seconds=max(0.0, self.watch.stalled() - self.stall_mark))

    def mark_good(self) -> None:
        self.stall_mark = self.watch.stalled() if self.watch is not None else 0.0

    def stale(self, now: datetime, interval: timedelta, grace: timedelta) -> bool:
        return is_stale(self.last_good_at, self.stalled(), now, interval, grace)

    def reading(self, cadence: timedelta | None = None) -> Reading:
        return Reading(
            self.name, self.config.tags, self.snapshot, self.last_good_at, self.status, self.polls,
            self.error_code, self.error_message, self.key, self.stalled(), cadence, self.at_risk,
            read_started_at=self.read_started_at,
        )  # fmt: skip

    def account_status(self, now: datetime, interval: timedelta, grace: timedelta) -> str:
        stale = self.stale(now, interval, grace)
        return account_status(self.status, self.snapshot is not None, stale, self.error_code)


def snapshot_problem(snapshot: AccountSnapshot) -> str | None:
    """Why this snapshot cannot enter the poller's state, or None when it can.

    Every number, read or derived (equity in USDT, unrealized PnL, each liquidation distance, the margin ratios),
    must be finite and of a plausible magnitude: what gets past here is shown, stored and judged without further
    checks, so one account's absurd answer cannot break the page, the metrics or the rules for the others.
    """
    low, high = MAGNITUDE
    parts: list[object] = [*snapshot.spot, *snapshot.futures, *snapshot.positions]
    if snapshot.unified is not None:
        parts += [snapshot.unified, *snapshot.unified.assets]
    if snapshot.spot_usdt is not None and not plausible(snapshot.spot_usdt):
        return f"spot USDT value is implausible ({str(snapshot.spot_usdt)[:40]})"
    for part in parts:  # at every poll, so the common case is one pass in C per part; names only for a failure
        names, values = _fields_of(part)
        if all(v.is_finite() and low <= v.adjusted() <= high for v in values(part) if isinstance(v, Decimal)):
            continue
        for name, number in zip(names, values(part), strict=True):  # a zero with many places may still pass
            if isinstance(number, Decimal) and not plausible(number):
                return f"{_label(part)} {name} is implausible ({str(number)[:40]})"
    derived: list[tuple[object, Callable[[], Decimal | None]]] = [
        ("equity in USDT", lambda: snapshot.equity_usdt),
        ("unrealized PnL in USDT", lambda: snapshot.unrealized_pnl_usdt),
        *((p, partial(_distance, p)) for p in snapshot.positions),
    ]
    for what, compute in derived:
        try:
            value = compute()
        except (ArithmeticError, ValueError, TypeError) as exc:
            return f"{_derived_name(what)} cannot be computed ({type(exc).__name__})"
        if value is not None and not plausible(value):
            return f"{_derived_name(what)} is implausible ({str(value)[:40]})"
    return None


_FIELDS: dict[type, tuple[tuple[str, ...], Callable[[object], tuple[object, ...]]]] = {}


def _fields_of(part: object) -> tuple[tuple[str, ...], Callable[[object], tuple[object, ...]]]:
    """A domain type's field names and a getter of all their values at once."""
    kind = type(part)
    found = _FIELDS.get(kind)
    if found is None:
        names = tuple(f.name for f in fields(kind))  # type: ignore[arg-type]
        found = _FIELDS[kind] = (names, attrgetter(*names))
    return found


def _derived_name(what: object) -> str:
    return what if isinstance(what, str) else f"{_label(what)} liquidation distance"


def _distance(position: Position) -> Decimal | None:
    return position.liquidation_distance_pct


def plausible(value: Decimal) -> bool:
    """Finite and within MAGNITUDE (a zero: at most 100 zeros when written out, "0E-999999" would be a
    million); checked without arithmetic, which is what overflows."""
    if not value.is_finite():
        return False
    if not value:  # a zero's exponent only says how many zeros it is written with
        return value.adjusted() >= -100
    return MAGNITUDE[0] <= value.adjusted() <= MAGNITUDE[1]


def _label(part: object) -> str:
    for attribute in ("symbol", "margin_coin", "coin"):
        name = getattr(part, attribute, None)
        if isinstance(name, str):
            side = getattr(part, "side", None)
            return f"{type(part).__name__} {name[:40]!r}" + (f" {side}" if side is not None else "")
    return type(part).__name__
