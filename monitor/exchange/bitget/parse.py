"""Bitget response bodies into domain objects.

Every numeric field is read tolerantly (strings, JSON numbers, "" and null) into Decimal, never float, and
range-checked before any arithmetic (fields.py); every string is cleaned (clean.py) as it is read.

Fields come in two kinds. Strict ones are what the risk picture rests on (equity, available, unrealized PnL,
risk and margin ratios, side, size, mark, liquidation price, margin, leverage) and what names a row (coin,
symbol, modes): one that cannot be read fails the read, naming the endpoint and the field. Every other field
is lenient: an unreadable value becomes unknown (None) and is reported in `skipped` for the caller to log,
so an odd value in a field the monitor does not need never makes an account unreadable.

Two failures: BadField (the answer's shape changed: permanent) and its subclass BadValue (a value no real
answer holds: a passing fault, retried). Nothing here crashes on input or spends time on a huge number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

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
from monitor.errors import MalformedResponse, UnexpectedResponse
from monitor.exchange.bitget import clean as limits
from monitor.exchange.bitget.clean import clean
from monitor.exchange.bitget.codes import SUCCESS
from monitor.exchange.bitget.fields import MAX_LIST, BadField, BadValue, Fields, Skipped, items_of, show

__all__ = ["BadField", "BadValue", "Fields", "Skipped"]

_ZERO = Decimal(0)


def _constant(name: str) -> Decimal:
    # NaN and Infinity (JSON extensions Python accepts) become non-finite Decimals that the field check refuses.
    return Decimal(name)


# One decoder for every answer: json.loads with options builds a new one (and its scanner) at every call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_constant)


def loads(text: str) -> Any:
    """JSON with every non-integer number as Decimal: a float never touches money."""
    return _DECODER.decode(text)


def envelope(body: Any) -> tuple[str, str, Any]:
    """(code, msg, data) of Bitget's envelope; `code` may arrive as a number or a string. Both are cleaned."""
    if not isinstance(body, Mapping) or "code" not in body:
        raise BadField("the body is not Bitget's {code, msg, data} envelope")
    code, msg = body["code"], body.get("msg")
    if isinstance(code, bool) or not isinstance(code, str | int):
        raise BadField(f"code: expected text, got {show(code)}")
    message = msg if isinstance(msg, str) else str(msg) if isinstance(msg, int) and not isinstance(msg, bool) else ""
    return clean(str(code), limits.CODE), clean(message, limits.MESSAGE), body.get("data")


def is_success(code: str) -> bool:
    return code == SUCCESS


def _liquidation(f: Fields, name: str, side: Side, mode: MarginMode) -> Decimal | None:
    # 0, "" or a negative price (Bitget sends them for low-risk cross positions, and an isolated long holding
    # more margin than its value has one) all mean "no liquidation price". An isolated short always has one,
    # above its entry: a negative one there is no real answer.
    price = f.opt(name)
    if price is not None and price < 0 and side is Side.SHORT and mode is MarginMode.ISOLATED:
        raise BadValue(f"{name}: impossible value {price} for an isolated short")
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
    # Strict: a crossed hedge pair's distance is measured both ways, so a wrong guess misjudges the risk.
    value = f.text(name, default="one_way_mode").lower()
    if value.startswith("hedge"):
        return PositionMode.HEDGE
    if value.startswith("one_way"):
        return PositionMode.ONE_WAY
    raise BadField(f"{name}: unknown position mode {value!r}")


# -- endpoints ---------------------------------------------------------------------------------------------
# Each takes `data` and, optionally, a list that collects the lenient fields left unknown.


def server_time(data: Any, skipped: list[Skipped] | None = None) -> int:
    value = Fields(data, "data", skipped).ms("serverTime")
    if value is None:
        raise BadField("data.serverTime: missing")
    return value


def key_info(data: Any, skipped: list[Skipped] | None = None) -> KeyInfo:
    # All lenient: what the key may do is a warning on the page, never a reason to stop reading the account.
    f = Fields(data, "data", skipped)
    return KeyInfo(
        uid=f.loose_text("userId"),
        permissions=_texts(f._raw(("authorities",)), split=False),
        ips=_texts(f._raw(("ips",)), split=True),
        parent_uid=f.loose_text("parentId"),
    )


