"""Positions re-priced between account reads from the feed's latest marks: pure functions of their inputs.

Mark and unrealized PnL follow the mark directly (Bitget's definitions, as the simulator computes them):

    linear (USDT-/USDC-FUTURES), in the quote coin:   pnl = d * size * (mark - entry)
    inverse (COIN-FUTURES), in the base coin:          pnl = d * size * (mark - entry) / mark

with d = +1 for a long, -1 for a short; the distance to liquidation then follows from `Position`.

Liquidation price. Isolated: the price as last read (it moves only when the margin or the size does, which a
mark cannot change). Crossed: Bitget liquidates when the cross equity of a margin coin falls to the cross
maintenance margin. Writing L for the crossed positions on p's symbol (p itself, and its other leg in hedge
mode), O for the other crossed positions of the same product type and margin coin, C for the cross collateral
(wallet balance less isolated margins), r for maintenance rates, the liquidation price M of p's symbol solves,
every other mark fixed:

    linear:   C + sum_O pnl_o + sum_L d*size*(M - entry) = sum_O r_o*size_o*m_o + r*sum_L size*M
              M = (F - C - P + cost) / D,  with D = sum_L d*size - r*sum_L size, cost = sum_L d*size*entry,
              P = sum_O pnl_o, F = sum_O r_o*size_o*m_o
    inverse:  C + P + sum_L d*size - cost/M = F + r*sum_L size,  with F = sum_O r_o*size_o (not mark-dependent)
              M = cost / K,  K = C + P + sum_L d*size - F - r*sum_L size

C, the sizes, the entries and the rates do not move between reads; only the other marks m_o do. So from the
price M0 read at the other marks m0_o, without knowing C:

    linear:   M1 = M0 + (dF - dP) / D,  dP = sum_O d_o*size_o*(m1_o - m0_o),  dF = sum_O r_o*size_o*(m1_o - m0_o)
    inverse:  M1 = cost / (cost/M0 + dP),  dP = sum_O d_o*size_o*entry_o*(1/m0_o - 1/m1_o)

(p's own mark does not appear: a liquidation price is where p's own mark would have to go.) This holds while
the wallet, the positions and the maintenance rates are as read: funding, fees, a transfer or a new position
since the read, or a position crossing into another maintenance tier, move it; the next read corrects it. It
needs every crossed position of the coin in the same read with a fresh mark newer than the read, the
maintenance rates (linear) and a positive price as read (Bitget sends none, and the parser keeps none, for a
well-collateralised cross position: C is then unknown). Otherwise, and where collateral is pooled across coins
(unified accounts, and classic ones in multi-asset mode, `assetMode` "union": other coins' prices move C), the
price stays as read, and `LivePosition.liquidation` and `why_as_read` say so.

`margin_ratio` stays as read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from monitor.domain import AccountMode, AccountSnapshot, MarginMode, Position, Side
from monitor.market.mark import Mark

INVERSE = "COIN-FUTURES"
QUANTUM = Decimal("0.00000001")  # Bitget reports PnL and prices to 8 places; live ones are kept to as many
_ZERO = Decimal(0)

MarkLookup = Callable[[str, str], Mark | None]  # (product type, symbol) -> a fresh mark; MarketFeed.mark is one


class LiquidationBasis(StrEnum):
    AS_READ = "as_read"  # the price the account read gave
    ADJUSTED = "adjusted"  # crossed: moved for the other cross positions' PnL since the read


@dataclass(frozen=True, slots=True)
class LivePosition:
    """A position as of its latest mark: mark, unrealized PnL and (through them) the liquidation distance."""

    position: Position
    mark_at: datetime  # when the mark used was asked for; the read's time when no newer mark was used
    read_at: datetime  # when the account was read
    liquidation: LiquidationBasis
    why_as_read: str | None = None  # a crossed position's price left as read: why

    @property
    def from_feed(self) -> bool:
        """Whether a mark newer than the read was used (False: the position exactly as read)."""
        return self.mark_at > self.read_at


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """The PnL at `mark`, in the margin coin: linear in the quote coin, inverse (COIN-FUTURES) in the base coin."""
    d = 1 if position.side is Side.LONG else -1
    move = mark - position.entry_price
    pnl = d * position.size * (move / mark if position.product_type == INVERSE else move)
    return pnl.quantize(QUANTUM)


def live_positions(snapshot: AccountSnapshot, marks: MarkLookup) -> tuple[LivePosition, ...]:
    """Every position of a snapshot re-priced from `marks` (see `reprice`), as of the snapshot's time."""
    pooled = pooled_collateral(snapshot)
    return tuple(reprice(p, snapshot.positions, marks, snapshot.taken_at, pooled=pooled(p)) for p in snapshot.positions)


