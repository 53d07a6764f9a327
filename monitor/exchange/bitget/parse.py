"""Bitget response bodies into domain objects.

Every numeric field is read tolerantly (strings, JSON numbers, "" and null) into Decimal, never float. A body
that does not fit raises MalformedResponse naming the endpoint and the field; nothing here crashes on input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.clock import from_epoch_ms
from monitor.domain import (
    FuturesAccount,
    KeyInfo,
    MarginMode,
    Position,
    PositionMode,
    Side,
    SpotAsset,
    UnifiedAccount,
    UnifiedAsset,
)
from monitor.errors import UnexpectedResponse
from monitor.exchange.bitget.codes import SUCCESS

_ZERO = Decimal(0)
_MISSING = object()


class BadField(ValueError):
    """A field that does not parse; turned into MalformedResponse with the endpoint by the caller."""


def loads(text: str) -> Any:
    """JSON with every non-integer number as Decimal: a float never touches money."""
    return json.loads(text, parse_float=Decimal)


def envelope(body: Any) -> tuple[str, str, Any]:
    """(code, msg, data) of Bitget's envelope; `code` may arrive as a number or a string."""
    if not isinstance(body, Mapping) or "code" not in body:
        raise BadField("the body is not Bitget's {code, msg, data} envelope")
    return str(body["code"]), str(body.get("msg") or ""), body.get("data")


def is_success(code: str) -> bool:
    return code == SUCCESS


class Fields:
    """Typed access to one JSON object, with the path used in error messages."""

    __slots__ = ("_obj", "_where")

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, Mapping):
            raise BadField(f"{where}: expected an object, got {_show(obj)}")
        self._obj = obj
        self._where = where

    def _raw(self, names: tuple[str, ...]) -> Any:
        for name in names:
            if name in self._obj:
                return self._obj[name]
        return _MISSING

    def opt(self, *names: str) -> Decimal | None:
        """A decimal, or None when absent, "" or null."""
        value = self._raw(names)
        if value is _MISSING or value is None or value == "":
            return None
        return self._decimal(names[0], value)

    def num(self, *names: str, default: Decimal | None = None) -> Decimal:
        """A decimal that must be there; `default` stands in for absent, "" or null when given."""
        value = self.opt(*names)
        if value is not None:
            return value
        if default is not None:
            return default
        raise BadField(f"{self._where}.{names[0]}: missing")

    def text(self, *names: str, default: str | None = None) -> str:
        value = self._raw(names)
        if value is _MISSING or value is None or value == "":
            if default is not None:
                return default
            raise BadField(f"{self._where}.{names[0]}: missing")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise BadField(f"{self._where}.{names[0]}: expected text, got {_show(value)}")
        return str(value)

    def items(self, name: str) -> list[Fields]:
        """A list of objects under `name`; absent or null is an empty list."""
        raw = self._raw((name,))
        return _items(None if raw is _MISSING else raw, f"{self._where}.{name}")

    def time(self, *names: str) -> datetime | None:
        """Bitget's millisecond timestamps ("1702575043747" or a number) as UTC."""
        value = self.opt(*names)
        if value is None:
            return None
        try:
            return from_epoch_ms(int(value))
        except (OverflowError, ValueError, OSError):
            raise BadField(f"{self._where}.{names[0]}: not a millisecond timestamp: {_show(value)}") from None

    def _decimal(self, name: str, value: Any) -> Decimal:
        if isinstance(value, bool):
            raise BadField(f"{self._where}.{name}: expected a number, got {_show(value)}")
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, float):
            result = Decimal(repr(value))
        elif isinstance(value, str):
            try:
                result = Decimal(value.strip())
            except InvalidOperation:
                raise BadField(f"{self._where}.{name}: not a number: {_show(value)}") from None
        else:
            raise BadField(f"{self._where}.{name}: expected a number, got {_show(value)}")
        if not result.is_finite():
            raise BadField(f"{self._where}.{name}: not a finite number: {_show(value)}")
        return result


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _items(data: Any, where: str) -> list[Fields]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise BadField(f"{where}: expected a list, got {_show(data)}")
    return [Fields(item, f"{where}[{i}]") for i, item in enumerate(data)]


