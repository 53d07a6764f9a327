"""Positions that disappear: closed by the trader, or liquidated by Bitget. Pure functions of what the last read
saw and the mark price read after the position was found gone.

Bitget liquidates against the mark price, and a liquidated position simply disappears, so the best evidence is
the current public mark against the position's last liquidation price:

- past it (or the last read already had the mark past it): liquidated;
- the last read within the critical liquidation level, and the mark moved on toward it since: probably
  liquidated (a crossed position's price moves with the others on its margin coin, and fees bring the
  maintenance margin forward, so "not quite past" is no proof it was closed);
- otherwise: closed.

When the mark cannot be read, the last read decides alone, and the message says the mark was unavailable: past
the price, or within the critical level, counts as (probably) liquidated. A false alarm costs a look; a green
"closed" about a lost position can cost the account. A crossed position's liquidation price moves with the
other positions of its margin coin; the last read's is the best there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol

from monitor.domain import MarginMode, Position, PositionMode, Side
from monitor.errors import ExchangeError
from monitor.numbers import price
from monitor.rules import view
from monitor.rules.evaluate import away, num, position_details, position_subject


class MarkTable(Protocol):
    def mark(self, symbol: str) -> Decimal:
        """The symbol's mark price; KeyError (its argument says why) when there is none to use."""
        ...


class MarkSource(Protocol):
    """Where current mark prices come from (monitor.exchange.bitget.market.MarkPrices)."""

    async def read(self, product_type: str, since: datetime | None = None) -> MarkTable: ...


@dataclass(frozen=True, slots=True)
class LastSeen:
    """A position as the last read saw it, with a liquidation price."""

    product_type: str
    symbol: str
    side: str
    mark: Decimal
    liquidation: Decimal
    toward: int  # the direction the mark moves to reach liquidation: -1 down (a long), +1 up (a short)
    details: Mapping[str, str]

    @classmethod
    def of(cls, p: Position) -> LastSeen | None:
        if p.liquidation_price is None or p.liquidation_price <= 0 or p.mark_price <= 0:
            return None  # no price at which it can be liquidated (a well-collateralised cross position)
        return cls(p.product_type, p.symbol, str(p.side), p.mark_price, p.liquidation_price,
                   _toward(p.side, p.margin_mode, p.position_mode, p.mark_price, p.liquidation_price),
                   position_details(p))  # fmt: skip

    @classmethod
    def from_details(cls, details: Mapping[str, str]) -> LastSeen | None:
        """From a stored alert's details (the engine restarted since the last read)."""
        try:
            mark, liquidation = (
                Decimal(details[k].replace(",", "")) for k in ("mark", "liquidation")
            )  # older: 1,234.5
            side = Side(details["side"])
            product_type, symbol = details["product"], details["symbol"]
            margin_mode = MarginMode(details.get("margin_mode", MarginMode.ISOLATED))
            position_mode = PositionMode(details.get("position_mode", PositionMode.ONE_WAY))
        except (KeyError, ValueError, InvalidOperation):
            return None
        if liquidation <= 0 or mark <= 0:
            return None
        toward = _toward(side, margin_mode, position_mode, mark, liquidation)
        return cls(product_type, symbol, str(side), mark, liquidation, toward, dict(details))

    def distance(self, mark: Decimal) -> Decimal:
        """Percent the mark must still move to reach the liquidation price; zero or less: at or past it."""
        return (self.liquidation - mark) * self.toward / mark * 100


def _toward(side: Side, margin: MarginMode, mode: PositionMode, mark: Decimal, liquidation: Decimal) -> int:
    # A crossed hedge pair shares one price that can lie on either side of the mark (see Position).
    if mode is PositionMode.HEDGE and margin is MarginMode.CROSSED:
        return 1 if liquidation > mark else -1
    return -1 if side is Side.LONG else 1


@dataclass(frozen=True, slots=True)
class Verdict:
    liquidated: bool
    summary: str  # one line for people
    reason: str  # the stored transition's reason
    mark: Decimal | None  # the mark read after the position was gone, if it could be read
    value: Decimal  # distance to the last liquidation price: from that mark, else the last read's


