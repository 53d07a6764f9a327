"""The endpoints a read-only monitor uses, with Bitget's rate limits.

The client schedules under these limits and the simulator enforces them, so both read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Scope(Enum):
    ACCOUNT = "account"  # counted per account (UID)
    IP = "ip"  # counted per client IP


@dataclass(frozen=True)
class Endpoint:
    path: str
    per_second: int
    scope: Scope = Scope.ACCOUNT
    signed: bool = True


SERVER_TIME = Endpoint("/api/v2/public/time", 20, Scope.IP, signed=False)
ACCOUNT_INFO = Endpoint("/api/v2/spot/account/info", 1)
SPOT_ASSETS = Endpoint("/api/v2/spot/account/assets", 10)
MIX_ACCOUNTS = Endpoint("/api/v2/mix/account/accounts", 10)
MIX_ACCOUNT = Endpoint("/api/v2/mix/account/account", 10)
ALL_POSITIONS = Endpoint("/api/v2/mix/position/all-position", 5)
SINGLE_POSITION = Endpoint("/api/v2/mix/position/single-position", 10)
SYMBOL_PRICE = Endpoint("/api/v2/mix/market/symbol-price", 20, Scope.IP, signed=False)
TICKERS = Endpoint("/api/v2/mix/market/tickers", 20, Scope.IP, signed=False)
SPOT_TICKERS = Endpoint("/api/v2/spot/market/tickers", 20, Scope.IP, signed=False)
ALL_ACCOUNT_BALANCE = Endpoint("/api/v2/account/all-account-balance", 1)
UNIFIED_ASSETS = Endpoint("/api/v3/account/assets", 20)
UNIFIED_POSITIONS = Endpoint("/api/v3/position/current-position", 20)
UNIFIED_SETTINGS = Endpoint("/api/v3/account/settings", 20)

ALL: tuple[Endpoint, ...] = (
    SERVER_TIME,
    ACCOUNT_INFO,
    SPOT_ASSETS,
    MIX_ACCOUNTS,
    MIX_ACCOUNT,
    ALL_POSITIONS,
    SINGLE_POSITION,
    SYMBOL_PRICE,
    TICKERS,
    SPOT_TICKERS,
    ALL_ACCOUNT_BALANCE,
    UNIFIED_ASSETS,
    UNIFIED_POSITIONS,
    UNIFIED_SETTINGS,
)
BY_PATH: dict[str, Endpoint] = {e.path: e for e in ALL}

# Futures product types of the v2 API. Bitget accepts them in either case.
FUTURES_PRODUCT_TYPES = ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES")
SPOT = "spot"
