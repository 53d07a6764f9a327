"""Margin to safety, checked against the simulator's own liquidation arithmetic.

Each test reads positions as the monitor does (the simulator's Bitget payloads through the real parser), computes
the suggestion, applies it inside the simulator (margin into the isolated position, equity into the cross wallet,
part of the position closed at the mark) and asks the simulator where the liquidation price went.
"""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from monitor.domain import AccountMode, MarginMode, Position
from monitor.exchange.bitget import parse
from monitor.risk.safety import Safety, describe, margin_to_safety
from monitor.simulator import render
from monitor.simulator.generate import generate_world
from monitor.simulator.market import Market, SimAccount, SimPosition
from monitor.simulator.world import World, build_world

NOW_MS = 1_800_000_000_000


def read_positions(market: Market, account: SimAccount) -> list[tuple[SimPosition, Position]]:
    """Each simulated position beside the domain Position the monitor parses from Bitget's payload."""
    pairs = []
    for product_type in sorted({p.product_type for p in account.positions}):
        sims = [p for p in account.positions if p.product_type == product_type]
        if account.unified:
            parsed = parse.unified_positions(render.unified_positions(market, account, product_type, NOW_MS))
        else:
            parsed = parse.positions(render.positions(market, account, product_type, NOW_MS), product_type)
        pairs += list(zip(sims, parsed, strict=True))
    return pairs


def add_margin(account: SimAccount, p: SimPosition, amount: Decimal) -> None:
    """Transfer `amount` into the futures wallet and, for an isolated position, on into its margin."""
    key = (p.product_type, p.margin_coin)
    account.wallets[key] = account.wallets.get(key, Decimal(0)) + amount
    if p.margin_mode == "isolated":
        p.margin += amount


def close_part(market: Market, account: SimAccount, p: SimPosition, size: Decimal) -> None:
    """Close `size` of p at the mark, as an exchange does: its PnL is realised into the wallet and the margin
    behind the rest shrinks in proportion."""
    realised = market.pnl(dataclasses.replace(p, size=size))
    key = (p.product_type, p.margin_coin)
    account.wallets[key] = account.wallets.get(key, Decimal(0)) + realised
    # The wallet balance already holds an isolated position's margin: shrinking it returns the part to the cross side.
    p.margin -= p.margin * size / p.size
    p.size -= size


def distance(market: Market, account: SimAccount, p: SimPosition) -> Decimal:
    mark, liquidation = market.mark(p), market.liquidation_price(account, p)
    below = liquidation < mark
    return (mark - liquidation if below else liquidation - mark) / mark * 100


def check_applied(world: World, account: SimAccount, p: SimPosition, safety: Safety) -> None:
    """Apply each suggestion to a copy of the account and check the simulator puts liquidation on the target."""
    market = world.market
    tick = market.symbol(p.product_type, p.symbol).tick_size
    assert safety.target_liquidation_price is not None
    index = account.positions.index(p)
    if safety.add_margin is not None:
        copied = copy.deepcopy(account)
        add_margin(copied, copied.positions[index], safety.add_margin)
        after = market.liquidation_price(copied, copied.positions[index])
        assert abs(after - safety.target_liquidation_price) <= tick, (safety, after)
        assert distance(market, copied, copied.positions[index]) >= safety.target_distance - tick / market.mark(p)
    if safety.reduce_size is not None:
        copied = copy.deepcopy(account)
        close_part(market, copied, copied.positions[index], safety.reduce_size)
        after = market.liquidation_price(copied, copied.positions[index])
        assert abs(after - safety.target_liquidation_price) <= tick, (safety, after)


def account_spec(name: str, positions: list[dict[str, Any]], wallets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "api_key": f"k-{name}", "passphrase": "p", "api_secret": "s" * 32, "positions": positions,
            "wallets": wallets, "products": ["spot", "USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES"]}  # fmt: skip


def position(product_type: str, symbol: str, side: str, mode: str, size: str, entry: str, margin: str = "0",
             **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"product_type": product_type, "symbol": symbol, "side": side, "margin_mode": mode, "size": size,
            "entry": entry, "margin": margin, **extra}  # fmt: skip


