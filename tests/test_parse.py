"""Bitget's response quirks, parsed into exact domain values (pure functions, table-driven)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from monitor.domain import MarginMode, PositionMode, Side
from monitor.exchange.bitget import parse

POSITION: dict[str, Any] = {
    "symbol": "BTCUSDT", "marginCoin": "USDT", "holdSide": "long", "posMode": "hedge_mode",
    "marginMode": "crossed", "marginSize": "100.5", "total": "0.01", "leverage": 10,
    "openPriceAvg": "60000", "unrealizedPL": "-1.25", "liquidationPrice": "54000.1",
    "keepMarginRate": "0.004", "markPrice": "59875", "marginRatio": "0.0123", "breakEvenPrice": "",
    "totalFee": None, "cTime": "1702575043747", "uTime": 1702575043748,
}  # fmt: skip


def _position(**changes: Any) -> Any:
    return parse.positions([{**POSITION, **changes}], "USDT-FUTURES")[0]


def test_a_position_is_read_exactly() -> None:
    p = _position()
    assert (p.side, p.position_mode, p.margin_mode) == (Side.LONG, PositionMode.HEDGE, MarginMode.CROSSED)
    assert (p.size, p.entry_price, p.mark_price, p.margin) == (
        Decimal("0.01"), Decimal("60000"), Decimal("59875"), Decimal("100.5"),
    )  # fmt: skip
    assert p.leverage == Decimal(10)  # a JSON number
    assert p.break_even_price is None and p.fees is None  # "" and null
    assert p.opened_at is not None and p.opened_at.tzinfo is not None
    assert p.opened_at.isoformat() == "2023-12-14T17:30:43.747000+00:00"
    assert p.liquidation_distance_pct == (Decimal("59875") - Decimal("54000.1")) / Decimal("59875") * 100


@pytest.mark.parametrize("liq", ["0", "", None, "-9880613.76", -1])
def test_a_zero_empty_or_negative_liquidation_price_means_none(liq: Any) -> None:
    p = _position(liquidationPrice=liq)
    assert p.liquidation_price is None and p.liquidation_distance_pct is None


def test_a_short_positions_distance_runs_upwards() -> None:
    p = _position(holdSide="short", markPrice="100", liquidationPrice="110")
    assert p.liquidation_distance_pct == Decimal(10)


def test_a_crossed_hedge_pair_can_liquidate_either_way_but_a_one_way_long_above_its_price_is_past_it() -> None:
    # Both legs of a nearly balanced crossed pair share a price that can lie above the mark for the long.
    hedged = _position(holdSide="long", markPrice="100", liquidationPrice="104")
    assert hedged.liquidation_distance_pct == Decimal(4)
    one_way = _position(holdSide="long", posMode="one_way_mode", markPrice="100", liquidationPrice="104")
    assert one_way.liquidation_distance_pct == Decimal(-4)
    isolated = _position(holdSide="long", marginMode="isolated", markPrice="100", liquidationPrice="104")
    assert isolated.liquidation_distance_pct == Decimal(-4)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"markPrice": "abc"}, "data[0].markPrice: not a number: 'abc'"),
        ({"markPrice": True}, "data[0].markPrice: expected a number, got True"),
        ({"markPrice": "NaN"}, "data[0].markPrice: not a finite number: 'NaN'"),
        ({"total": ""}, "data[0].total: missing"),
        ({"holdSide": "sideways"}, "data[0].holdSide: unknown side 'sideways'"),
        ({"marginMode": "portfolio"}, "data[0].marginMode: unknown margin mode 'portfolio'"),
        ({"symbol": {"x": 1}}, "data[0].symbol: expected text, got {'x': 1}"),
    ],
)
def test_an_unreadable_field_is_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(parse.BadField) as caught:
        _position(**changes)
    assert str(caught.value) == message


def test_json_numbers_never_become_floats() -> None:
    code, _, data = parse.envelope(parse.loads('{"code":"00000","msg":"","requestTime":"1","data":{"x":0.1}}'))
    assert code == "00000" and data["x"] == Decimal("0.1") and isinstance(data["x"], Decimal)


@pytest.mark.parametrize("request_time", ["1700000000000", 1700000000000])
def test_request_time_may_be_a_string_or_a_number(request_time: Any) -> None:
    assert parse.envelope({"code": 0, "msg": "ok", "requestTime": request_time, "data": []})[0] == "0"


def test_a_body_without_the_envelope_is_refused() -> None:
    with pytest.raises(parse.BadField):
        parse.envelope(["not", "an", "envelope"])


@pytest.mark.parametrize("spelling", ["unionTotalMargin", "unionTotalMagin"])
def test_both_spellings_of_union_total_margin_are_read(spelling: str) -> None:
    account = {"marginCoin": "USDT", "accountEquity": "10", "crossedRiskRate": "", spelling: "12.5"}
    (result,) = parse.futures_accounts([account], "USDT-FUTURES")
    assert result.union_total_margin == Decimal("12.5")
    assert result.cross_risk_ratio is None
    assert result.available == 0


@pytest.mark.parametrize(
    ("ips", "expected"), [("1.2.3.4,5.6.7.8", ("1.2.3.4", "5.6.7.8")), (["1.2.3.4"], ("1.2.3.4",)), ("", ())]
)
def test_key_ips_come_as_a_string_or_a_list(ips: Any, expected: tuple[str, ...]) -> None:
    info = parse.key_info({"userId": "1", "ips": ips, "authorities": ["readonly"]})
    assert info.ips == expected
    assert info.ip_bound == bool(expected)
    assert not info.can_trade and not info.can_withdraw


def test_unified_positions_and_assets_use_v3_spellings() -> None:
    account = parse.unified_account({
        "accountEquity": "100", "usdtEquity": "100", "unrealisedPnl": "-3", "mgnRatio": "0.25", "mmr": "5",
        "assets": [{"coin": "USDT", "equity": "100", "usdValue": "100", "balance": "103", "available": "50"}],
    })  # fmt: skip
    assert (account.unrealized_pnl, account.margin_ratio, account.assets[0].debt) == (Decimal(-3), Decimal("0.25"), 0)
    (position,) = parse.unified_positions({"list": [{
        "category": "usdt-futures", "symbol": "ETHUSDT", "marginCoin": "USDT", "holdMode": "one_way_mode",
        "posSide": "short", "marginMode": "isolated", "positionBalance": "50", "total": "1", "avgPrice": "3000",
        "unrealisedPnl": "5", "liquidationPrice": "3500", "markPrice": "2995", "openFeeTotal": "-1.2",
        "closeFeeTotal": "",
    }]})  # fmt: skip
    assert (position.product_type, position.side, position.margin_ratio) == ("USDT-FUTURES", Side.SHORT, None)
    assert position.fees == Decimal("-1.2")
    assert parse.unified_positions({"list": None}) == ()