def _liquidation(f: Fields, name: str) -> Decimal | None:
    # 0, "" or a negative price (seen live for low-risk cross positions) all mean "no liquidation price".
    price = f.opt(name)
    return price if price is not None and price > 0 else None


def _side(f: Fields, name: str) -> Side:
    value = f.text(name).lower()
    try:
        return Side(value)
    except ValueError:
        raise BadField(f"{name}: unknown side {value!r}") from None


def _margin_mode(f: Fields) -> MarginMode:
    value = f.text("marginMode").lower()
    if value in ("isolated", "fixed"):
        return MarginMode.ISOLATED
    if value in ("crossed", "cross"):
        return MarginMode.CROSSED
    raise BadField(f"marginMode: unknown margin mode {value!r}")


def _position_mode(f: Fields, name: str) -> PositionMode:
    value = f.text(name, default="one_way_mode").lower()
    return PositionMode.HEDGE if value.startswith("hedge") else PositionMode.ONE_WAY


# -- endpoints ---------------------------------------------------------------------------------------------


def server_time(data: Any) -> int:
    return int(Fields(data, "data").num("serverTime"))


def key_info(data: Any) -> KeyInfo:
    f = Fields(data, "data")
    ips_raw = f._raw(("ips",))
    if isinstance(ips_raw, list):
        ips = tuple(str(ip).strip() for ip in ips_raw if str(ip).strip())
    elif isinstance(ips_raw, str):
        ips = tuple(ip.strip() for ip in ips_raw.split(",") if ip.strip())
    else:
        ips = ()
    perms_raw = f._raw(("authorities",))
    perms = tuple(str(p) for p in perms_raw) if isinstance(perms_raw, list) else ()
    parent = f.text("parentId", default="") or None
    return KeyInfo(uid=f.text("userId"), permissions=perms, ips=ips, parent_uid=parent)


def spot_assets(data: Any) -> tuple[SpotAsset, ...]:
    return tuple(
        SpotAsset(
            coin=f.text("coin"),
            available=f.num("available", default=_ZERO),
            frozen=f.num("frozen", default=_ZERO),
            locked=f.num("locked", default=_ZERO),
            updated_at=f.time("uTime"),
        )
        for f in _items(data, "data")
    )


def account_balances(data: Any) -> dict[str, Decimal]:
    return {f.text("accountType"): f.num("usdtBalance", default=_ZERO) for f in _items(data, "data")}


def futures_accounts(data: Any, product_type: str) -> tuple[FuturesAccount, ...]:
    return tuple(
        FuturesAccount(
            product_type=product_type,
            margin_coin=f.text("marginCoin"),
            equity=f.num("accountEquity"),
            usdt_equity=f.opt("usdtEquity"),
            available=f.num("available", default=_ZERO),
            locked=f.num("locked", default=_ZERO),
            unrealized_pnl=f.num("unrealizedPL", default=_ZERO),
            cross_risk_ratio=f.opt("crossedRiskRate"),
            crossed_margin=f.opt("crossedMargin"),
            isolated_margin=f.opt("isolatedMargin"),
            # Bitget's own example spells it "unionTotalMagin".
            union_total_margin=f.opt("unionTotalMargin", "unionTotalMagin"),
            asset_mode=f.text("assetMode", default="") or None,
        )
        for f in _items(data, "data")
    )


