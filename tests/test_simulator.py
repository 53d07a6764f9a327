"""The simulator's market: numbers stay consistent as prices move, and liquidation happens where it says."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.clock import SystemClock
from monitor.exchange.bitget.reader import read_snapshot
from monitor.simulator.generate import generate_world
from monitor.simulator.world import ScenarioError, load_scenario
from tests.conftest import SimFactory

SCENARIO = """
[market]
volatility = 0.001

[[symbols]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
mark = "100"
tick_size = "0.01"
maintenance_rate = "0.01"

[[accounts]]
name = "iso"
api_key = "bg_iso"
api_secret = "iso-secret"
passphrase = "pw"
ips = []
wallets = [{ product_type = "USDT-FUTURES", coin = "USDT", balance = "1000" }]

[[accounts.positions]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
side = "long"
margin_mode = "isolated"
size = "10"
entry = "100"
margin = "100"

[[accounts]]
name = "cross"
api_key = "bg_cross"
rsa_private_key_file = "cross.pem"
passphrase = "pw"
ips = []
wallets = [{ product_type = "USDT-FUTURES", coin = "USDT", balance = "200" }]

[[accounts.positions]]
product_type = "USDT-FUTURES"
symbol = "BTCUSDT"
side = "short"
margin_mode = "crossed"
size = "10"
entry = "100"
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "cross.pem").write_bytes(pem)
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    return path


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