def _texts(raw: Any, *, split: bool) -> tuple[str, ...]:
    """A list of strings, or (with `split`) one comma-separated string; anything else is none at all."""
    if isinstance(raw, str) and split:
        raw = raw[: MAX_LIST * limits.TEXT].split(",")
    if not isinstance(raw, list):
        return ()
    words = (clean(str(v).strip(), limits.TEXT) for v in raw[:MAX_LIST] if isinstance(v, str | int))
    return tuple(w for w in words if w)


def spot_assets(data: Any, skipped: list[Skipped] | None = None) -> tuple[SpotAsset, ...]:
    # frozen and locked are strict too: with no USDT valuation they count towards the equity.
    return tuple(
        SpotAsset(
            coin=f.text("coin", limit=limits.COIN),
            available=f.num("available", default=_ZERO, floor=_ZERO),
            frozen=f.num("frozen", default=_ZERO, floor=_ZERO),
            locked=f.num("locked", default=_ZERO, floor=_ZERO),
            updated_at=f.loose_time("uTime"),
        )
        for f in items_of(data, "data", skipped)
    )


def account_balances(data: Any, skipped: list[Skipped] | None = None) -> dict[str, Decimal]:
    """USDT valuation per account type. Only the spot one is used (it is part of the equity): strict."""
    result = {}
    for f in items_of(data, "data", skipped):
        kind = f.loose_text("accountType")
        value = f.num("usdtBalance", default=_ZERO, floor=_ZERO) if kind == "spot" else f.loose("usdtBalance")
        if kind is not None and value is not None:
            result[kind] = value
    return result


def futures_accounts(data: Any, product_type: str, skipped: list[Skipped] | None = None) -> tuple[FuturesAccount, ...]:
    return tuple(
        FuturesAccount(
            product_type=product_type,
            margin_coin=f.text("marginCoin", limit=limits.COIN),
            equity=f.num("accountEquity"),
            usdt_equity=f.opt("usdtEquity"),  # converts the equity of a coin-margined account: strict
            available=f.num("available", default=_ZERO),
            locked=f.num("locked", default=_ZERO, floor=_ZERO),  # stored with every balance row
            unrealized_pnl=f.num("unrealizedPL", default=_ZERO),
            cross_risk_ratio=f.opt("crossedRiskRate", floor=_ZERO),
            crossed_margin=f.loose("crossedMargin"),
            isolated_margin=f.loose("isolatedMargin"),
            # Bitget's own example spells it "unionTotalMagin" (and writes "111,1" in it).
            union_total_margin=f.loose("unionTotalMargin", "unionTotalMagin"),
            asset_mode=f.loose_text("assetMode"),
        )
        for f in items_of(data, "data", skipped)
    )


def positions(data: Any, product_type: str, skipped: list[Skipped] | None = None) -> tuple[Position, ...]:
    def row(f: Fields) -> Position:
        side, mode = _side(f, "holdSide"), _margin_mode(f)
        return Position(
            product_type=product_type,
            symbol=f.text("symbol", limit=limits.SYMBOL),
            margin_coin=f.text("marginCoin", limit=limits.COIN),
            side=side,
            position_mode=_position_mode(f, "posMode"),
            margin_mode=mode,
            size=f.num("total", floor=_ZERO),
            entry_price=f.num("openPriceAvg", floor=_ZERO),  # stored with every position row
            mark_price=f.num("markPrice", floor=_ZERO),
            liquidation_price=_liquidation(f, "liquidationPrice", side, mode),
            margin=f.num("marginSize", default=_ZERO, floor=_ZERO),
            leverage=f.opt("leverage", floor=_ZERO),
            unrealized_pnl=f.num("unrealizedPL", default=_ZERO),
            margin_ratio=f.opt("marginRatio", floor=_ZERO),
            maintenance_rate=f.loose("keepMarginRate"),
            break_even_price=f.loose("breakEvenPrice"),
            fees=f.loose("totalFee"),
            opened_at=f.loose_time("cTime"),
            updated_at=f.loose_time("uTime"),
        )

    return _rows(items_of(data, "data", skipped), row)