def positions(data: Any, product_type: str) -> tuple[Position, ...]:
    def row(f: Fields) -> Position:
        return Position(
            product_type=product_type,
            symbol=f.text("symbol"),
            margin_coin=f.text("marginCoin"),
            side=_side(f, "holdSide"),
            position_mode=_position_mode(f, "posMode"),
            margin_mode=_margin_mode(f),
            size=f.num("total"),
            entry_price=f.num("openPriceAvg"),
            mark_price=f.num("markPrice"),
            liquidation_price=_liquidation(f, "liquidationPrice"),
            margin=f.num("marginSize", default=_ZERO),
            leverage=f.opt("leverage"),
            unrealized_pnl=f.num("unrealizedPL", default=_ZERO),
            margin_ratio=f.opt("marginRatio"),
            maintenance_rate=f.opt("keepMarginRate"),
            break_even_price=f.opt("breakEvenPrice"),
            fees=f.opt("totalFee"),
            opened_at=f.time("cTime"),
            updated_at=f.time("uTime"),
        )

    return _rows(_items(data, "data"), row)


def _rows(items: list[Fields], row: Callable[[Fields], Position]) -> tuple[Position, ...]:
    """Positions from a list of objects; a BadField names the object it came from."""
    result = []
    for f in items:
        try:
            result.append(row(f))
        except BadField as exc:
            message = str(exc)
            raise (exc if message.startswith(f._where) else BadField(f"{f._where}.{message}")) from None
    return tuple(result)


def unified_settings(data: Any) -> str:
    return Fields(data, "data").text("accountMode", default="unified")


def unified_account(data: Any) -> UnifiedAccount:
    f = Fields(data, "data")
    assets = tuple(
        UnifiedAsset(
            coin=a.text("coin"),
            equity=a.num("equity", default=_ZERO),
            usd_value=a.opt("usdValue"),
            balance=a.num("balance", default=_ZERO),
            available=a.num("available", default=_ZERO),
            debt=a.num("debt", default=_ZERO),
            locked=a.num("locked", default=_ZERO),
        )
        for a in f.items("assets")
    )
    return UnifiedAccount(
        equity=f.num("accountEquity"),
        usdt_equity=f.num("usdtEquity"),
        unrealized_pnl=f.num("usdtUnrealisedPnl", "unrealisedPnl", default=_ZERO),
        margin_ratio=f.opt("mgnRatio"),
        maintenance_margin=f.opt("mmr"),
        initial_margin=f.opt("imr"),
        effective_equity=f.opt("effEquity"),
        assets=assets,
    )


def unified_positions(data: Any) -> tuple[Position, ...]:
    def row(f: Fields) -> Position:
        open_fee, close_fee = f.opt("openFeeTotal"), f.opt("closeFeeTotal")
        return Position(
            product_type=f.text("category").upper(),
            symbol=f.text("symbol"),
            margin_coin=f.text("marginCoin"),
            side=_side(f, "posSide"),
            position_mode=_position_mode(f, "holdMode"),
            margin_mode=_margin_mode(f),
            size=f.num("total"),
            entry_price=f.num("avgPrice"),
            mark_price=f.num("markPrice"),
            liquidation_price=_liquidation(f, "liquidationPrice"),
            margin=f.num("positionBalance", default=_ZERO),
            leverage=f.opt("leverage"),
            unrealized_pnl=f.num("unrealisedPnl", default=_ZERO),
            margin_ratio=None,  # v3 positions carry none; the account's mgnRatio speaks for them
            maintenance_rate=f.opt("mmr"),
            break_even_price=f.opt("breakEvenPrice"),
            fees=None if open_fee is None and close_fee is None else (open_fee or _ZERO) + (close_fee or _ZERO),
            opened_at=f.time("createdTime"),
            updated_at=f.time("updatedTime"),
        )

    return _rows(Fields(data, "data").items("list") if data is not None else [], row)


def unexpected(exc: BadField, *, account: str, endpoint: str) -> UnexpectedResponse:
    return UnexpectedResponse(f"unreadable response: {exc}", account=account, endpoint=endpoint, http_status=200)
