"""Bitget's response quirks, parsed into exact domain values (pure functions, table-driven)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from monitor.domain import MarginMode, PositionMode, Side
from monitor.exchange.bitget import parse
from monitor.exchange.bitget.clean import clean
from monitor.exchange.bitget.codes import metric_label

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


# -- hostile values --------------------------------------------------------------------------------------------


def test_a_huge_exponent_in_a_time_is_refused_at_once_and_left_unknown() -> None:
    # int(Decimal("1e999999999")) ran for minutes on the event loop; now the range check comes first.
    skipped: list[parse.Skipped] = []
    (p,) = parse.positions([{**POSITION, "cTime": "1e999999999", "uTime": "-1e999999999"}], "USDT-FUTURES", skipped)
    assert p.opened_at is None and p.updated_at is None
    assert [s.field for s in skipped] == ["cTime", "uTime"]
    assert "data[0].cTime: " in skipped[0].problem


@pytest.mark.parametrize("server_time", ["1e999999999", "999", "4102444800000", 1e300, "-1"])
def test_a_server_time_outside_2010_to_2100_is_a_bad_value(server_time: Any) -> None:
    with pytest.raises(parse.BadValue, match=r"data\.serverTime: "):
        parse.server_time({"serverTime": server_time})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"total": "-0.01"}, "total"),
        ({"markPrice": "-59875"}, "markPrice"),
        ({"marginSize": "-1"}, "marginSize"),
        ({"leverage": -10}, "leverage"),
        ({"marginRatio": "-0.5"}, "marginRatio"),
        ({"markPrice": "1e999999999"}, "markPrice"),
        ({"markPrice": "1e309"}, "markPrice"),
        ({"markPrice": "Infinity"}, "markPrice"),
        ({"unrealizedPL": "-inf"}, "unrealizedPL"),
        ({"openPriceAvg": "1e-999999999"}, "openPriceAvg"),
        ({"total": "1" * 65}, "total"),
    ],
)
def test_an_impossible_or_out_of_range_value_is_a_bad_value_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(parse.BadValue) as caught:
        _position(**changes)
    assert str(caught.value).startswith(f"data[0].{field}: ")


@pytest.mark.parametrize(
    "body",
    [
        '{"code":"00000","data":[{"marginCoin":"USDT","accountEquity":1e309}]}',
        '{"code":"00000","data":[{"marginCoin":"USDT","accountEquity":Infinity}]}',
        '{"code":"00000","data":[{"marginCoin":"USDT","accountEquity":NaN}]}',
        '{"code":"00000","data":[{"marginCoin":"USDT","accountEquity":"+Inf"}]}',
    ],
)
def test_an_infinite_equity_is_never_data(body: str) -> None:
    _, _, data = parse.envelope(parse.loads(body))
    with pytest.raises(parse.BadValue, match=r"data\[0\]\.accountEquity: "):
        parse.futures_accounts(data, "USDT-FUTURES")


def test_the_largest_and_finest_real_values_are_read_exactly() -> None:
    p = _position(total="99999999999999999999.5", markPrice="0.000000000000000000000000000001", unrealizedPL="0E-99")
    assert p.size == Decimal("99999999999999999999.5")
    assert p.mark_price == Decimal("1E-30")
    assert p.unrealized_pnl == 0 and p.unrealized_pnl.as_tuple().exponent == 0  # never a million zeros


def test_a_negative_liquidation_price_is_still_bitgets_no_liquidation_price() -> None:
    assert _position(liquidationPrice="-12.5").liquidation_price is None


def test_a_lenient_field_that_cannot_be_read_is_unknown_and_reported_not_fatal() -> None:
    skipped: list[parse.Skipped] = []
    p = parse.positions([{**POSITION, "totalFee": "111,1", "keepMarginRate": [], "breakEvenPrice": "1e999"}],
                        "USDT-FUTURES", skipped)[0]  # fmt: skip
    assert (p.fees, p.maintenance_rate, p.break_even_price) == (None, None, None)
    assert sorted(s.field for s in skipped) == ["breakEvenPrice", "keepMarginRate", "totalFee"]


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        ("BTCUSDT", 64, "BTCUSDT"),
        ("BTC\nUSDT", 64, "BTC\\nUSDT"),
        ("BTC\r\n[CRITICAL] x", 64, "BTC\\r\\n[CRITICAL] x"),
        ("USD\u202eTSB", 64, "USD\\u202eTSB"),
        ("a\u2066b\u2069c\u200bd", 64, "a\\u2066b\\u2069c\\u200bd"),
        ("\x1b[31mred", 64, "\\x1b[31mred"),
        ("line\u2028sep", 64, "line\\u2028sep"),
        ("x" * 500, 10, "x" * 9 + "…"),
        ("\n" * 500, 10, "\\n\\n\\n\\n\\n…"[:9] + "…"),
        ("héllo 世界", 64, "héllo 世界"),
    ],
)
def test_exchange_text_is_escaped_and_clipped(raw: str, limit: int, expected: str) -> None:
    assert clean(raw, limit) == expected
    assert len(clean(raw, limit)) <= limit


def test_symbols_coins_codes_and_messages_are_cleaned_where_they_are_read() -> None:
    p = _position(symbol="BTCUSDT\n2026-01-01 CRITICAL forged" + "X" * 200, marginCoin="US\u202eDT")
    assert p.symbol.isprintable() and len(p.symbol) == 64 and p.symbol.startswith("BTCUSDT\\n")
    assert p.margin_coin == "US\\u202eDT"
    code, msg, _ = parse.envelope({"code": "ERR-0-x\n" + "9" * 100, "msg": "bad\r\n" * 10_000_000, "data": None})
    assert code.isprintable() and len(code) <= 32
    assert msg.isprintable() and len(msg) <= 300 and msg.startswith("bad\\r\\nbad")


def test_a_key_info_with_odd_values_is_read_leniently() -> None:
    info = parse.key_info({"userId": [], "ips": "1.2.3.4\u202e,5.6.7.8", "authorities": [{"x": 1}, "readonly"] * 500})
    assert info.uid is None and info.ips == ("1.2.3.4\\u202e", "5.6.7.8")
    assert len(info.permissions) <= 100


@pytest.mark.parametrize(
    ("code", "label"),
    [("40012", "40012"), ("429", "429"), ("ERR-0-x", "other"), ("12345", "other"), ("", "other"), (None, "other"),
     ("MalformedResponse", "MalformedResponse"), ("RequestTimeout", "RequestTimeout"), ("Exception", "other")],
)  # fmt: skip
def test_only_bitgets_known_codes_and_our_error_names_become_metric_labels(code: str | None, label: str) -> None:
    assert metric_label(code) == label


@pytest.mark.parametrize(
    ("side", "mode", "refused"),
    [("short", "isolated", True), ("long", "isolated", False), ("short", "crossed", False), ("long", "crossed", False)],
)
def test_a_negative_liquidation_price_is_refused_only_for_an_isolated_short(
    side: str, mode: str, refused: bool
) -> None:
    changes = {"holdSide": side, "marginMode": mode, "liquidationPrice": "-5"}
    if refused:
        with pytest.raises(parse.BadValue, match=r"data\[0\]\.liquidationPrice: impossible value -5"):
            _position(**changes)
    else:
        assert _position(**changes).liquidation_price is None