# name, positions (the first is the one judged), wallets. Crossed accounts hold a second cross position on another
# symbol whose PnL and maintenance count; marks are the simulator's defaults (BTC 60000, ETH 3000).
CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("linear long isolated", [position("USDT-FUTURES", "BTCUSDT", "long", "isolated", "0.5", "61000", "2500")],
     [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "5000"}]),
    ("linear short isolated", [position("USDT-FUTURES", "ETHUSDT", "short", "isolated", "4", "2950", "700")],
     [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "1000"}]),
    ("linear long crossed", [position("USDT-FUTURES", "BTCUSDT", "long", "crossed", "0.5", "61000"),
                             position("USDT-FUTURES", "ETHUSDT", "short", "crossed", "2", "2900")],
     [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "2600"}]),
    ("linear short crossed", [position("USDC-FUTURES", "BTCPERP", "short", "crossed", "0.3", "59000"),
                              position("USDC-FUTURES", "ETHPERP", "long", "crossed", "3", "3100")],
     [{"product_type": "USDC-FUTURES", "coin": "USDC", "balance": "1800"}]),
    ("inverse long isolated", [position("COIN-FUTURES", "BTCUSD", "long", "isolated", "0.4", "62000", "0.03")],
     [{"product_type": "COIN-FUTURES", "coin": "BTC", "balance": "0.1"}]),
    ("inverse short isolated", [position("COIN-FUTURES", "BTCUSD", "short", "isolated", "0.4", "59000", "0.03")],
     [{"product_type": "COIN-FUTURES", "coin": "BTC", "balance": "0.1"}]),
    ("inverse long crossed", [position("COIN-FUTURES", "BTCUSD", "long", "crossed", "0.4", "62000")],
     [{"product_type": "COIN-FUTURES", "coin": "BTC", "balance": "0.035"}]),
    ("inverse short crossed", [position("COIN-FUTURES", "BTCUSD", "short", "crossed", "0.4", "59000")],
     [{"product_type": "COIN-FUTURES", "coin": "BTC", "balance": "0.03"}]),
    ("linear hedge crossed, net long", [
        position("USDT-FUTURES", "BTCUSDT", "long", "crossed", "0.6", "61000", hedge=True),
        position("USDT-FUTURES", "BTCUSDT", "short", "crossed", "0.2", "60500", hedge=True),
        position("USDT-FUTURES", "ETHUSDT", "long", "crossed", "1", "3050")],
     [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "2500"}]),
    ("inverse hedge crossed, net short", [
        position("COIN-FUTURES", "BTCUSD", "short", "crossed", "0.5", "59500", hedge=True),
        position("COIN-FUTURES", "BTCUSD", "long", "crossed", "0.1", "60500", hedge=True)],
     [{"product_type": "COIN-FUTURES", "coin": "BTC", "balance": "0.03"}]),
]  # fmt: skip


def case_world(positions: list[dict[str, Any]], wallets: list[dict[str, Any]]) -> tuple[World, SimAccount]:
    world = build_world({"accounts": [account_spec("case", positions, wallets)]})
    return world, world.accounts["case"]


@pytest.mark.parametrize(("name", "positions", "wallets"), CASES, ids=[c[0] for c in CASES])
def test_the_suggested_margin_and_reduction_put_liquidation_on_the_target_in_the_simulator(
    name: str, positions: list[dict[str, Any]], wallets: list[dict[str, Any]]
) -> None:
    world, account = case_world(positions, wallets)
    sim, parsed = read_positions(world.market, account)[0]
    now = parsed.liquidation_distance_pct
    assert now is not None and 0 < now < 15, f"{name}: the case should start near liquidation, at {now}%"
    safety = margin_to_safety(parsed, Decimal(17), positions=[p for _, p in read_positions(world.market, account)])
    assert safety.add_margin is not None and safety.add_margin > 0
    assert safety.to_account is (sim.margin_mode == "crossed")
    assert safety.margin_coin == sim.margin_coin
    if sim.margin_mode == "crossed":
        assert safety.reduce_size is not None and 0 < safety.reduce_size < sim.size
        # the wallet that counts is named: adding to spot would do nothing for this position
        assert f"{safety.margin_coin} to the {sim.product_type} wallet, or reduce by" in describe(safety, sim.symbol)
    else:
        assert safety.reduce_size is None and safety.reason is not None and "isolated" in safety.reason
    check_applied(world, account, sim, safety)