def judge(last: LastSeen, mark: Decimal | None, critical: Decimal | None, unavailable: str = "") -> Verdict:
    """Closed or liquidated, from the last read and the mark read since (None: `unavailable` says why)."""
    name = f"{last.symbol} {last.side}"
    liq, before = price(last.liquidation, last.mark), last.distance(last.mark)
    seen = f"last read: mark {price(last.mark)}, {away(before)}"
    if mark is not None:
        now = last.distance(mark)
        toward = (mark - last.mark) * last.toward > 0
        if now <= 0:
            return _liquidated(
                name, f"mark {price(mark, last.mark)} is past its liquidation price {liq} ({seen})", mark, now
            )
        if before <= 0:
            evidence = f"the last read had the mark {price(last.mark)} past its liquidation price {liq}"
            return _liquidated(name, evidence, mark, now)
        if critical is not None and before <= critical and toward:
            evidence = (f"mark {price(mark, last.mark)} is {num(now, 2)}% from its last liquidation price {liq} "
                        f"and moved toward it from {price(last.mark)}")  # fmt: skip
            return _liquidated(name, evidence, mark, now, probably=True)
        return Verdict(False, "", "position closed", mark, now)
    why = f"mark unavailable ({unavailable})" if unavailable else "mark unavailable"
    if before <= 0:
        evidence = f"the last read had the mark {price(last.mark)} past its liquidation price {liq}; {why}"
        return _liquidated(name, evidence, None, before)
    if critical is not None and before <= critical:
        evidence = (
            f"the last read had it {num(before, 2)}% from its liquidation price {liq} (mark {price(last.mark)}); {why}"
        )
        return _liquidated(name, evidence, None, before, probably=True)
    return Verdict(False, "", f"position closed ({why})", None, before)


def unavailable(exc: BaseException, limit: float) -> str:
    """Why the mark could not be read, in a few words for a message title (the log has the whole error)."""
    if isinstance(exc, ExchangeError):
        return f"Bitget {exc.code}" if exc.code else f"HTTP {exc.http_status}" if exc.http_status else exc.message[:60]
    return f"no answer within {limit:g} s" if isinstance(exc, TimeoutError) else type(exc).__name__


def _liquidated(name: str, evidence: str, mark: Decimal | None, value: Decimal, *, probably: bool = False) -> Verdict:
    word = "probably liquidated" if probably else "liquidated"
    return Verdict(True, f"{name} {word}: {evidence}", f"{word}: {evidence}", mark, value)


@dataclass(frozen=True, slots=True)
class Departure:
    """A position gone from a fresh read, waiting for its verdict."""

    subject: str
    last: LastSeen
    alerts: tuple[str, ...]  # keys of its active per-position alerts
    speakers: tuple[str, ...]  # the liquidation rules selecting its account: the first one whose alert is active
    # carries a liquidation, and the first of all announces it when no alert of the position was active


def plan(
    gone: Mapping[str, Position],
    closing: Mapping[str, tuple[str, Mapping[str, str]]],
    speakers: Iterable[str],
) -> tuple[list[Departure], list[str]]:
    """What to judge: every gone position with a liquidation price, with the keys of its active alerts
    (`closing`: key -> (subject, details)), and the alerts that can only close (no liquidation price known).

    A position that disappears without an alert is judged too (a gap between two reads can hide the whole
    approach): when it was liquidated, a liquidation rule selecting its account (`speakers`) announces it.
    """
    by_subject: dict[str, list[str]] = {}
    for key, (subject, _) in closing.items():
        by_subject.setdefault(subject, []).append(key)
    departures: list[Departure] = []
    closed: list[str] = []
    speakers = tuple(sorted(speakers))
    for subject in by_subject.keys() | gone.keys():
        keys = tuple(sorted(by_subject.get(subject, ())))
        if subject in gone:
            last = LastSeen.of(gone[subject])
        else:  # the last read before a restart: only the alerts' details remain
            last = next((x for k in keys if (x := LastSeen.from_details(closing[k][1])) is not None), None)
        if last is None:
            closed += keys
        elif keys or speakers:
            departures.append(Departure(subject, last, keys, speakers))
    return sorted(departures, key=lambda d: d.subject), closed


def subjects(positions: Iterable[Position]) -> set[str]:
    return {position_subject(p) for p in positions}


def gone_positions(previous: Iterable[Position], current: Iterable[Position]) -> dict[str, Position]:
    """Positions of the previous read missing from the current one, by subject."""
    present = subjects(current)
    return {s: p for p in previous if (s := position_subject(p)) not in present}


def details_after(last: LastSeen, mark: Decimal | None) -> dict[str, str]:
    """A liquidated alert's details: the last read's, and the mark read once the position was gone."""
    return {**last.details, "mark_now": format(mark, "f") if mark is not None else "unavailable"}


def alert_key(rule: str, account: str, subject: str) -> str:
    """The key of a liquidation rule's alert about a position (as the rule's own observations make it)."""
    return view.alert_key(rule, account, subject)
