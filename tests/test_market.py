"""Public mark prices from the simulator's tickers: one unsigned request per product type, inside the per-IP
budget, parsed strictly."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from monitor import errors
from monitor.clock import ManualClock, SystemClock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.market import MarkPrices, parse_spot_tickers, parse_tickers
from monitor.exchange.bitget.ratelimit import IpBudget
from tests.conftest import Sim, SimFactory


def tickers_requests(sim: Sim) -> int:
    return sim.sim.requests[("-", ep.TICKERS.path)]


async def test_one_unsigned_request_reads_every_mark_of_a_product_type(sim: Sim) -> None:
    marks = MarkPrices(sim.session, sim.url, IpBudget(600, 60.0, SystemClock()), SystemClock())
    for product_type in ep.FUTURES_PRODUCT_TYPES:
        read = await marks.read(product_type.lower())
        assert read.product_type == product_type
        assert dict(read.prices) == {
            s.name: s.mark for (pt, _), s in sim.world.market.symbols.items() if pt == product_type
        }
    assert tickers_requests(sim) == 3 and sim.sim.rejected == {}  # unsigned: nothing to reject


async def test_reads_wait_for_the_shared_ip_budget(sim: Sim) -> None:
    budget = IpBudget(600, 60.0, SystemClock())
    budget.pause(60)  # as during an IP lock-out
    read = asyncio.create_task(MarkPrices(sim.session, sim.url, budget, SystemClock()).read("USDT-FUTURES"))
    await asyncio.sleep(0.2)
    assert not read.done() and tickers_requests(sim) == 0
    budget.resume()
    assert (await read).prices["BTCUSDT"] == Decimal(60000)
    assert tickers_requests(sim) == 1


async def test_reads_asked_since_the_same_moment_share_one_request(sim: Sim) -> None:
    clock = ManualClock()
    marks = MarkPrices(sim.session, sim.url, IpBudget(600, 60.0, SystemClock()), clock)
    since = clock.now()
    first = await asyncio.gather(*(marks.read("USDT-FUTURES", since) for _ in range(5)))
    assert tickers_requests(sim) == 1 and len({id(m) for m in first}) == 1
    assert await marks.read("USDT-FUTURES", since) is first[0]  # answered since then: reused
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "55000"})
    clock.advance(timedelta(seconds=1))
    later = await marks.read("USDT-FUTURES", clock.now())  # a position vanished after that answer: ask again
    assert tickers_requests(sim) == 2 and later.prices["BTCUSDT"] == Decimal(55000)


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        ("500", errors.ExchangeUnavailable, "HTTP 500: response is not Bitget JSON: '<html>"),
        ("malformed", errors.MalformedResponse, "response is not Bitget JSON"),
        ("429", errors.RateLimited, "Bitget 429"),
    ],
)
async def test_a_failed_read_raises_an_error_naming_the_endpoint_and_product_type(
    sim: Sim, kind: str, error: type[errors.ExchangeError], text: str
) -> None:
    await sim.control("POST", "/_sim/faults", {"kind": kind, "endpoint": ep.TICKERS.path})
    with pytest.raises(error) as caught:
        await MarkPrices(sim.session, sim.url, None, SystemClock()).read("USDT-FUTURES")
    assert str(caught.value).startswith(f"{ep.TICKERS.path}?productType=USDT-FUTURES: ")
    assert text in str(caught.value)


async def test_a_body_past_the_cap_is_refused(sim: Sim) -> None:
    marks = MarkPrices(sim.session, sim.url, None, SystemClock(), max_body=200)
    with pytest.raises(errors.MalformedResponse, match="response body larger than 200 bytes"):
        await marks.read("USDT-FUTURES")


async def test_a_timeout_is_a_request_timeout(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts=1)
    await sim.control("POST", "/_sim/faults", {"kind": "slow", "delay": 2, "endpoint": ep.TICKERS.path})
    marks = MarkPrices(sim.session, sim.url, None, SystemClock(), timeout=0.2)
    with pytest.raises(errors.RequestTimeout, match="productType=USDT-FUTURES: no answer"):
        await marks.read("USDT-FUTURES")


def test_only_futures_product_types_have_marks() -> None:
    with pytest.raises(ValueError, match="'SPOT' is not a futures product type"):
        asyncio.run(MarkPrices(None, "http://127.0.0.1:1", None, SystemClock()).read("spot"))  # type: ignore[arg-type]


def body(rows: Any, code: str = "00000") -> bytes:
    return json.dumps({"code": code, "msg": "success" if code == "00000" else "Parameter error", "data": rows}).encode()


@pytest.mark.parametrize(
    ("mark", "reason"),
    [
        ("", "expected a decimal, got ''"),
        (None, "expected a decimal, got None"),
        ("111,1", "expected a decimal, got '111,1'"),
        ("1e999", "not a usable price: '1e999'"),
        ("NaN", "not a usable price: 'NaN'"),
        ("0", "not a usable price: '0'"),
        ("-5", "not a usable price: '-5'"),
        (True, "expected a decimal, got True"),
        ([], "expected a decimal, got []"),
        ({}, "expected a decimal, got {}"),
    ],
)
def test_an_unreadable_mark_leaves_out_its_symbol_and_says_why(mark: Any, reason: str) -> None:
    rows = [{"symbol": "BTCUSDT", "markPrice": "60000.1"}, {"symbol": "ETHUSDT", "markPrice": mark}]
    prices, unreadable = parse_tickers(200, body(rows), "USDT-FUTURES")
    assert prices == {"BTCUSDT": Decimal("60000.1")}
    assert unreadable == {
        "ETHUSDT": f"{ep.TICKERS.path}?productType=USDT-FUTURES: data[1] (ETHUSDT).markPrice: {reason}"
    }


def test_json_numbers_are_read_exactly_and_a_symbol_listed_twice_differently_is_unreadable() -> None:
    rows = [{"symbol": "A", "markPrice": 0.1}, {"symbol": "B", "markPrice": 7}, {"symbol": "A", "markPrice": "0.2"}]
    prices, unreadable = parse_tickers(200, body(rows), "USDT-FUTURES")
    assert prices == {"B": Decimal(7)} and "A is listed twice with different marks" in unreadable["A"]
    assert parse_tickers(200, body([{"symbol": "C", "markPrice": 0.1}]), "X")[0] == {"C": Decimal("0.1")}


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        (body({"symbol": "BTCUSDT"}), errors.UnexpectedResponse, "data: expected a list of tickers, got {'symbol'"),
        (body(["BTCUSDT"]), errors.UnexpectedResponse, "data[0]: expected an object, got 'BTCUSDT'"),
        (body([{"markPrice": "1"}]), errors.UnexpectedResponse, "data[0].symbol: expected a symbol, got None"),
        (body(None, code="40034"), errors.RequestRejected, "Bitget 40034 (HTTP 200): Parameter error"),
        (b'{"data": []}', errors.MalformedResponse, "not Bitget's {code, msg, data} envelope"),
        (b"<html>", errors.MalformedResponse, "response is not Bitget JSON: '<html>'"),
    ],
)
def test_a_broken_answer_fails_the_read_with_the_endpoint_named(
    raw: bytes, error: type[errors.ExchangeError], text: str
) -> None:
    with pytest.raises(error) as caught:
        parse_tickers(200, raw, "USDT-FUTURES")
    assert str(caught.value).startswith(f"{ep.TICKERS.path}?productType=USDT-FUTURES") and text in str(caught.value)


async def test_one_unsigned_request_reads_the_usdt_price_of_every_spot_coin(sim: Sim) -> None:
    clock = ManualClock()
    marks = MarkPrices(sim.session, sim.url, IpBudget(600, 60.0, SystemClock()), clock)
    spot = await marks.read_spot()
    assert spot.asked_at == clock.now() and spot.unreadable == {}
    assert dict(spot.prices) == {"BTC": 60000, "ETH": 3000, "SOL": 150, "XRP": Decimal("0.6"), "USDC": 1}
    assert sim.sim.requests[("-", ep.SPOT_TICKERS.path)] == 1 and sim.sim.rejected == {}


async def test_a_failed_spot_read_names_the_spot_endpoint(sim: Sim) -> None:
    await sim.control("POST", "/_sim/faults", {"kind": "500", "endpoint": ep.SPOT_TICKERS.path})
    with pytest.raises(errors.ExchangeUnavailable, match=f"^{ep.SPOT_TICKERS.path}: .*HTTP 500"):
        await MarkPrices(sim.session, sim.url, None, SystemClock()).read_spot()


def test_spot_prices_come_from_usdt_pairs_only_and_a_broken_one_says_why() -> None:
    rows = [
        {"symbol": "BTCUSDT", "lastPr": "60000.5"},
        {"symbol": "ETHBTC", "lastPr": "0.05"},  # not quoted in USDT: not a USDT price
        {"symbol": "SOLUSDT", "lastPr": ""},
        {"symbol": "USDT", "lastPr": "1"},
    ]
    prices, unreadable = parse_spot_tickers(200, body(rows))
    assert prices == {"BTC": Decimal("60000.5")}
    assert unreadable == {"SOL": f"{ep.SPOT_TICKERS.path}: data[2] (SOLUSDT).lastPr: expected a decimal, got ''"}
