"""Margin to safety: what it takes to move a position's liquidation price back to a target distance from the mark.

The arithmetic is Bitget's as the simulator models it (monitor/simulator/market.py): a position is liquidated when
the collateral behind it plus its PnL falls to its maintenance margin, judged at the mark price.

Notation. The legs that liquidate together: an isolated position alone, or every crossed position of the same
product type, margin coin and symbol (both legs in hedge mode). For leg i: direction d (+1 long, -1 short), size s
(base coin), entry e. r is the maintenance margin rate (keepMarginRate, or mmr for unified accounts), X the mark,
M the mark now, L Bitget's liquidation price now, L* the target one. net = sum d*s, gross = sum s,
cost = sum d*s*e. C is the collateral behind the legs (isolated: the position's margin; crossed: the margin coin's
cross collateral plus the PnL of cross positions on other symbols), F the maintenance of those other positions.

Linear (USDT-, USDC-FUTURES): PnL is d*s*(X - e), maintenance r*s*X, so what is left above maintenance is
    excess(X) = C - cost - F + k*X with k = net - r*gross,   hence L = (F + cost - C) / k.
  Adding A to C moves L to L - A/k, so the margin to add is  A = k * (L - L*).
Inverse (COIN-FUTURES): PnL is d*s*(X - e)/X in the base coin, maintenance r*s (the simulator's notional is the
size itself), so excess(X) = C + net - F - r*gross - cost/X,   hence L = cost / (C + net - F - r*gross),
  and the margin to add is  A = cost * (1/L* - 1/L).
Neither needs C or F: whatever Bitget counts there (other positions' PnL and maintenance, fees it reserves) is
anchored by its own L, on the assumption that every other mark stays where it is. Which side liquidation lies on
follows from the slope: below the mark when k > 0 (linear) or cost > 0 (inverse), that is for a long or a net-long
hedge; the target is then L* = M * (1 - D/100), otherwise M * (1 + D/100), D the target distance in percent.

Reducing leg p (direction sigma, entry e) by z at the mark: its PnL on z is realised into the wallet, so equity at
M is unchanged, and what is left above maintenance at X changes by z*(sigma*(M - X) + r*X) (linear) or
z*(r - sigma*e*(1/M - 1/X)) (inverse). Setting excess(L*) to zero after the change:
    linear  z = A / (sigma*(M - L*) + r*L*),      inverse  z = A / (r + sigma*e*(1/L* - 1/M)).
Only the leg on the side of liquidation helps (the long leg of a net-long hedge); reducing the other one brings
liquidation nearer. Isolated: closing part of a position releases its margin in proportion (the exchanges describe
it so), which scales margin, size and maintenance alike and leaves L where it is: no size to reduce, add margin.

Unified accounts have no per-position margin: all collateral is the account's, valued in USD. With a position's
mmr the same anchor on L gives the USDT equity to add (USDT counts one for one as collateral; other coins count with
a haircut, so no amount is given for them) and the size to reduce; without mmr, nothing is given.

Amounts are rounded up to 8 decimals (Bitget's precision for derived amounts), so applying them reaches the
target or just beyond it. Real Bitget tiers the rate by position size and may reserve closing fees; a tier change
inside the move makes the amounts approximate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from monitor.domain import AccountMode, AccountSnapshot, MarginMode, Position, Side

_PLACES = Decimal("0.00000001")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
# Coins a unified account values one for one as collateral.
_FULL_COLLATERAL = ("USDT",)


@dataclass(frozen=True, slots=True)
class Safety:
    """What gets one position back to `target_distance` percent from its liquidation price.

    `add_margin` is in `margin_coin`: margin to add to the position (isolated), or equity to transfer into the
    account's futures wallet of that coin (crossed; USDT into the unified account). `reduce_size` is in the
    position's size unit (base coin) and is to be closed at the mark. Either is None when it cannot be given, and
    `reason` says why.
    """

    target_distance: Decimal  # percent from the mark
    target_liquidation_price: Decimal | None
    add_margin: Decimal | None
    reduce_size: Decimal | None
    margin_coin: str
    to_account: bool  # add_margin goes to the account (crossed, unified), not to the position (isolated)
    reason: str | None = None
    wallet: str = "account"  # where add_margin goes when to_account: "USDT-FUTURES wallet", "unified account"


def margin_to_safety(
    position: Position,
    target_distance: Decimal,
    *,
    positions: Iterable[Position] = (),
    mode: AccountMode = AccountMode.CLASSIC,
) -> Safety:
    """The margin to add and the size to reduce that put `position`'s liquidation price `target_distance`
    percent from its mark (a rule's warning level plus its `clear`).

    `positions` are the account's positions from the same snapshot: for a crossed position, the other leg of a
    hedge moves with it. Raises ValueError for a target that is not a positive percentage.
    """
    if not target_distance > 0:
        raise ValueError(f"target distance: expected a positive percentage, got {target_distance}")
    p = position
    to_account = p.margin_mode is MarginMode.CROSSED or mode is AccountMode.UNIFIED
    # Adding to spot does nothing for a classic futures position: name the wallet that counts.
    wallet = "unified account" if mode is AccountMode.UNIFIED else f"{p.product_type} wallet"

    def unknown(reason: str, target_price: Decimal | None = None) -> Safety:
        return Safety(target_distance, target_price, None, None, p.margin_coin, to_account, reason, wallet)

    r = p.maintenance_rate
    if r is None:
        field = "mmr" if mode is AccountMode.UNIFIED else "keepMarginRate"
        return unknown(f"Bitget gave no maintenance margin rate ({field}) for this position")
    if not _ZERO <= r < _ONE:
        return unknown(f"the maintenance margin rate {r} is not a rate between 0 and 1")
    liquidation, mark = p.liquidation_price, p.mark_price
    if liquidation is None:
        return unknown("Bitget gives no liquidation price: the position is not near liquidation on its own")
    if not mark > 0 or not p.size > 0:
        return unknown("the position has no mark price or no size")

    legs = [p]
    if p.margin_mode is MarginMode.CROSSED:
        legs += [x for x in positions if x.side is not p.side and _same_book(x, p)]
    net = sum((_direction(x) * x.size for x in legs), _ZERO)
    gross = sum((x.size for x in legs), _ZERO)
    cost = sum((_direction(x) * x.size * x.entry_price for x in legs), _ZERO)
    inverse = p.product_type.upper().endswith("COIN-FUTURES")  # SCOIN-FUTURES: Bitget's demo twin
    slope = cost if inverse else net - r * gross
    if not slope:
        return unknown("the legs balance out: no mark price liquidates them")
    below = slope > 0
    if below and target_distance >= _HUNDRED:
        return unknown(f"liquidation below the mark cannot be {target_distance}% away: the price would be 0 or less")
    target = mark * (_ONE - target_distance / _HUNDRED) if below else mark * (_ONE + target_distance / _HUNDRED)
    target_price = target.quantize(_PLACES)
    add = cost * (_ONE / target - _ONE / liquidation) if inverse else slope * (liquidation - target)
    if add <= 0:
        return unknown(f"already {target_distance}% or more from liquidation", target_price)

    reasons: list[str] = []
    add_margin: Decimal | None = _up(add)
    if mode is AccountMode.UNIFIED and p.margin_coin not in _FULL_COLLATERAL:
        add_margin = None
        reasons.append(f"a unified account values {p.margin_coin} as collateral with a haircut: no amount to add")

    reduce: Decimal | None = None
    sigma = _direction(p)
    if p.margin_mode is MarginMode.ISOLATED:
        reasons.append("closing part of an isolated position releases its margin in proportion: add margin instead")
    elif (sigma > 0) != below:
        reasons.append("reducing this leg brings liquidation nearer: reduce the other leg of the hedge")
    else:
        if inverse:
            per_unit = r + sigma * p.entry_price * (_ONE / target - _ONE / mark)
        else:
            per_unit = sigma * (mark - target) + r * target
        size = add / per_unit
        after = (cost - sigma * size * p.entry_price) if inverse else (net - sigma * size) - r * (gross - size)
        if size >= p.size:
            reasons.append("closing this position entirely would not get there: the rest of the account holds it")
        elif (after > 0) != below:
            reasons.append("reducing this leg that far turns the hedge the other way: close both legs or add margin")
        else:
            reduce = min(_up(size), p.size)
    reason = "; ".join(reasons) or None
    return Safety(target_distance, target_price, add_margin, reduce, p.margin_coin, to_account, reason, wallet)


def snapshot_safety(snapshot: AccountSnapshot, position: Position, target_distance: Decimal) -> Safety:
    """margin_to_safety for a position of `snapshot`, with that snapshot's other positions and account mode."""
    return margin_to_safety(position, target_distance, positions=snapshot.positions, mode=snapshot.mode)


def describe(safety: Safety, symbol: str) -> str:
    """One line for people: "add about 2,310 USDT to the USDT-FUTURES wallet, or reduce by 0.222 BTC, to get back
    to 17 %".

    Amounts are rounded up to three significant digits: a suggestion never understates what it takes."""
    target = f"{safety.target_distance.normalize():f} %"
    if safety.add_margin is None and safety.reduce_size is None:
        return safety.reason or f"nothing to suggest for {target}"
    actions = []
    if safety.add_margin is not None:
        where = f" to the {safety.wallet}" if safety.to_account else " margin"
        actions.append(f"add about {_about(safety.add_margin)} {safety.margin_coin}{where}")
    if safety.reduce_size is not None:
        actions.append(f"reduce by {_about(safety.reduce_size)} {base_coin(symbol)}")
    if len(actions) == 1:
        return f"{actions[0]} to get back to {target}"
    return f"{actions[0]}, or {actions[1]}, to get back to {target}"


def base_coin(symbol: str) -> str:
    """The coin a size is counted in: BTC for BTCUSDT, BTCUSD and BTCPERP."""
    for quote in ("USDT", "USDC", "PERP", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol.removesuffix(quote)
    return symbol


def _about(amount: Decimal) -> str:
    if not amount:
        return "0"
    places = max(0, 2 - amount.adjusted())  # three significant digits
    text = f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING):,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _same_book(x: Position, p: Position) -> bool:
    """Crossed positions that Bitget liquidates together with p: the same product type, margin coin, symbol."""
    return (
        x.margin_mode is MarginMode.CROSSED
        and x.product_type == p.product_type
        and x.margin_coin == p.margin_coin
        and x.symbol == p.symbol
    )


def _direction(p: Position) -> int:
    return 1 if p.side is Side.LONG else -1


def _up(amount: Decimal) -> Decimal:
    return amount.quantize(_PLACES, rounding=ROUND_CEILING)
