"""The simulator's market: numbers stay consistent as prices move, and liquidation happens where it says."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from monitor.clock import SystemClock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.reader import read_snapshot
from monitor.simulator.generate import generate_world
from monitor.simulator.world import ScenarioError, load_scenario
from tests.conftest import SimFactory, write_scenario
from tests.scenarios import TWO_ACCOUNTS


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    return write_scenario(tmp_path, TWO_ACCOUNTS)


def test_liquidation_prices_follow_the_margin_arithmetic(scenario: Path) -> None:
    world = load_scenario(scenario)
    market = world.market
    iso = world.accounts["iso"].positions[0]
    # isolated long: 100 margin + 10 * (L - 100) = 10 * L * 0.01  =>  L = 900 / 9.9
    assert market.liquidation_price(world.accounts["iso"], iso) == Decimal("90.90909091")
    cross_account = world.accounts["cross"]
    cross = cross_account.positions[0]
    # crossed short, collateral 200: 200 + 10 * (100 - L) = 10 * L * 0.01  =>  L = 1200 / 10.1
    assert market.liquidation_price(cross_account, cross) == Decimal("118.81188119")
    book = market.ledger(cross_account, "USDT-FUTURES", "USDT")
    assert book.risk_rate == Decimal("0.05")  # maintenance 10 over equity 200


def test_a_position_is_liquidated_when_the_mark_crosses_its_liquidation_price(scenario: Path) -> None:
    world = load_scenario(scenario)
    market, iso = world.market, world.accounts["iso"]
    market.symbol("USDT-FUTURES", "BTCUSDT").mark = Decimal("90.91")
    assert market.liquidate(iso) == []
    market.symbol("USDT-FUTURES", "BTCUSDT").mark = Decimal("90.90")
    (gone,) = market.liquidate(iso)
    assert gone.side == "long" and iso.positions == []
    assert iso.wallets[("USDT-FUTURES", "USDT")] == Decimal(900)  # the isolated margin is lost
    assert iso.liquidations == 1


async def test_marks_set_through_the_control_api_liquidate_and_the_client_sees_it(
    make_sim: SimFactory, scenario: Path
) -> None:
    sim = await make_sim(world=load_scenario(scenario))
    cross = sim.account("cross")
    client = sim.client(cross)
    futures_only = ("USDT-FUTURES",)  # spot's valuation endpoint allows one read a second
    before = await read_snapshot(client, futures_only, SystemClock())
    (position,) = before.positions
    assert position.liquidation_price == Decimal("118.81188119")
    assert before.futures[0].cross_risk_ratio == Decimal("0.05")

    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "115"})
    near = await read_snapshot(client, futures_only, SystemClock())
    assert near.positions[0].unrealized_pnl == Decimal(-150)
    assert near.futures[0].equity == Decimal(50)
    assert near.futures[0].cross_risk_ratio == Decimal("0.23")  # 11.5 / 50
    assert near.positions[0].liquidation_distance_pct is not None
    assert Decimal(3) < near.positions[0].liquidation_distance_pct < Decimal(4)

    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "119"})
    after = await read_snapshot(client, futures_only, SystemClock())
    assert after.positions == ()
    assert after.futures[0].equity == 0
    state = await sim.control("GET", "/_sim/state")
    assert next(a for a in state["accounts"] if a["name"] == "cross")["liquidations"] == 1


async def test_prices_move_on_their_own_when_the_ticker_runs(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts=2, tick=0.02)
    start = dict(sim.world.market.symbols)
    marks = {k: s.mark for k, s in start.items()}
    await asyncio.sleep(0.2)
    assert any(s.mark != marks[k] for k, s in sim.world.market.symbols.items())


def test_the_random_walk_is_reproducible_from_the_seed() -> None:
    def walk(seed: int) -> list[Decimal]:
        world = generate_world(3, seed)
        for _ in range(50):
            world.market.step()
        return [s.mark for s in world.market.symbols.values()]

    assert walk(5) == walk(5)
    assert walk(5) != walk(6)


def test_every_generated_number_is_consistent_with_the_ledger() -> None:
    world = generate_world(60, 3)
    market = world.market
    kinds = set()
    for account in world.accounts.values():
        kinds |= {("unified" if account.unified else "classic"), ("rsa" if account.secret is None else "hmac")}
        kinds |= {p.margin_mode for p in account.positions} | {"hedge" for p in account.positions if p.hedge}
        kinds |= {"flat"} if not account.positions else set()
        for product_type, coin in account.wallets:
            book = market.ledger(account, product_type, coin)
            assert book.equity == book.balance + book.crossed_pnl + book.isolated_pnl
            assert not book.crossed_maintenance or book.cross_equity > book.crossed_maintenance  # none liquidated
        assert market.liquidate(account) == []
    assert kinds >= {"unified", "classic", "rsa", "hmac", "isolated", "crossed", "hedge", "flat"}
    near = [
        p
        for a in world.accounts.values()
        for p in a.positions
        if 0 < abs(market.mark(p) - market.liquidation_price(a, p)) / market.mark(p) < Decimal("0.1")
    ]
    assert near, "some positions start close to liquidation"


def test_a_broken_scenario_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[accounts]]\nname = "x"\napi_key = "k"\npassphrase = "p"\n')
    with pytest.raises(ScenarioError, match=r"bad.toml: accounts\[0\]: needs api_secret or rsa_private_key_file"):
        load_scenario(path)


def test_both_legs_of_a_hedged_cross_position_liquidate_at_one_mark(tmp_path: Path) -> None:
    path = tmp_path / "hedge.toml"
    path.write_text(
        TWO_ACCOUNTS.split("[[accounts]]")[0]
        + """