def _rows(items: list[Fields], row: Callable[[Fields], Position]) -> tuple[Position, ...]:
    """Positions from a list of objects; a BadField names the object it came from."""
    result = []
    for f in items:
        try:
            result.append(row(f))
        except BadField as exc:
            message = str(exc)
            if message.startswith(f._where):
                raise
            raise type(exc)(f"{f._where}.{message}") from None
    return tuple(result)


def unified_settings(data: Any, skipped: list[Skipped] | None = None) -> str:
    # The mode is known from the endpoint answering at all (a classic account gets 40084): lenient.
    return Fields(data, "data", skipped).loose_text("accountMode") or "unified"


def unified_account(data: Any, skipped: list[Skipped] | None = None) -> UnifiedAccount:
    f = Fields(data, "data", skipped)
    # An asset's amounts are strict: they are stored, and balance and debt tell a changed holding.
    assets = tuple(
        UnifiedAsset(
            coin=a.text("coin", limit=limits.COIN),
            equity=a.num("equity", default=_ZERO),
            usd_value=a.loose("usdValue"),
            balance=a.num("balance", default=_ZERO),
            available=a.num("available", default=_ZERO),
            debt=a.num("debt", default=_ZERO, floor=_ZERO),
            locked=a.num("locked", default=_ZERO, floor=_ZERO),
        )
        for a in f.items("assets")
    )
    return UnifiedAccount(
        equity=f.num("accountEquity"),
        usdt_equity=f.num("usdtEquity"),
        unrealized_pnl=f.num("usdtUnrealisedPnl", "unrealisedPnl", default=_ZERO),
        margin_ratio=f.opt("mgnRatio", floor=_ZERO),
        maintenance_margin=f.loose("mmr"),
        initial_margin=f.loose("imr"),
        effective_equity=f.loose("effEquity"),
        assets=assets,
    )


def unified_positions(data: Any, skipped: list[Skipped] | None = None) -> tuple[Position, ...]:
    def row(f: Fields) -> Position:
        open_fee, close_fee = f.loose("openFeeTotal"), f.loose("closeFeeTotal")
        side, mode = _side(f, "posSide"), _margin_mode(f)
        return Position(
            product_type=f.text("category", limit=limits.CODE).upper(),
            symbol=f.text("symbol", limit=limits.SYMBOL),
            margin_coin=f.text("marginCoin", limit=limits.COIN),
            side=side,
            position_mode=_position_mode(f, "holdMode"),
            margin_mode=mode,
            size=f.num("total", floor=_ZERO),
            entry_price=f.num("avgPrice", floor=_ZERO),  # stored with every position row
            mark_price=f.num("markPrice", floor=_ZERO),
            liquidation_price=_liquidation(f, "liquidationPrice", side, mode),
            margin=f.num("positionBalance", default=_ZERO, floor=_ZERO),
            leverage=f.opt("leverage", floor=_ZERO),
            unrealized_pnl=f.num("unrealisedPnl", default=_ZERO),
            margin_ratio=None,  # v3 positions carry none; the account's mgnRatio speaks for them
            maintenance_rate=f.loose("mmr"),
            break_even_price=f.loose("breakEvenPrice"),
            fees=None if open_fee is None and close_fee is None else (open_fee or _ZERO) + (close_fee or _ZERO),
            opened_at=f.loose_time("createdTime"),
            updated_at=f.loose_time("updatedTime"),
        )

    return _rows(Fields(data, "data", skipped).items("list") if data is not None else [], row)


def unexpected(exc: BadField, *, account: str, endpoint: str) -> UnexpectedResponse | MalformedResponse:
    """The error a field that cannot be read becomes: malformed (retried) for an impossible value, unexpected
    (permanent: the format changed) for a value of the wrong kind."""
    kind = MalformedResponse if isinstance(exc, BadValue) else UnexpectedResponse
    return kind(f"unreadable response: {exc}", account=account, endpoint=endpoint, http_status=200)
