"""Hostile answers from the exchange (the simulator's hostile faults, and small servers of our own on loopback)
stay with their account: a malformed, retried error naming the endpoint and the field, never data, never a
frozen process, never a forged line, never a body held in memory past the cap."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from aiohttp import web

from monitor import errors
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.body import MAX_RESPONSE_SIZE, parse_size
from monitor.exchange.bitget.codes import metric_label
from monitor.simulator.market import SimAccount
from tests.conftest import Sim


def _with_positions(a: SimAccount) -> bool:
    return not a.unified and a.secret is not None and any(p.product_type == "USDT-FUTURES" for p in a.positions)


async def _fault(sim: Sim, account: SimAccount, kind: str, **options: Any) -> None:
    await sim.control("POST", "/_sim/faults", {"kind": kind, "account": account.name, **options})


async def test_a_huge_body_is_dropped_at_the_cap_as_a_retryable_fault_without_holding_it_in_memory(sim: Sim) -> None:
    account = sim.first(_with_positions)
    client = sim.client(account)
    await _fault(sim, account, "huge_body", endpoint=ep.SPOT_ASSETS.path, size=50 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(errors.MalformedResponse) as caught:
            await client.spot_assets()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.retryable and caught.value.endpoint == ep.SPOT_ASSETS.path
    assert "response too large" in str(caught.value) and str(MAX_RESPONSE_SIZE) in str(caught.value)
    # The simulator serves from this process too; both together stay near the cap, far below 50 MB.
    assert peak < 3 * MAX_RESPONSE_SIZE, f"{peak} bytes at peak"
    assert len(await client.spot_assets()) > 0  # the connection was dropped, the next request is fine


async def test_a_body_declared_larger_than_the_cap_is_refused_before_it_is_read(sim: Sim, aiohttp_server: Any) -> None:
    body = b'{"code":"00000","msg":"","data":[' + b'"x",' * 300_000 + b'"x"]}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = await aiohttp_server(app)
    client = sim.client(sim.first(_with_positions))
    client.base_url = str(server.make_url("")).rstrip("/")
    client.max_response_size = 1024 * 1024
    with pytest.raises(errors.MalformedResponse, match=f"{len(body)} bytes declared") as caught:
        await client.spot_assets()
    assert caught.value.retryable
    client.max_response_size = 2 * 1024 * 1024
    with pytest.raises(errors.UnexpectedResponse):  # read in full now: a list of strings is no asset list
        await client.spot_assets()


@pytest.mark.parametrize(
    ("text", "size"), [("4MB", 4 * 1024**2), ("512kB", 512 * 1024), (65536, 65536), ("1 GB", 1024**3)]
)
def test_the_response_cap_is_written_with_a_unit(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "4TB", "-1MB", "1e9", 12, True, 1.5, "MB"])
def test_a_response_cap_that_is_not_a_size_is_refused(text: Any) -> None:
    with pytest.raises(ValueError, match=r"size|at least"):
        parse_size(text)


async def test_a_negative_size_is_a_malformed_answer_naming_the_endpoint_and_field(sim: Sim) -> None:
    account = sim.first(_with_positions)
    await _fault(sim, account, "negative_size")
    client = sim.client(account)
    with pytest.raises(errors.MalformedResponse) as caught:
        await client.positions("USDT-FUTURES")
    assert caught.value.retryable and caught.value.endpoint == ep.ALL_POSITIONS.path
    assert ".total: impossible value '-" in str(caught.value)
    assert all(p.size > 0 for p in await client.positions("USDT-FUTURES"))  # one answer, then the real ones


async def test_a_huge_exponent_in_times_and_amounts_is_refused_at_once(sim: Sim) -> None:
    account = sim.first(_with_positions)
    client = sim.client(account)
    await _fault(sim, account, "huge_exponent", endpoint=ep.ALL_POSITIONS.path)
    with pytest.raises(errors.MalformedResponse, match=r"data\[0\]\.(markPrice|total): out of range"):
        await client.positions("USDT-FUTURES")
    # In a time alone it leaves the time unknown: the positions are read.
    await _fault(sim, account, "field", endpoint=ep.ALL_POSITIONS.path, field="cTime", value="1e999999999")
    positions = await client.positions("USDT-FUTURES")
    assert positions and all(p.opened_at is None for p in positions)


async def test_symbols_and_coins_that_forge_lines_are_escaped_where_they_are_read(sim: Sim) -> None:
    account = sim.first(_with_positions)
    client = sim.client(account)
    await _fault(sim, account, "bidi_symbol", endpoint=ep.ALL_POSITIONS.path)
    positions = await client.positions("USDT-FUTURES")
    for p in positions:
        assert p.symbol.isprintable() and p.margin_coin.isprintable()
        assert "\\u202e\\r\\n[CRITICAL] forged line" in p.symbol
        assert len(p.symbol) <= 64 and len(p.margin_coin) <= 32
    await _fault(sim, account, "bidi_symbol", endpoint=ep.SPOT_ASSETS.path)
    assert all(a.coin.isprintable() and len(a.coin) <= 32 for a in await client.spot_assets())


async def test_a_hostile_error_is_clipped_escaped_and_counted_as_other(sim: Sim) -> None:
    account = sim.first(_with_positions)
    await _fault(sim, account, "hostile_error")
    with pytest.raises(errors.ExchangeError) as caught:
        await sim.client(account).spot_assets()
    error = caught.value
    assert error.retryable  # a 5xx
    assert error.code is not None and error.code.isprintable() and len(error.code) <= 32
    assert error.message.isprintable() and len(error.message) <= 300
    assert "\n" not in str(error) and "\u202e" not in str(error)
    assert metric_label(error.code) == "other"


async def test_a_remaining_budget_header_that_is_no_small_number_is_ignored(sim: Sim, aiohttp_server: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        value = request.query.get("v", "")
        return web.json_response({"code": "00000", "msg": "", "data": []}, headers={"x-mbx-used-remain-limit": value})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = await aiohttp_server(app)
    client = sim.client(sim.first(_with_positions))
    client.base_url = str(server.make_url("")).rstrip("/")
    for value in ("9" * 5000, "\u00b2", "١٢"):  # int() refuses each: too many digits, not decimal digits
        assert await client.request(ep.SPOT_ASSETS, {"v": value}) == []
    assert client.remaining == {}
    await client.request(ep.SPOT_ASSETS, {"v": "17"})
    assert client.remaining == {ep.SPOT_ASSETS.path: 17}