[[accounts]]
name = "hedge"
api_key = "bg_hedge"
api_secret = "s"
passphrase = "pw"
wallets = [{ product_type = "USDT-FUTURES", coin = "USDT", balance = "100" }]
positions = [
  { product_type = "USDT-FUTURES", symbol = "BTCUSDT", side = "long", size = "10", entry = "100", hedge = true },
  { product_type = "USDT-FUTURES", symbol = "BTCUSDT", side = "short", size = "4", entry = "100", hedge = true },
]
"""
    )
    world = load_scenario(path)
    market, account = world.market, world.accounts["hedge"]
    long_leg, short_leg = account.positions
    # 100 + 10 (M - 100) - 4 (M - 100) = 0.01 * 14 * M  =>  M = 500 / 5.86
    liq = market.liquidation_price(account, long_leg)
    assert liq == market.liquidation_price(account, short_leg) == Decimal("85.32423208")
    market.symbol("USDT-FUTURES", "BTCUSDT").mark = Decimal("85.33")
    assert market.liquidate(account) == []
    market.symbol("USDT-FUTURES", "BTCUSDT").mark = Decimal("85.32")
    assert len(market.liquidate(account)) == 2


async def test_every_answer_carries_the_remaining_budget_even_a_429(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts=3)
    account = sim.first(lambda a: a.secret is not None)
    client = sim.client(account)
    from monitor import errors
    from monitor.exchange.bitget import endpoints as ep

    await client.key_info()
    assert client.remaining[ep.ACCOUNT_INFO.path] == 0
    with pytest.raises(errors.RateLimited):
        await client.key_info()
    assert client.remaining[ep.ACCOUNT_INFO.path] == 0
    assert sim.sim.rate_limited[(account.name, ep.ACCOUNT_INFO.path)] == 1


async def test_positions_filter_by_margin_coin_and_single_position_needs_a_symbol(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts=12)
    account = sim.first(lambda a: not a.unified and any(p.product_type == "USDT-FUTURES" for p in a.positions))
    client = sim.client(account)
    from monitor import errors
    from monitor.exchange.bitget import endpoints as ep

    assert await client.request(ep.ALL_POSITIONS, {"productType": "USDT-FUTURES", "marginCoin": "BTC"}) == []
    rows = await client.request(ep.ALL_POSITIONS, {"productType": "USDT-FUTURES", "marginCoin": "USDT"})
    assert len(rows) == sum(p.product_type == "USDT-FUTURES" for p in account.positions)
    with pytest.raises(errors.RequestRejected):
        await client.request(ep.SINGLE_POSITION, {"productType": "USDT-FUTURES"})


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_sim/accounts/sim-001", {"ips": "1.2.3.4"}),
        ("/_sim/accounts/sim-001", {"revoked": "yes"}),
        ("/_sim/faults", {"kind": "500", "count": "many"}),
        ("/_sim/faults", {"kind": "field", "field": "total"}),
        ("/_sim/faults", {"kind": "field", "value": "-1"}),
        ("/_sim/faults", {"kind": "huge_body", "size": "big"}),
        ("/_sim/price", {"symbol": "BTCUSDT", "mark": "cheap"}),
        ("/_sim/clock", {"offset_ms": "soon"}),
    ],
)
async def test_the_control_api_refuses_bad_input_with_400(
    make_sim: SimFactory, path: str, payload: dict[str, Any]
) -> None:
    sim = await make_sim(accounts=2)
    async with sim.session.post(sim.url + path, json=payload) as response:
        assert response.status == 400, await response.text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('name = "x"', "accounts[0]: missing key 'api_key'"),
        ('leverage = "0"', "accounts[0]: size, entry and leverage must be positive"),
        ('side = "up"', "accounts[0]: side must be long or short, margin_mode isolated or crossed"),
        ('spot = { USDT = "lots" }', "accounts[0].spot.USDT: not a number: 'lots'"),
    ],
)
def test_scenario_mistakes_are_scenario_errors(tmp_path: Path, change: str, message: str) -> None:
    base = {
        'name = "x"': '[[accounts]]\nname = "x"\napi_secret = "s"\n',
        'leverage = "0"': '[[accounts]]\nname = "x"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'
        '[[accounts.positions]]\nproduct_type = "USDT-FUTURES"\nsymbol = "BTCUSDT"\nside = "long"\nsize = "1"\n'
        'entry = "1"\nleverage = "0"\n',
        'side = "up"': '[[accounts]]\nname = "x"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'
        '[[accounts.positions]]\nproduct_type = "USDT-FUTURES"\nsymbol = "BTCUSDT"\nside = "up"\nsize = "1"\n'
        'entry = "1"\n',
        'spot = { USDT = "lots" }': '[[accounts]]\nname = "x"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'
        'spot = { USDT = "lots" }\n',
    }[change]
    path = tmp_path / "s.toml"
    path.write_text(base)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: {message}"


def test_an_accounts_file_written_to_a_relative_path_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.config import load_config
    from monitor.simulator.generate import write_accounts_file

    monkeypatch.chdir(tmp_path)
    write_accounts_file(generate_world(4), Path("out/sim.toml"), "http://127.0.0.1:1")
    config = load_config(Path("out/sim.toml"), env={})
    assert [a.key_type for a in config.accounts] == ["hmac", "hmac", "rsa", "hmac"]


async def test_a_field_fault_rewrites_that_field_of_that_endpoints_answer_only(make_sim: SimFactory) -> None:
    sim = await make_sim(limits=False)
    account = sim.first(lambda a: not a.unified and any(p.product_type == "USDT-FUTURES" for p in a.positions))
    client = sim.client(account)
    query = {"productType": "USDT-FUTURES"}
    fault = {"kind": "field", "account": account.name, "endpoint": ep.ALL_POSITIONS.path, "field": "total"}
    await sim.control("POST", "/_sim/faults", {**fault, "value": {"odd": [1]}})
    await sim.control("POST", "/_sim/faults", {**fault, "endpoint": ep.MIX_ACCOUNTS.path, "value": 1})
    await client.request(ep.SPOT_ASSETS, {})
    assert len(sim.sim.faults) == 2  # neither is taken by another endpoint's answer
    rows = await client.request(ep.ALL_POSITIONS, query)
    assert rows and all(r["total"] == {"odd": [1]} and r["markPrice"] != {"odd": [1]} for r in rows)
    assert all(r["total"] != {"odd": [1]} for r in await client.request(ep.ALL_POSITIONS, query))  # used up
    assert len(sim.sim.faults) == 1  # the one for the futures accounts is still waiting


@pytest.mark.parametrize("kind", ["negative_size", "bidi_symbol", "huge_exponent"])
async def test_a_hostile_rewrite_waits_for_an_answer_it_can_change(make_sim: SimFactory, kind: str) -> None:
    sim = await make_sim(limits=False)
    account = sim.first(lambda a: not a.unified and any(p.product_type == "USDT-FUTURES" for p in a.positions))
    client = sim.client(account)
    await sim.control("POST", "/_sim/faults", {"kind": kind, "account": account.name})
    await client.request(ep.ACCOUNT_INFO, {})  # holds no field any of them rewrites
    assert len(sim.sim.faults) == 1
    text = json.dumps(await client.request(ep.ALL_POSITIONS, {"productType": "USDT-FUTURES"}))
    assert {"negative_size": '"total": "-', "bidi_symbol": "\\u202e\\r\\n[CRITICAL]",
            "huge_exponent": '"1e999999999"'}[kind] in text  # fmt: skip
    assert sim.sim.faults == []


async def test_a_huge_body_is_streamed_in_full_without_being_built_in_memory(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts=2)
    size = 20 * 1024 * 1024
    await sim.control("POST", "/_sim/faults", {"kind": "huge_body", "endpoint": ep.SERVER_TIME.path, "size": size})
    tracemalloc.start()
    try:
        received, tail = 0, b""
        async with sim.session.get(sim.url + ep.SERVER_TIME.path) as response:
            assert response.content_length is None  # chunked: the client cannot tell its size in advance
            async for chunk in response.content.iter_chunked(1 << 16):
                received += len(chunk)
                tail = (tail + chunk)[-8:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size - 70 * 1024 <= received <= size and tail.endswith(b"0]}")
    assert peak < 4 * 1024 * 1024, f"{peak} bytes at peak"


@pytest.mark.parametrize("unified", [False, True])
async def test_a_mark_moved_directly_liquidates_before_the_next_read_classic_or_unified(
    make_sim: SimFactory, unified: bool
) -> None:
    """The demo moves marks between ticks without the control API: a position past its price must still go
    (the demo once showed a unified long 33 % past its liquidation price)."""
    sim = await make_sim(accounts=12)
    account = sim.first(
        lambda a: a.unified is unified and any(p.product_type == "USDT-FUTURES" and p.symbol == "BTCUSDT"
                                                  and sim.world.market.liquidation_price(a, p) > 0
                                                  for p in a.positions)
    )  # fmt: skip
    position = next(p for p in account.positions if p.symbol == "BTCUSDT" and p.product_type == "USDT-FUTURES")
    liquidation = sim.world.market.liquidation_price(account, position)
    beyond = Decimal("0.9") if position.side == "long" else Decimal("1.1")
    sim.world.market.symbol("USDT-FUTURES", "BTCUSDT").mark = (liquidation * beyond).quantize(Decimal("0.1"))
    snapshot = await read_snapshot(sim.client(account), ("USDT-FUTURES",), SystemClock())
    assert all(d is None or d > 0 for d in (p.liquidation_distance_pct for p in snapshot.positions))
    assert (position.symbol, position.side) not in {(p.symbol, str(p.side)) for p in snapshot.positions}
    assert account.liquidations >= 1


async def test_tickers_carry_exactly_the_marks_positions_use_for_every_product_type(make_sim: SimFactory) -> None:
    from monitor.exchange.bitget import endpoints as ep

    sim = await make_sim(accounts=12)
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "61234.5"})
    for product_type in ep.FUTURES_PRODUCT_TYPES:
        async with sim.session.get(f"{sim.url}{ep.TICKERS.path}?productType={product_type}") as response:
            rows = (await response.json())["data"]
        marks = {r["symbol"]: Decimal(r["markPrice"]) for r in rows}
        assert marks == {s.name: s.mark for (pt, _), s in sim.world.market.symbols.items() if pt == product_type}
        assert {"lastPr", "indexPrice", "fundingRate", "ts", "deliveryStatus"} <= set(rows[0])
        for account in sim.world.accounts.values():
            if account.unified or product_type not in account.products or not account.positions:
                continue
            snapshot = await read_snapshot(sim.client(account), (product_type,), SystemClock())
            assert all(p.mark_price == marks[p.symbol] for p in snapshot.positions)
    assert marks is not None


@pytest.mark.parametrize(("endpoint", "query"), [("TICKERS", "?productType=USDT-FUTURES"), ("SPOT_TICKERS", "")])
async def test_tickers_are_limited_per_ip_like_bitget(make_sim: SimFactory, endpoint: str, query: str) -> None:
    from monitor.exchange.bitget import endpoints as ep

    limited = getattr(ep, endpoint)
    sim = await make_sim(accounts=1)
    statuses = []
    for _ in range(limited.per_second + 1):
        async with sim.session.get(f"{sim.url}{limited.path}{query}") as response:
            statuses.append(response.status)
    assert statuses.count(200) == limited.per_second and statuses[-1] == 429


async def test_closing_a_position_through_the_control_api_realises_its_pnl(
    make_sim: SimFactory, scenario: Path
) -> None:
    sim = await make_sim(world=load_scenario(scenario))
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "105"})
    assert await sim.control("POST", "/_sim/close", {"account": "iso", "symbol": "BTCUSDT", "side": "long"}) == {
        "ok": True,
        "closed": 1,
    }
    iso = sim.account("iso")
    assert iso.positions == [] and iso.liquidations == 0
    assert iso.wallets[("USDT-FUTURES", "USDT")] == Decimal(1050)  # 10 * (105 - 100) realised
    for payload in ({"account": "iso", "symbol": "BTCUSDT"}, {"account": "nobody", "symbol": "BTCUSDT"}):
        async with sim.session.post(sim.url + "/_sim/close", json=payload) as response:
            assert response.status == 404


async def test_spot_tickers_price_every_coin_at_the_value_the_accounts_are_valued_at(make_sim: SimFactory) -> None:
    from monitor.exchange.bitget import endpoints as ep

    sim = await make_sim(accounts=12)
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "61234.5"})
    async with sim.session.get(f"{sim.url}{ep.SPOT_TICKERS.path}") as response:
        rows = (await response.json())["data"]
    prices = {r["symbol"]: Decimal(r["lastPr"]) for r in rows}
    assert prices == {"BTCUSDT": Decimal("61234.5"), "ETHUSDT": 3000, "SOLUSDT": 150, "XRPUSDT": Decimal("0.6"),
                      "USDCUSDT": 1}  # fmt: skip
    accounts = sim.world.accounts.values()
    held = {coin for a in accounts for coin in a.spot} | {coin for a in accounts for _, coin in a.wallets}
    assert "BTC" in held and {f"{coin}USDT" for coin in held - {"USDT"}} <= set(prices)  # every coin handed out
    assert {"open", "bidPr", "askPr", "ts", "usdtVolume", "change24h"} <= set(rows[0])
    async with sim.session.get(f"{sim.url}{ep.SPOT_TICKERS.path}?symbol=ETHUSDT") as response:
        assert [r["symbol"] for r in (await response.json())["data"]] == ["ETHUSDT"]
