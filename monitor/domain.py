"""Domain types shared by the exchange client, storage, rules and the web page.

Money and prices are Decimal; times are timezone-aware UTC. Wire formats never leave the exchange package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

# What a real answer from Bitget can hold; the exchange package refuses anything beyond (a value that is not
# data: 1e999999999 would freeze the process turned into an int, and overflow the liquidation distance).
MAX_AMOUNT = Decimal("1e20")  # no balance, price or size comes near it (absolute value)
MIN_EXPONENT = -30  # no amount has more decimal places
FIRST_TIME_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z: before Bitget existed
LAST_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


class AccountMode(StrEnum):
    CLASSIC = "classic"  # v2 account and position endpoints
    UNIFIED = "unified"  # UTA, v3 endpoints


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"


class MarginMode(StrEnum):
    ISOLATED = "isolated"
    CROSSED = "crossed"


class PositionMode(StrEnum):
    ONE_WAY = "one_way"
    HEDGE = "hedge"


# Permission names that let a key move money or open positions. Bitget has used long names ("spot_trade")
# and short codes ("stow", "cpow" for order/position write): anything that writes counts.
_TRADE_MARKERS = ("trade", "order", "stow", "cpow", "coow", "mow")
_WITHDRAW_MARKERS = ("withdraw", "wdr", "transfer")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What `/api/v2/spot/account/info` says about the key."""

    uid: str | None  # None: Bitget's answer held no readable user id
    permissions: tuple[str, ...]
    ips: tuple[str, ...]
    parent_uid: str | None = None

    @property
    def can_trade(self) -> bool:
        return any(m in p.lower() for p in self.permissions for m in _TRADE_MARKERS)

    @property
    def can_withdraw(self) -> bool:
        return any(m in p.lower() for p in self.permissions for m in _WITHDRAW_MARKERS)

    @property
    def ip_bound(self) -> bool:
        return bool(self.ips)


@dataclass(frozen=True, slots=True)
class SpotAsset:
    coin: str
    available: Decimal
    frozen: Decimal
    locked: Decimal
    updated_at: datetime | None = None

    @property
    def total(self) -> Decimal:
        return self.available + self.frozen + self.locked


@dataclass(frozen=True, slots=True)
class FuturesAccount:
    """One margin coin of one futures product type (classic account)."""

    product_type: str
    margin_coin: str
    equity: Decimal
    usdt_equity: Decimal | None
    available: Decimal
    locked: Decimal
    unrealized_pnl: Decimal
    cross_risk_ratio: Decimal | None  # Bitget liquidates the cross account at 1
    crossed_margin: Decimal | None = None
    isolated_margin: Decimal | None = None
    union_total_margin: Decimal | None = None
    asset_mode: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    product_type: str
    symbol: str
    margin_coin: str
    side: Side
    position_mode: PositionMode
    margin_mode: MarginMode
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    liquidation_price: Decimal | None  # None: Bitget gives no liquidation price for this position
    margin: Decimal
    leverage: Decimal | None
    unrealized_pnl: Decimal
    margin_ratio: Decimal | None = None  # None for unified accounts
    maintenance_rate: Decimal | None = None
    break_even_price: Decimal | None = None
    fees: Decimal | None = None
    opened_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def liquidation_distance_pct(self) -> Decimal | None:
        """Percent the mark must move to reach liquidation; None without a price. Negative: already past it.

        A crossed position in hedge mode carries the liquidation price of both legs of its symbol together,
        and a nearly balanced pair liquidates when the price moves either way: the long leg's price can lie
        above the mark. There the distance is the move in whichever direction reaches it.
        """
        return self.distance_at(self.mark_price, self.liquidation_price)

    def distance_at(self, mark: Decimal, liquidation: Decimal | None) -> Decimal | None:
        """`liquidation_distance_pct` at another mark and liquidation price (monitor.market.live's figures)."""
        if liquidation is None or not mark:
            return None
        gap = mark - liquidation
        if self.position_mode is PositionMode.HEDGE and self.margin_mode is MarginMode.CROSSED:
            gap = abs(gap)
        elif self.side is Side.SHORT:
            gap = -gap
        return gap / mark * 100


@dataclass(frozen=True, slots=True)
class UnifiedAsset:
    coin: str
    equity: Decimal
    usd_value: Decimal | None
    balance: Decimal
    available: Decimal
    debt: Decimal
    locked: Decimal


@dataclass(frozen=True, slots=True)
class UnifiedAccount:
    """A unified (UTA) account's totals and per-coin assets."""

    equity: Decimal
    usdt_equity: Decimal
    unrealized_pnl: Decimal
    margin_ratio: Decimal | None  # Bitget liquidates at 1
    maintenance_margin: Decimal | None
    initial_margin: Decimal | None
    effective_equity: Decimal | None
    assets: tuple[UnifiedAsset, ...] = ()


STABLE = ("USDT", "USDC")  # counted at 1 USDT


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Everything read from one account in one poll."""

    account: str
    taken_at: datetime
    mode: AccountMode
    spot: tuple[SpotAsset, ...] = ()
    spot_usdt: Decimal | None = None  # Bitget's USDT valuation of the spot account
    futures: tuple[FuturesAccount, ...] = ()
    unified: UnifiedAccount | None = None
    positions: tuple[Position, ...] = ()
    requests: int = 0
    products: tuple[str, ...] = field(default=())

    @property
    def equity_usdt(self) -> Decimal:
        """The account's equity in USDT: unified equity, or spot plus every futures margin coin."""
        if self.unified is not None:
            return self.unified.usdt_equity
        spot = self.spot_usdt
        if spot is None:  # no valuation read: count the stable coins only
            spot = sum((a.total for a in self.spot if a.coin in STABLE), Decimal(0))
        return spot + sum((_usdt(f, f.equity) for f in self.futures), Decimal(0))

    @property
    def unrealized_pnl_usdt(self) -> Decimal:
        if self.unified is not None:
            return self.unified.unrealized_pnl
        return sum((_usdt(f, f.unrealized_pnl) for f in self.futures), Decimal(0))

    @property
    def worst_liquidation_distance_pct(self) -> Decimal | None:
        distances = [d for p in self.positions if (d := p.liquidation_distance_pct) is not None]
        return min(distances) if distances else None


def _usdt(account: FuturesAccount, amount: Decimal) -> Decimal:
    """An amount in a futures account's margin coin, in USDT, at the rate its usdtEquity implies."""
    if account.margin_coin in STABLE:
        return amount
    if account.usdt_equity is None or not account.equity:
        return Decimal(0)
    return amount * account.usdt_equity / account.equity


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """The result of reading one account once: a snapshot, or the error that prevented it."""

    account: str
    started_at: datetime
    finished_at: datetime
    snapshot: AccountSnapshot | None = None
    error_code: str | None = None
    error_message: str | None = None
    requests: int = 0
    key: KeyInfo | None = None  # when the key's permissions were read in this poll
    at_risk: bool = False  # the poller's verdict on the snapshot: near liquidation or a high margin ratio

    @property
    def ok(self) -> bool:
        return self.snapshot is not None