def pooled_collateral(snapshot: AccountSnapshot) -> Callable[[Position], bool]:
    """Whether a position's cross collateral is pooled across coins: a unified account, or multi-asset mode."""
    if snapshot.mode is AccountMode.UNIFIED:
        return lambda p: True
    union = {f.product_type for f in snapshot.futures if (f.asset_mode or "").lower() == "union"}
    return lambda p: p.product_type in union


def reprice(
    position: Position, read: Sequence[Position], marks: MarkLookup, read_at: datetime, *, pooled: bool = False
) -> LivePosition:
    """`position` at the latest mark `marks` gives for its symbol, when that mark is newer than `read_at`;
    otherwise exactly as read. `read`: every position of the same account read (for crossed positions).
    `pooled`: cross collateral is pooled across coins (a unified account, or multi-asset mode)."""
    mark = marks(position.product_type, position.symbol)
    if mark is None or mark.at <= read_at:
        return LivePosition(position, read_at, read_at, LiquidationBasis.AS_READ, "no mark newer than the read")
    liquidation, why = liquidation_at(position, read, marks, read_at, pooled)
    crossed = position.margin_mode is MarginMode.CROSSED
    basis = LiquidationBasis.ADJUSTED if crossed and why is None else LiquidationBasis.AS_READ
    live = dataclasses.replace(
        position,
        mark_price=mark.price,
        unrealized_pnl=unrealized_pnl(position, mark.price),
        liquidation_price=liquidation,
    )
    return LivePosition(live, mark.at, read_at, basis, why)


def live_figures(
    snapshot: AccountSnapshot, prices: Sequence[Decimal | None], marks: MarkLookup
) -> Iterator[tuple[Position, Decimal | None, Decimal]]:
    """(position as read, its distance to liquidation, its unrealized PnL) at the latest marks, for each position
    with a mark newer than the read (`prices`, in the order of the positions: that mark, or None). The figures
    `reprice` gives such a position, without building it: what checking every account at every mark needs."""
    pooled = pooled_collateral(snapshot)
    for p, mark in zip(snapshot.positions, prices, strict=True):
        if mark is not None:
            liquidation = liquidation_at(p, snapshot.positions, marks, snapshot.taken_at, pooled(p))[0]
            yield p, p.distance_at(mark, liquidation), unrealized_pnl(p, mark)


def liquidation_at(
    p: Position, read: Sequence[Position], marks: MarkLookup, read_at: datetime, pooled: bool
) -> tuple[Decimal | None, str | None]:
    """The position's liquidation price at the latest marks (isolated: as read), and why a crossed one's is left
    as read (None: adjusted, or isolated)."""
    if p.margin_mode is not MarginMode.CROSSED:
        return p.liquidation_price, None
    return _crossed_liquidation(p, read, marks, read_at, pooled)


