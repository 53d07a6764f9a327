"""Our client against the simulator: every account kind read, every rejection and fault classified."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor import errors
from monitor.clock import SystemClock
from monitor.domain import AccountMode, MarginMode, Side
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.reader import read_snapshot
from monitor.simulator.market import SimAccount
from tests.conftest import Sim


def _is(kind: str) -> Any:
    checks = {
        "hmac": lambda a: a.secret is not None and not a.demo and not a.unified,
        "rsa-pkcs8": lambda a: a.secret is None and not a.unified and "BEGIN PRIVATE KEY" in _pem(a),
        "rsa-pkcs1": lambda a: a.secret is None and not a.unified and "BEGIN RSA PRIVATE KEY" in _pem(a),
        "unified": lambda a: a.unified,
        "demo": lambda a: a.demo and not a.unified,
        "coin-futures": lambda a: "COIN-FUTURES" in a.products and a.positions,
        "hedge": lambda a: any(p.hedge for p in a.positions),
    }
    return checks[kind]


_PEMS: dict[str, str] = {}


def _pem(account: SimAccount) -> str:
    return _PEMS.get(account.name, "")


@pytest.fixture(autouse=True)
def _remember_pems(sim: Sim) -> None:
    _PEMS.clear()
    _PEMS.update(sim.world.private_keys)


@pytest.mark.parametrize("kind", ["hmac", "rsa-pkcs8", "rsa-pkcs1", "unified", "demo", "coin-futures", "hedge"])
async def test_every_kind_of_account_is_read_with_the_simulators_numbers(sim: Sim, kind: str) -> None:
    account = sim.first(_is(kind))
    client = sim.client(account)
    snapshot = await read_snapshot(client, account.products, SystemClock())
    market = sim.world.market
    assert snapshot.mode is (AccountMode.UNIFIED if account.unified else AccountMode.CLASSIC)
    assert len(snapshot.positions) == len(account.positions)
    for sim_pos in account.positions:
        ours = next(
            p
            for p in snapshot.positions
            if (p.product_type, p.symbol, p.side.value) == (sim_pos.product_type, sim_pos.symbol, sim_pos.side)
        )
        assert ours.size == sim_pos.size
        assert ours.entry_price == sim_pos.entry
        assert ours.mark_price == market.mark(sim_pos)
        assert ours.unrealized_pnl == market.pnl(sim_pos)
        assert ours.margin_mode is MarginMode(sim_pos.margin_mode)
        liq = market.liquidation_price(account, sim_pos)
        assert ours.liquidation_price == (liq if liq > 0 else None)
    if account.unified:
        assert snapshot.unified is not None
        book = market.ledger(account, "USDT-FUTURES", "USDT")
        assert snapshot.unified.unrealized_pnl == book.crossed_pnl
    else:
        for fut in snapshot.futures:
            book = market.ledger(account, fut.product_type, fut.margin_coin)
            assert fut.equity == book.equity
            assert fut.cross_risk_ratio == book.risk_rate
        assert {a.coin: a.available for a in snapshot.spot} == account.spot
    assert snapshot.requests > 0


async def test_hmac_and_rsa_accounts_are_read_side_by_side(sim: Sim) -> None:
    accounts = list(sim.world.accounts.values())
    assert {a.secret is None for a in accounts} == {True, False}
    snapshots = await asyncio.gather(*(read_snapshot(sim.client(a), a.products, SystemClock()) for a in accounts))
    assert [s.account for s in snapshots] == [a.name for a in accounts]
    assert sum(sim.sim.bad_signatures.values()) == 0


async def test_the_account_mode_is_detected_once_and_remembered(sim: Sim) -> None:
    client = sim.client(sim.first(_is("unified")))
    assert await client.account_mode() is AccountMode.UNIFIED
    sent = client.requests
    assert await client.account_mode() is AccountMode.UNIFIED
    assert client.requests == sent


async def test_an_account_switched_to_unified_is_re_detected(sim: Sim) -> None:
    account = sim.first(_is("hmac"))
    client = sim.client(account)
    assert (await read_snapshot(client, account.products, SystemClock())).mode is AccountMode.CLASSIC
    await sim.control("POST", f"/_sim/accounts/{account.name}", {"unified": True})
    assert (await read_snapshot(client, account.products, SystemClock())).mode is AccountMode.UNIFIED


async def test_the_key_info_reports_permissions_and_ip_binding(sim: Sim) -> None:
    account = sim.first(lambda a: len(a.permissions) > 1)
    info = await sim.client(account).key_info()
    assert info.uid == account.uid
    assert info.can_trade
    assert info.ips == tuple(account.ips)


async def test_clock_skew_over_30_seconds_is_measured_and_corrected(sim: Sim) -> None:
    await sim.control("POST", "/_sim/clock", {"offset_ms": 45_000})
    client = sim.client(sim.first(_is("hmac")))
    assert len(await client.spot_assets()) > 0
    assert sim.sim.rejected[(client.account, "40008")] == 1
    assert abs(client.server_clock.offset_ms - 45_000) < 2_000
    await client.spot_assets()
    assert sim.sim.rejected[(client.account, "40008")] == 1  # the offset stays applied


async def test_the_remaining_budget_header_is_recorded(sim: Sim) -> None:
    client = sim.client(sim.first(_is("hmac")))
    await client.spot_assets()
    await client.spot_assets()
    assert client.remaining[ep.SPOT_ASSETS.path] == ep.SPOT_ASSETS.per_second - 2


REJECTIONS = [
    # (what the test changes, error class, Bitget code, HTTP status)
    ("empty key", errors.AuthenticationError, "40006", 400),
    ("secret", errors.AuthenticationError, "40009", 400),
    ("rsa key", errors.AuthenticationError, "40009", 400),
    ("passphrase", errors.AuthenticationError, "40012", 400),
    ("unknown key", errors.AuthenticationError, "40037", 400),
    ("revoked key", errors.AuthenticationError, "40037", 400),
    ("ip binding", errors.IpNotAllowed, "40018", 400),
    ("demo header", errors.WrongEnvironment, "40099", 400),
    ("permission", errors.PermissionDenied, "40014", 400),
    ("classic on v3", errors.AccountModeMismatch, "40084", 400),
    ("unified on v2", errors.AccountModeMismatch, "40085", 400),
    ("v1 path", errors.ApiDecommissioned, "30032", 400),
    ("unknown path", errors.RequestRejected, "40404", 404),
]


@pytest.mark.parametrize(("change", "kind", "code", "status"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
async def test_every_simulator_rejection_reaches_the_client_as_its_error(
    sim: Sim, change: str, kind: type[errors.ExchangeError], code: str, status: int
) -> None:
    account = sim.first(_is({"unified on v2": "unified", "rsa key": "rsa-pkcs8"}.get(change, "hmac")))
    changes: dict[str, Any] = {}
    endpoint = ep.SPOT_ASSETS
    if change == "empty key":
        changes["api_key"] = ""
    elif change == "rsa key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        changes["secret"] = other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    elif change == "secret":
        changes["secret"] = "f" * 64
    elif change == "passphrase":
        changes["passphrase"] = "wrong"
    elif change == "unknown key":
        changes["api_key"] = "bg_nobody"
    elif change == "revoked key":
        await sim.control("POST", f"/_sim/accounts/{account.name}", {"revoked": True})
    elif change == "ip binding":
        await sim.control("POST", f"/_sim/accounts/{account.name}", {"ips": ["203.0.113.7"]})
    elif change == "demo header":
        changes["demo"] = not account.demo
    elif change == "permission":
        await sim.control("POST", f"/_sim/accounts/{account.name}", {"permissions": []})
    elif change == "classic on v3":
        endpoint = ep.UNIFIED_ASSETS
    elif change == "v1 path":
        endpoint = ep.Endpoint("/api/mix/v1/account/accounts", 10)
    elif change == "unknown path":
        endpoint = ep.Endpoint("/api/v2/mix/account/nothing-here", 10)
    client = sim.client(account, **changes)
    with pytest.raises(kind) as caught:
        await client.request(endpoint, {"productType": "USDT-FUTURES"})
    error = caught.value
    assert (error.code, error.http_status, error.account, error.endpoint) == (code, status, account.name, endpoint.path)
    assert error.retryable is False
    assert code in str(error) and account.name in str(error)


FAULTS = [
    # (fault kind, error class, Bitget code, HTTP status)
    ("429", errors.RateLimited, "429", 429),
    ("500", errors.ExchangeUnavailable, None, 500),
    ("40725", errors.ExchangeUnavailable, "40725", 400),
    ("45001", errors.ExchangeUnavailable, "45001", 500),
    ("malformed", errors.MalformedResponse, None, 200),
    ("truncated", errors.MalformedResponse, None, None),
    ("timeout", errors.RequestTimeout, None, None),
]


@pytest.mark.parametrize(("fault", "kind", "code", "status"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_injected_faults_become_retryable_errors(
    sim: Sim, fault: str, kind: type[errors.ExchangeError], code: str | None, status: int | None
) -> None:
    account = sim.first(_is("hmac"))
    await sim.control("POST", "/_sim/faults", {"kind": fault, "account": account.name, "delay": 5})
    client = sim.client(account, timeout=0.5)
    with pytest.raises(kind) as caught:
        await client.spot_assets()
    assert (caught.value.code, caught.value.http_status) == (code, status)
    assert caught.value.retryable is True
    assert len(await client.spot_assets()) > 0  # the fault was one request; the next succeeds


async def test_a_fault_for_one_account_leaves_the_others_alone(sim: Sim) -> None:
    first, second = [a for a in sim.world.accounts.values() if _is("hmac")(a)][:2]
    await sim.control("POST", "/_sim/faults", {"kind": "500", "account": first.name, "count": 5})
    assert len(await sim.client(second).spot_assets()) > 0
    with pytest.raises(errors.ExchangeUnavailable):
        await sim.client(first).spot_assets()


async def test_a_slow_answer_within_the_timeout_is_fine(sim: Sim) -> None:
    account = sim.first(_is("hmac"))
    await sim.control("POST", "/_sim/faults", {"kind": "slow", "delay": 0.2})
    assert len(await sim.client(account, timeout=5).spot_assets()) > 0


async def test_a_refused_connection_is_a_connection_error(sim: Sim) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = sim.client(sim.first(_is("hmac")))
    client.base_url = f"http://127.0.0.1:{port}"
    with pytest.raises(errors.ConnectionFailed) as caught:
        await client.spot_assets()
    assert caught.value.retryable


async def test_the_per_account_endpoint_limit_answers_429_with_bitgets_body(sim: Sim) -> None:
    client = sim.client(sim.first(_is("hmac")))
    results = await asyncio.gather(*(client.key_info() for _ in range(3)), return_exceptions=True)
    assert sum(isinstance(r, errors.RateLimited) for r in results) == 2  # account/info allows 1/s
    assert sim.sim.rate_limited[(client.account, ep.ACCOUNT_INFO.path)] == 2


async def test_the_per_ip_budget_locks_the_ip_out(make_sim: Any) -> None:
    sim = await make_sim(ip_per_minute=5, lockout=60)
    account = sim.first(_is("hmac"))
    client = sim.client(account)
    for _ in range(5):
        await client.spot_assets()
    with pytest.raises(errors.RateLimited):
        await client.spot_assets()
    other = sim.client(sim.first(lambda a: a.name != account.name and _is("hmac")(a)))
    with pytest.raises(errors.RateLimited):  # the whole IP is locked out, not just the account
        await other.spot_assets()
    assert sim.sim.ip_limiter.lockouts == 1


async def test_money_keeps_its_exact_decimal_value(sim: Sim) -> None:
    account = sim.first(lambda a: _is("hmac")(a) and any(p.product_type == "USDT-FUTURES" for p in a.positions))
    symbol = next(p.symbol for p in account.positions if p.product_type == "USDT-FUTURES")
    await sim.control(
        "POST", "/_sim/price", {"symbol": symbol, "product_type": "USDT-FUTURES", "mark": "0.000012345678"}
    )
    positions = await sim.client(account).positions("USDT-FUTURES")
    marks = {p.mark_price for p in positions if p.symbol == symbol}
    assert marks == {Decimal("0.000012345678")}
    assert all(isinstance(p.side, Side) for p in positions)


async def test_values_that_need_escaping_are_signed_decoded_and_sent_encoded(sim: Sim) -> None:
    account = sim.first(_is("hmac"))
    client = sim.client(account)
    symbol = "BTC USDT/&=+ä"
    rows = await client.request(ep.SINGLE_POSITION, {"productType": "USDT-FUTURES", "symbol": symbol})
    assert rows == []  # accepted: the simulator verified the decoded value
    assert sum(sim.sim.bad_signatures.values()) == 0


async def _serve(aiohttp_server: Any, status: int, body: bytes, content_type: str) -> str:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


ODD_ANSWERS = [
    # (HTTP status, body, error class, retryable)
    (403, b"<html>Forbidden by the firewall</html>", errors.RequestRejected, False),
    (502, b"<html>Bad gateway</html>", errors.ExchangeUnavailable, True),
    (200, b"\xff\xfe{not json", errors.MalformedResponse, True),
    (200, b"[" * 100_000 + b"]" * 100_000, errors.MalformedResponse, True),
    (200, b'{"code":"00000","msg":"","data":[{"coin":"USDT","available":"lots"}]}', errors.UnexpectedResponse, False),
]


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"), ODD_ANSWERS, ids=["403", "502", "bytes", "deep", "field"]
)
async def test_odd_answers_stay_inside_the_error_tree(
    sim: Sim, aiohttp_server: Any, status: int, body: bytes, kind: type[errors.ExchangeError], retryable: bool
) -> None:
    client = sim.client(sim.first(_is("hmac")))
    client.base_url = await _serve(aiohttp_server, status, body, "text/html" if status != 200 else "application/json")
    with pytest.raises(kind) as caught:
        await client.spot_assets()
    assert caught.value.retryable is retryable
    assert caught.value.http_status == status