def test_the_other_cross_positions_pnl_and_maintenance_change_the_amount() -> None:
    """The same BTC long needs more when a losing ETH short shares its cross collateral."""
    alone = [position("USDT-FUTURES", "BTCUSDT", "long", "crossed", "0.5", "61000")]
    wallet = [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "3000"}]
    world_a, account_a = case_world(alone, wallet)
    world_b, account_b = case_world([*alone, position("USDT-FUTURES", "ETHUSDT", "short", "crossed", "2", "2900")],
                                    wallet)  # fmt: skip
    (sim_a, a), *_ = read_positions(world_a.market, account_a)
    (sim_b, b), *rest = read_positions(world_b.market, account_b)
    safe_a = margin_to_safety(a, Decimal(17))
    safe_b = margin_to_safety(b, Decimal(17), positions=[b, *(p for _, p in rest)])
    assert safe_a.add_margin is not None and safe_b.add_margin is not None
    assert b.liquidation_price is not None and a.liquidation_price is not None
    assert b.liquidation_price > a.liquidation_price  # the ETH short's loss and maintenance eat the collateral
    check_applied(world_a, account_a, sim_a, safe_a)
    check_applied(world_b, account_b, sim_b, safe_b)


def test_the_minority_leg_of_a_hedge_is_not_the_one_to_reduce() -> None:
    _, positions, wallets = CASES[8]
    world, account = case_world(positions, wallets)
    pairs = read_positions(world.market, account)
    parsed = [p for _, p in pairs]
    long_leg, short_leg = parsed[0], parsed[1]
    assert long_leg.liquidation_price == short_leg.liquidation_price  # both legs liquidate together
    for_long = margin_to_safety(long_leg, Decimal(17), positions=parsed)
    for_short = margin_to_safety(short_leg, Decimal(17), positions=parsed)
    assert for_short.add_margin == for_long.add_margin
    assert for_short.reduce_size is None and for_short.reason is not None and "other leg" in for_short.reason
    assert for_long.reduce_size is not None
    check_applied(world, account, pairs[0][0], for_long)


def test_closing_part_of_an_isolated_position_leaves_its_liquidation_price_where_it_is() -> None:
    """Why no size to reduce is given for isolated positions: the simulator agrees it would not help."""
    world, account = case_world(*CASES[0][1:])
    p = account.positions[0]
    before = world.market.liquidation_price(account, p)
    close_part(world.market, account, p, Decimal("0.2"))
    assert abs(world.market.liquidation_price(account, p) - before) <= Decimal("0.00000002")


def test_a_position_already_past_the_target_needs_nothing() -> None:
    world, account = case_world(*CASES[2][1:])
    (_, parsed), *rest = read_positions(world.market, account)
    now = parsed.liquidation_distance_pct
    assert now is not None
    safety = margin_to_safety(parsed, now - 1, positions=[p for _, p in rest])
    assert (safety.add_margin, safety.reduce_size) == (None, None)
    assert safety.reason is not None and "already" in safety.reason


def test_without_a_maintenance_rate_or_a_liquidation_price_nothing_is_suggested() -> None:
    world, account = case_world(*CASES[0][1:])
    ((_, parsed),) = read_positions(world.market, account)
    no_rate = margin_to_safety(dataclasses.replace(parsed, maintenance_rate=None), Decimal(17))
    assert no_rate.add_margin is None and no_rate.reason is not None and "keepMarginRate" in no_rate.reason
    unified = margin_to_safety(
        dataclasses.replace(parsed, maintenance_rate=None), Decimal(17), mode=AccountMode.UNIFIED
    )
    assert unified.reason is not None and "mmr" in unified.reason
    no_price = margin_to_safety(dataclasses.replace(parsed, liquidation_price=None), Decimal(17))
    assert no_price.add_margin is None and no_price.target_liquidation_price is None
    with pytest.raises(ValueError, match="positive percentage"):
        margin_to_safety(parsed, Decimal(0))


def test_a_unified_account_gets_usdt_to_add_and_size_to_reduce_but_no_amount_in_a_haircut_coin() -> None:
    positions = [position("USDT-FUTURES", "BTCUSDT", "long", "crossed", "0.5", "61000")]
    spec = account_spec("uta", positions, [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "3000"}])
    world = build_world({"accounts": [{**spec, "unified": True}]})
    account = world.accounts["uta"]
    ((sim, parsed),) = read_positions(world.market, account)
    assert parsed.margin_ratio is None  # read through the unified (v3) parser
    safety = margin_to_safety(parsed, Decimal(17), mode=AccountMode.UNIFIED)
    assert safety.to_account and safety.add_margin is not None and safety.reduce_size is not None
    assert "USDT to the unified account, or reduce by" in describe(safety, sim.symbol)
    check_applied(world, account, sim, safety)
    btc = margin_to_safety(dataclasses.replace(parsed, margin_coin="BTC"), Decimal(17), mode=AccountMode.UNIFIED)
    assert btc.add_margin is None and btc.reduce_size is not None and btc.reason is not None


