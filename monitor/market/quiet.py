"""What a new mark can change for an account between its reads, checked on each position's live figures (monitor.
market.live): whether a position rule now judges it worse than the alert it stands at, whether a position is at or
past its liquidation price, and whether one enters the at-risk band (`check`). Pure functions of their inputs.

An account without an active alert is checked at every mark of every symbol it holds, which makes this the most
frequent work of a monitor whose marks move. For such an account the check can be answered once per read: the
liquidation distance and the unrealized PnL of a position are monotonic in its own mark (for a crossed position in
hedge mode, the distance on each side of the liquidation price), so the marks at which `check` finds nothing form
an interval per position (`quiet_bands`). A mark inside it is quiet without computing anything; a mark outside,
or near an end (each end is narrowed by EDGE, so rounding never decides), is checked exactly.

Inverting the figures of monitor.market.live, d = +1 for a long and -1 for a short, L the liquidation price, t a
distance level as a fraction, g a PnL level in the margin coin:

    distance, long:  (m - L) / m > t   <=>   m > L / (1 - t)        short: (L - m) / m > t   <=>   m < L / (1 + t)
    PnL, linear:     d * size * (m - entry) > g            <=>   m > entry + g / size (long), m < entry - g / size
    PnL, inverse:    d * size * (1 - entry / m) > g        <=>   m > entry / (1 - g / size) (long),
                                                                  m < entry / (1 + g / size) (short)

A level of percent of margin is g = level * margin / 100. A linear crossed position's liquidation price moves with
the other symbols' marks of its margin coin (monitor.market.live): its group shares a box instead, a share by which
every one of its marks may move, each its own way (`_share`); a coin-margined group is checked exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from monitor.domain import AccountSnapshot, MarginMode, Position, PositionMode, Side
from monitor.market.live import INVERSE, QUANTUM, MarkLookup, liquidation_at, live_figures, pooled_collateral
from monitor.rules.evaluate import VALUED, figure_value
from monitor.rules.model import Rule, RuleType, Severity

EDGE = Decimal("1e-9")  # each end of a band is moved this share inward
_ZERO = Decimal(0)

Current = Callable[[Rule, Position], Severity | None]  # the severity of a position's alert for a rule (None: none)


def check(
    snapshot: AccountSnapshot, rules: Sequence[Rule], prices: Sequence[Decimal | None], marks: MarkLookup,
    current: Current | None, band: Decimal | None,
) -> tuple[bool, bool, bool]:  # fmt: skip
    """(a rule judges a position worse than the alert it stands at, or at all; a position is at or past its
    liquidation price; a position's distance is within `band`, the at-risk band (None: not asked)), each position
    at its live figures where `prices` has a mark newer than the read, else as read. `rules`: VALUED position
    rules; `current`: None for an account without active alerts."""
    live = {id(p): (distance, pnl) for p, distance, pnl in live_figures(snapshot, prices, marks)}
    worse = beyond = entering = False
    for p in snapshot.positions:
        distance, pnl = live.get(id(p)) or (p.liquidation_distance_pct, p.unrealized_pnl)
        w, b, e = _position(p, rules, distance, pnl, current, band, judge=not worse)
        worse, beyond, entering = worse or w, beyond or b, entering or e
    return worse, beyond, entering


def _position(
    p: Position, rules: Sequence[Rule], distance: Decimal | None, pnl: Decimal, current: Current | None,
    band: Decimal | None, *, judge: bool = True,
) -> tuple[bool, bool, bool]:  # fmt: skip
    """`check` of one position at these figures (`judge` False: the rules are not asked, worse is known)."""
    beyond = distance is not None and distance <= 0
    entering = distance is not None and band is not None and distance <= band
    if judge:
        for rule in rules:
            value = figure_value(rule, p, distance, pnl)
            if value is None:
                continue
            now = current(rule, p) if current is not None else None
            severity = rule.severity(value, now)
            if severity is not None and (now is None or severity.rank > now.rank):
                return True, beyond, entering
    return False, beyond, entering


@dataclass(frozen=True, slots=True)
class Band:
    """The marks of a position's symbol at which `check` finds nothing for it: low < mark < high."""

    low: Decimal
    high: Decimal | None  # None: no upper end
    as_read: bool  # whether its figures as read are quiet (no mark newer than the read)

    def holds(self, price: Decimal | None) -> bool:
        if price is None:
            return self.as_read
        return self.low < price and (self.high is None or price < self.high)


def quiet_bands(
    snapshot: AccountSnapshot, rules: Sequence[Rule], band: Decimal | None, marks: MarkLookup
) -> tuple[Band, ...] | None:
    """Each position's `Band` for an account without active alerts (`check` with `current` None), in the order of
    its positions; None where a band cannot be told: a level outside what the inversions cover (a distance of 0 %
    or less, or 100 % or more), figures no position could have (a size, entry or margin of zero or less), an
    inverse crossed position whose price follows another symbol's mark, or no mark quiet at all."""
    if any(r.type not in VALUED or not r.lower_is_worse for r in rules):
        return None
    positions = snapshot.positions
    pnl_rules = [r for r in rules if r.type is RuleType.UNREALIZED_PNL and r.levels()]
    if any(p.size <= 0 or p.entry_price <= 0 or (p.margin <= 0 and any(r.percent for r in pnl_rules))
           for p in positions):  # fmt: skip
        return None
    distances = [_worst(r) for r in rules if r.type is RuleType.LIQUIDATION_DISTANCE and r.levels()]
    if band is not None:
        distances.append(band)
    distance_floor = max(distances, default=None)
    pnl_floors = [max((_worst(r) * p.margin / 100 if r.percent else _worst(r) for r in pnl_rules), default=None)
                  for p in positions]  # fmt: skip
    pooled = pooled_collateral(snapshot)
    grouped = [not pooled(p) and _moves_with_others(p, positions) for p in positions]
    shares: dict[tuple[str, str], Decimal] = {}  # per crossed group: the move each of its marks may make
    for p, pnl_floor, in_group in zip(positions, pnl_floors, grouped, strict=True):
        if in_group:
            share = _share(p, positions, distance_floor, pnl_floor)
            if share is None:
                return None
            group = (p.product_type, p.margin_coin)
            shares[group] = min(share, shares.get(group, share))
    bands = []
    for p, pnl_floor, in_group in zip(positions, pnl_floors, grouped, strict=True):
        if in_group:
            share = shares[(p.product_type, p.margin_coin)]
            ends = _narrowed(p.mark_price * (1 - share), p.mark_price * (1 + share))
        else:
            liquidation = liquidation_at(p, positions, marks, snapshot.taken_at, pooled(p))[0]
            ends = _ends(p, liquidation, distance_floor, pnl_floor)
        if ends is None:
            return None
        worse, _, entering = _position(p, rules, p.liquidation_distance_pct, p.unrealized_pnl, None, band)
        bands.append(Band(*ends, as_read=not (worse or entering)))
    return tuple(bands)


def _worst(rule: Rule) -> Decimal:
    """The level a value must stay above for a lower-is-worse rule to judge it at nothing."""
    return max(level for _, level in rule.levels())


def _moves_with_others(p: Position, positions: Sequence[Position]) -> bool:
    """Whether the position's live liquidation price follows other symbols' marks (crossed, with crossed positions
    of other symbols in the same product type and margin coin: monitor.market.live)."""
    return p.margin_mode is MarginMode.CROSSED and any(
        o.margin_mode is MarginMode.CROSSED and o.product_type == p.product_type and o.margin_coin == p.margin_coin
        and o.symbol != p.symbol
        for o in positions
    )  # fmt: skip


def _ends(
    p: Position, liquidation: Decimal | None, distance_floor: Decimal | None, pnl_floor: Decimal | None
) -> tuple[Decimal, Decimal | None] | None:
    """(low, high) of the marks keeping the position's distance above `distance_floor` (percent) and its PnL above
    `pnl_floor`, narrowed by EDGE; None where the inversions do not apply or nothing is quiet."""
    low, high = _ZERO, None
    long = p.side is Side.LONG
    if distance_floor is not None and liquidation is not None:
        t = distance_floor / 100
        if not 0 < t < 1:
            return None
        above = long  # the liquidation price below the mark
        if p.position_mode is PositionMode.HEDGE and p.margin_mode is MarginMode.CROSSED:
            above = p.mark_price > liquidation  # the distance either way: on the side of the read's mark
        if above:
            low = liquidation / (1 - t)
        else:
            high = liquidation / (1 + t)
    if pnl_floor is not None:
        g = pnl_floor + QUANTUM  # the PnL is quantized: clear of the level by a whole step
        size, entry = p.size, p.entry_price
        if p.product_type == INVERSE:
            k = 1 - g / size if long else 1 + g / size
            if long:
                if k <= 0:
                    return None
                low = max(low, entry / k)
            elif k > 0:  # otherwise every mark keeps it above the level
                high = _lower(high, entry / k)
        elif long:
            low = max(low, entry + g / size)
        else:
            high = _lower(high, entry - g / size)
    return _narrowed(low, high)


def _share(
    p: Position, positions: Sequence[Position], distance_floor: Decimal | None, pnl_floor: Decimal | None
) -> Decimal | None:
    """For a linear crossed position whose liquidation price follows other symbols' marks: the share by which
    every mark of its group may move, each its own way, with the position staying clear of `distance_floor` and
    `pnl_floor` (None: no such share). Its price M moves by sum (r_o - d_o) * size_o * (m_o - m0_o) / D over the
    other symbols' positions (monitor.market.live), so by at most the share times S = sum |(r_o - d_o) * size_o|
    * m0_o / |D|; the worst corner of the box (its own mark at the far end, M at the near end, and the quantizing
    step of M) is solved for the share: for a long, m0 * (1 - x) * (1 - t) > M0 + x * S + QUANTUM."""
    if p.product_type == INVERSE or p.mark_price <= 0:
        return None
    mark = p.mark_price
    limits = [Decimal(1)]  # no level: any move short of zero
    if distance_floor is not None and p.liquidation_price is not None:
        t = distance_floor / 100
        if not 0 < t < 1:
            return None
        crossed = [o for o in positions if o.margin_mode is MarginMode.CROSSED and o.product_type == p.product_type
                   and o.margin_coin == p.margin_coin]  # fmt: skip
        legs = [x for x in crossed if x.symbol == p.symbol]
        rate = p.maintenance_rate or _ZERO
        denominator = sum((_sign(x) * x.size - rate * x.size for x in legs), _ZERO)
        spread = sum(
            (abs(((o.maintenance_rate or _ZERO) - _sign(o)) * o.size) * o.mark_price for o in crossed if o not in legs),
            _ZERO,
        ) / abs(denominator) if denominator else _ZERO  # fmt: skip
        liquidation = p.liquidation_price
        above = p.side is Side.LONG
        if p.position_mode is PositionMode.HEDGE:
            above = mark > liquidation  # the distance either way: on the side of the read's mark
        if above:  # the price moved up by the box, and a quantizing step
            limits.append((mark * (1 - t) - liquidation - QUANTUM) / (mark * (1 - t) + spread))
        else:
            limits.append((liquidation - QUANTUM - mark * (1 + t)) / (mark * (1 + t) + spread))
    if pnl_floor is not None:
        g = pnl_floor + QUANTUM
        limits.append(1 - (p.entry_price + g / p.size) / mark if p.side is Side.LONG
                      else (p.entry_price - g / p.size) / mark - 1)  # fmt: skip
    share = min(limits)
    return share if share > 0 else None


def _sign(p: Position) -> int:
    return 1 if p.side is Side.LONG else -1


def _narrowed(low: Decimal, high: Decimal | None) -> tuple[Decimal, Decimal | None] | None:
    """The ends moved EDGE inward; None when nothing is left between them."""
    low = max(low, _ZERO) * (1 + EDGE)
    if high is not None:
        high = high * (1 - EDGE)
        if high <= low:
            return None
    return low, high


def _lower(high: Decimal | None, value: Decimal) -> Decimal:
    return value if high is None else min(high, value)
