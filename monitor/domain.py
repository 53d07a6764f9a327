"""Domain types shared by the exchange client, storage, rules and the web page.

Money and prices are Decimal; times are timezone-aware UTC. Wire formats never leave the exchange package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


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

    uid: str
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
        """Percent the mark must move against the position to reach liquidation; None without a price."""
        if self.liquidation_price is None or not self.mark_price:
            return None
        gap = self.mark_price - self.liquidation_price
        if self.side is Side.SHORT:
            gap = -gap
        return gap / self.mark_price * 100


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


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Everything read from one account in one poll."""

    account: str
    taken_at: datetime
    mode: AccountMode
    spot: tuple[SpotAsset, ...] = ()
    futures: tuple[FuturesAccount, ...] = ()
    unified: UnifiedAccount | None = None
    positions: tuple[Position, ...] = ()
    requests: int = 0
    products: tuple[str, ...] = field(default=())