@pytest.mark.parametrize("seed", range(12))
def test_in_generated_worlds_every_suggestion_lands_on_its_target(seed: int) -> None:
    world = generate_world(24, seed=seed)
    for _ in range(seed * 20):  # later seeds see marks that have wandered from the entries
        world.market.step()
    checked = 0
    for account in world.accounts.values():
        pairs = read_positions(world.market, account)
        parsed = [p for _, p in pairs]
        mode = AccountMode.UNIFIED if account.unified else AccountMode.CLASSIC
        for sim, p in pairs:
            now = p.liquidation_distance_pct
            if now is None or now >= 90:
                continue
            safety = margin_to_safety(p, max(now, Decimal(0)) + 5, positions=parsed, mode=mode)
            assert safety.add_margin is not None, safety
            if p.margin_mode is MarginMode.CROSSED and safety.reduce_size is None:
                assert safety.reason is not None
            check_applied(world, account, sim, safety)
            checked += 1
    assert checked >= 10


def test_a_mark_already_past_liquidation_still_gets_the_amount_that_brings_it_back() -> None:
    """The monitor can read a position after the mark crossed its price and before Bitget liquidated it."""
    world, account = case_world(*CASES[1][1:])  # linear short isolated
    p = account.positions[0]
    symbol = world.market.symbol(p.product_type, p.symbol)
    symbol.mark = world.market.liquidation_price(account, p) + 20
    ((_, parsed),) = read_positions(world.market, account)
    assert parsed.liquidation_distance_pct is not None and parsed.liquidation_distance_pct < 0
    safety = margin_to_safety(parsed, Decimal(17))
    check_applied(world, account, p, safety)


@pytest.mark.parametrize(
    ("safety", "symbol", "text"),
    [
        (Safety(Decimal(17), Decimal(49800), Decimal("3199.6"), None, "USDT", False, "isolated: add margin"),
         "BTCUSDT", "add about 3,200 USDT margin to get back to 17 %"),
        (Safety(Decimal("17.5"), Decimal(49800), Decimal("2304.36000001"), Decimal("0.22159013"), "USDT", True),
         "BTCUSDT", "add about 2,305 USDT to the account, or reduce by 0.222 BTC, to get back to 17.5 %"),
        (Safety(Decimal(17), Decimal(70200), Decimal("0.03541767"), Decimal("0.5"), "BTC", True),
         "BTCUSD", "add about 0.0355 BTC to the account, or reduce by 0.5 BTC, to get back to 17 %"),
        (Safety(Decimal(17), None, None, None, "USDC", True, "already 17% or more from liquidation"),
         "ETHPERP", "already 17% or more from liquidation"),
    ],
)  # fmt: skip
def test_a_suggestion_reads_as_one_line_that_never_understates(safety: Safety, symbol: str, text: str) -> None:
    assert describe(safety, symbol) == text


def test_when_the_rest_of_the_account_is_past_liquidation_closing_the_position_is_not_enough() -> None:
    """A losing BTC long has taken the cross collateral below maintenance; the small ETH short cannot be saved by
    closing it, only by adding equity (which the simulator confirms)."""
    world, account = case_world(
        [position("USDT-FUTURES", "ETHUSDT", "short", "crossed", "0.5", "3000"),
         position("USDT-FUTURES", "BTCUSDT", "long", "crossed", "1", "66000")],
        [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "5950"}],
    )  # fmt: skip
    pairs = read_positions(world.market, account)
    safety = margin_to_safety(pairs[0][1], Decimal(17), positions=[p for _, p in pairs])
    assert safety.reduce_size is None and safety.reason is not None and "entirely" in safety.reason
    assert safety.add_margin is not None
    check_applied(world, account, pairs[0][0], safety)


def test_a_target_of_100_percent_or_more_below_the_mark_is_impossible() -> None:
    world, account = case_world(*CASES[0][1:])
    ((_, parsed),) = read_positions(world.market, account)
    safety = margin_to_safety(parsed, Decimal(100))
    assert safety.add_margin is None and safety.reason is not None and "0 or less" in safety.reason
