"""The simulator against an independent client: it accepts what ccxt signs and rejects a one-byte change."""

from __future__ import annotations

from typing import Any

import ccxt
import ccxt.async_support
import pytest

from tests.conftest import Sim


def _point_at(exchange: Any, url: str) -> None:
    exchange.urls["api"] = {name: url for name in exchange.urls["api"]}


@pytest.fixture
async def hmac_live(sim: Sim) -> Any:
    return sim.first(lambda a: a.secret is not None and not a.demo and not a.unified and "USDT-FUTURES" in a.products)


async def test_the_simulator_accepts_ccxt_signed_requests(sim: Sim, hmac_live: Any) -> None:
    exchange = ccxt.async_support.bitget(
        {"apiKey": hmac_live.api_key, "secret": hmac_live.secret, "password": hmac_live.passphrase}
    )
    _point_at(exchange, sim.url)
    try:
        info = await exchange.privateSpotGetV2SpotAccountInfo()
        positions = await exchange.privateMixGetV2MixPositionAllPosition({"productType": "USDT-FUTURES"})
        accounts = await exchange.privateMixGetV2MixAccountAccounts({"productType": "USDT-FUTURES"})
    finally:
        await exchange.close()
    assert info["code"] == "00000"
    assert info["data"]["userId"] == hmac_live.uid
    expected = {(p.symbol, p.side) for p in hmac_live.positions if p.product_type == "USDT-FUTURES"}
    assert {(p["symbol"], p["holdSide"]) for p in positions["data"]} == expected
    assert [a["marginCoin"] for a in accounts["data"]] == ["USDT"]


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("change", ["none", "signature", "query", "timestamp", "path"])
async def test_the_simulator_rejects_a_ccxt_request_changed_by_one_byte(sim: Sim, hmac_live: Any, change: str) -> None:
    exchange = ccxt.bitget({"apiKey": hmac_live.api_key, "secret": hmac_live.secret, "password": hmac_live.passphrase})
    _point_at(exchange, sim.url)
    request = exchange.sign("v2/mix/position/all-position", ["private", "mix"], "GET", {"productType": "USDT-FUTURES"})
    url, headers = request["url"], dict(request["headers"])
    if change == "signature":
        headers["ACCESS-SIGN"] = _flip(headers["ACCESS-SIGN"], 5)
    elif change == "query":
        url = url.replace("USDT-FUTURES", "USDC-FUTURES")
    elif change == "timestamp":
        headers["ACCESS-TIMESTAMP"] = str(int(headers["ACCESS-TIMESTAMP"]) + 1)
    elif change == "path":
        url = url.replace("all-position", "single-position")
    headers = {k: v for k, v in headers.items() if v is not None}
    async with sim.session.get(url, headers=headers) as response:
        body = await response.json()
    if change == "none":
        assert (response.status, body["code"]) == (200, "00000")
    else:
        assert (response.status, body["code"], body["msg"]) == (400, "40009", "sign signature error")
        assert sim.sim.bad_signatures[(hmac_live.name, url.split("?")[0].removeprefix(sim.url))] == 1


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("ACCESS-KEY", None, "40006"),
        ("ACCESS-SIGN", None, "40009"),
        ("ACCESS-TIMESTAMP", None, "40005"),
        ("ACCESS-TIMESTAMP", "yesterday", "40005"),
        ("ACCESS-TIMESTAMP", "1700000000000", "40008"),
        ("ACCESS-PASSPHRASE", None, "40012"),
        ("paptrading", "1", "40099"),
    ],
)
async def test_the_simulator_checks_each_auth_header_with_bitgets_code(
    sim: Sim, hmac_live: Any, header: str, value: str | None, code: str
) -> None:
    exchange = ccxt.bitget({"apiKey": hmac_live.api_key, "secret": hmac_live.secret, "password": hmac_live.passphrase})
    _point_at(exchange, sim.url)
    request = exchange.sign("v2/spot/account/assets", ["private", "spot"], "GET", {})
    headers = {k: v for k, v in request["headers"].items() if v is not None and k != header}
    if value is not None:
        headers[header] = value
    async with sim.session.get(request["url"], headers=headers) as response:
        body = await response.json()
    assert (response.status, body["code"], body["data"]) == (400, code, None)