def _crossed_liquidation(
    p: Position, read: Sequence[Position], marks: MarkLookup, read_at: datetime, pooled: bool
) -> tuple[Decimal | None, str | None]:
    """(the adjusted liquidation price (None: none any more), None), or (the price as read, why not adjusted)."""
    why = _cannot_adjust(p, read, marks, read_at, pooled)
    if why is not None or p.liquidation_price is None:
        return p.liquidation_price, why or "no liquidation price as read"
    crossed = [
        x for x in read
        if x.margin_mode is MarginMode.CROSSED and x.product_type == p.product_type and x.margin_coin == p.margin_coin
    ]  # fmt: skip
    legs = [x for x in crossed if x.symbol == p.symbol]
    moves = [(o, _price(marks, o)) for o in crossed if o.symbol != p.symbol]
    cost = sum((_d(x) * x.size * x.entry_price for x in legs), _ZERO)
    if p.product_type == INVERSE:
        dp = sum((_d(o) * o.size * o.entry_price * (1 / o.mark_price - 1 / m1) for o, m1 in moves), _ZERO)
        k = cost / p.liquidation_price + dp
        new = cost / k if k else _ZERO
    else:
        r = p.maintenance_rate or _ZERO
        denominator = sum((_d(x) * x.size for x in legs), _ZERO) - r * sum((x.size for x in legs), _ZERO)
        if not denominator:
            return p.liquidation_price, "the legs' maintenance balances their PnL"
        dp = sum((_d(o) * o.size * (m1 - o.mark_price) for o, m1 in moves), _ZERO)
        df = sum(((o.maintenance_rate or _ZERO) * o.size * (m1 - o.mark_price) for o, m1 in moves), _ZERO)
        new = p.liquidation_price + (df - dp) / denominator
    new = new.quantize(QUANTUM)
    return (new if new > 0 else None), None


def _cannot_adjust(
    p: Position, read: Sequence[Position], marks: MarkLookup, read_at: datetime, pooled: bool
) -> str | None:
    """Why a crossed position's liquidation price cannot be adjusted soundly; None when it can."""
    if pooled:
        return "collateral pooled across coins (unified account or multi-asset mode)"
    if p.liquidation_price is None:
        return "no liquidation price as read"
    for o in read:
        if (
            o.margin_mode is not MarginMode.CROSSED
            or o.product_type != p.product_type
            or o.margin_coin != p.margin_coin
        ):
            continue
        if p.product_type != INVERSE and o.maintenance_rate is None:
            return f"maintenance rate of {o.symbol} unknown"
        if o.symbol == p.symbol:
            continue
        m = marks(o.product_type, o.symbol)
        if m is None or m.at <= read_at:
            return f"no mark newer than the read for {o.symbol}"
        if not o.mark_price:
            return f"no mark as read for {o.symbol}"
    return None


def _price(marks: MarkLookup, p: Position) -> Decimal:
    mark = marks(p.product_type, p.symbol)
    assert mark is not None  # checked by _cannot_adjust
    return mark.price


def _d(p: Position) -> int:
    return 1 if p.side is Side.LONG else -1


def worse_of(read: AccountSnapshot, live: AccountSnapshot) -> AccountSnapshot:
    """Each position as live where that is worse on every figure a rule judges (closer to liquidation, and no
    more PnL), else as read: what the rules see between reads (monitor.live), where a live figure better than the
    read's would ease an alert before a read does."""
    if live is read:
        return read
    chosen = tuple(lp if _closer(lp, rp) and lp.unrealized_pnl <= rp.unrealized_pnl else rp
                   for rp, lp in zip(read.positions, live.positions, strict=True))  # fmt: skip
    if all(c is r for c, r in zip(chosen, read.positions, strict=True)):
        return read  # not a copy: kept per account (monitor.live) and compared by identity first
    return dataclasses.replace(read, positions=chosen)


def _closer(live: Position, read: Position) -> bool:
    a, b = live.liquidation_distance_pct, read.liquidation_distance_pct
    if a is None or b is None:
        return b is None and a is not None
    return a < b
