"""Positions re-priced from a new mark between account reads, checked against the simulator's own arithmetic:
positions read the way the client reads them (the simulator's answer, parsed), marks moved at random, and the
live estimate compared with the simulator's new PnL and liquidation prices."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from monitor.domain import AccountMode, AccountSnapshot, FuturesAccount, MarginMode, Position, PositionMode, Side
from monitor.exchange.bitget import parse
from monitor.market.live import LiquidationBasis, LivePosition, live_figures, live_positions, reprice, unrealized_pnl
from monitor.market.mark import Mark
from monitor.simulator import render
from monitor.simulator.generate import generate_world
from monitor.simulator.market import Market, SimAccount, SimPosition, Symbol
from monitor.simulator.world import default_symbols

READ_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = READ_AT + timedelta(seconds=2)
FUTURES = ("USDT-FUTURES", "USDC-FUTURES", "COIN-FUTURES")
# A second coin-margined contract on BTC (a delivery contract, as Bitget lists them), so coin-margined cross
# positions can share a margin coin across symbols as they do on Bitget.
DELIVERY = ("COIN-FUTURES", "BTCUSDH26", "60100", "0.1", "0.004")


def symbols() -> list[Symbol]:
    pt, name, mark, tick, rate = DELIVERY
    return [*default_symbols(), Symbol(pt, name, Decimal(mark), Decimal(tick), Decimal(rate))]


def read(market: Market, account: SimAccount) -> tuple[Position, ...]:
    """The account's positions as the monitor reads them: the simulator's answer, through the parser."""
    now_ms = int(READ_AT.timestamp() * 1000)
    product_types = sorted({p.product_type for p in account.positions})
    return tuple(p for pt in product_types for p in parse.positions(render.positions(market, account, pt, now_ms), pt))


def move_marks(market: Market, rng: random.Random, spread: float) -> None:
    for s in market.symbols.values():
        moved = s.mark * Decimal(repr(rng.uniform(1 - spread, 1 + spread)))
        s.mark = max(s.tick_size, moved.quantize(s.tick_size))


def lookup(market: Market, at: datetime = LATER) -> dict[tuple[str, str], Mark]:
    return {key: Mark(s.product_type, s.name, s.mark, at) for key, s in market.symbols.items()}


def random_world(rng: random.Random) -> tuple[Market, SimAccount]:
    """One margin coin of one product type: several crossed positions across its symbols (sometimes both legs
    of a symbol in hedge mode), sometimes an isolated one beside them, collateral from thin to comfortable."""
    market = Market(symbols())
    move_marks(market, rng, 0.2)
    product_type = rng.choice(FUTURES)
    names = [name for pt, name in market.symbols if pt == product_type]
    coin = {"USDT-FUTURES": "USDT", "USDC-FUTURES": "USDC", "COIN-FUTURES": "BTC"}[product_type]
    if product_type == "COIN-FUTURES":
        names = [n for n in names if n.startswith("BTC")]
    hedged = rng.choice([None, *names])
    positions = []
    for name in rng.sample(names, rng.randint(min(2, len(names)), len(names))):
        s = market.symbol(product_type, name)
        for side in ["long", "short"] if name == hedged else [rng.choice(["long", "short"])]:
            size = (Decimal(rng.randint(1_000, 20_000)) / s.mark).quantize(Decimal("0.0001"))
            entry = (s.mark * Decimal(repr(rng.uniform(0.97, 1.03)))).quantize(Decimal("0.01"))
            notional = size if s.inverse else size * entry
            leverage = Decimal(rng.randint(5, 50))
            isolated = rng.random() < 0.2
            positions.append(
                SimPosition(product_type, name, coin, side, "isolated" if isolated else "crossed", size, entry,
                            leverage, (notional / leverage).quantize(Decimal("0.00000001")), hedge=name == hedged)
            )  # fmt: skip
    cushion = Decimal(repr(rng.uniform(0.6, 2.0)))
    balance = sum((p.margin * (1 if p.margin_mode == "isolated" else cushion) for p in positions), Decimal(0))
    account = SimAccount("a", "1", "k", "p", "s", None, positions=positions)
    account.wallets[(product_type, coin)] = balance.quantize(Decimal("0.00000001"))
    return market, account


def check_against_simulator(
    market: Market, account: SimAccount, rng: random.Random
) -> list[tuple[Position, LivePosition]]:
    """Re-price the account's positions after a random move of every mark and compare each with the simulator's
    own mark, PnL and liquidation price after that move. Returns (position as read, live position) pairs."""
    before = read(market, account)
    move_marks(market, rng, 0.05)
    marks = lookup(market)
    lives = []
    for position in before:
        sim = next(
            p for p in account.positions
            if (p.product_type, p.symbol, p.side) == (position.product_type, position.symbol, str(position.side))
        )  # fmt: skip
        live = reprice(position, before, lambda pt, sym: marks.get((pt, sym)), READ_AT)
        tick = market.symbol(sim.product_type, sim.symbol).tick_size
        assert live.position.mark_price == market.mark(sim)
        assert live.position.unrealized_pnl == market.pnl(sim)
        expected = market.liquidation_price(account, sim)
        where = f"{sim.product_type} {sim.symbol} {sim.side} {sim.margin_mode}: {live}"
        if live.liquidation is LiquidationBasis.ADJUSTED:
            if expected > tick:
                assert live.position.liquidation_price is not None, where
                assert abs(live.position.liquidation_price - expected) <= tick, f"{where}, simulator: {expected}"
            else:  # the simulator's own answer would read as none
                assert live.position.liquidation_price is None or live.position.liquidation_price <= 2 * tick, where
        elif sim.margin_mode == "isolated":
            assert live.position.liquidation_price == position.liquidation_price
            assert expected <= 0 or live.position.liquidation_price == expected  # isolated: no other mark counts
        else:
            assert live.why_as_read == "no liquidation price as read", where
        lives.append((position, live))
    return lives


def test_crossed_liquidation_prices_follow_the_simulators_after_random_mark_moves() -> None:
    rng = random.Random(15)
    pairs = [pair for _ in range(400) for pair in check_against_simulator(*random_world(rng), rng)]
    crossed = [(p, live) for p, live in pairs if p.margin_mode is MarginMode.CROSSED]
    adjusted = [(p, live) for p, live in crossed if live.liquidation is LiquidationBasis.ADJUSTED]
    # Not a vacuous pass: most crossed prices were adjusted, in every product type, and they really moved.
    assert len(adjusted) > len(crossed) / 2
    assert {p.product_type for p, _ in adjusted} == set(FUTURES)
    moved = [p for p, live in adjusted if abs((live.position.liquidation_price or 0) - (p.liquidation_price or 0)) > 1]
    assert len(moved) > len(adjusted) / 2


def test_the_live_figures_are_the_repriced_positions_distance_and_pnl() -> None:
    """What the mark pass checks every account with (monitor.live: `_calm`) is exactly what re-pricing gives,
    in random worlds of crossed, hedged and isolated positions, some marks not newer than the read."""
    rng = random.Random(21)
    checked = 0
    for _ in range(200):
        market, account = random_world(rng)
        positions = read(market, account)
        snapshot = AccountSnapshot("a", READ_AT, AccountMode.CLASSIC, positions=positions)
        move_marks(market, rng, 0.05)
        marks = lookup(market)
        for key in rng.sample(sorted(marks), 1):  # one symbol's mark is as old as the read
            marks[key] = dataclasses.replace(marks[key], at=READ_AT)

        def get(pt: str, sym: str, found: dict[tuple[str, str], Mark] = marks) -> Mark | None:
            return found.get((pt, sym))

        prices = [m.price if (m := get(p.product_type, p.symbol)) and m.at > READ_AT else None for p in positions]
        figures = {id(p): (d, pnl) for p, d, pnl in live_figures(snapshot, prices, get)}
        for read_position, live in zip(positions, live_positions(snapshot, get), strict=True):
            if not live.from_feed:
                assert id(read_position) not in figures  # as read: nothing to check again
                continue
            assert figures[id(read_position)] == (live.position.liquidation_distance_pct, live.position.unrealized_pnl)
            checked += 1
    assert checked > 300


def test_the_simulators_generated_worlds_reprice_like_the_simulator() -> None:
    rng = random.Random(7)
    world = generate_world(120, seed=3)
    pairs = [
        pair
        for account in world.accounts.values()
        if not account.unified
        for pair in check_against_simulator(world.market, account, rng)
    ]
    assert sum(live.liquidation is LiquidationBasis.ADJUSTED for _, live in pairs) > 20


def position(**changes: object) -> Position:
    base = Position(
        product_type="USDT-FUTURES",
        symbol="BTCUSDT",
        margin_coin="USDT",
        side=Side.LONG,
        position_mode=PositionMode.ONE_WAY,
        margin_mode=MarginMode.ISOLATED,
        size=Decimal("0.5"),
        entry_price=Decimal(60000),
        mark_price=Decimal(60000),
        liquidation_price=Decimal(54000),
        margin=Decimal(3000),
        leverage=Decimal(10),
        unrealized_pnl=Decimal(0),
        maintenance_rate=Decimal("0.004"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("product_type", "side", "mark", "pnl"),
    [
        ("USDT-FUTURES", Side.LONG, "63000", "1500"),  # 0.5 * (63000 - 60000)
        ("USDT-FUTURES", Side.SHORT, "63000", "-1500"),
        ("USDC-FUTURES", Side.LONG, "57000", "-1500"),
        ("COIN-FUTURES", Side.LONG, "75000", "0.1"),  # 0.5 * (75000 - 60000) / 75000, in BTC
        ("COIN-FUTURES", Side.SHORT, "75000", "-0.1"),
        ("COIN-FUTURES", Side.LONG, "50000", "-0.1"),  # 0.5 * -10000 / 50000
    ],
)
def test_unrealized_pnl_is_linear_in_the_quote_coin_and_inverse_in_the_base_coin(
    product_type: str, side: Side, mark: str, pnl: str
) -> None:
    assert unrealized_pnl(position(product_type=product_type, side=side), Decimal(mark)) == Decimal(pnl)


def test_an_isolated_position_keeps_its_liquidation_price_and_its_distance_follows_the_mark() -> None:
    p = position()
    live = reprice(p, (p,), lambda pt, sym: Mark(pt, sym, Decimal(55000), LATER), READ_AT)
    assert live.position.liquidation_price == Decimal(54000)
    assert live.liquidation is LiquidationBasis.AS_READ and live.why_as_read is None
    assert live.position.mark_price == 55000 and live.position.unrealized_pnl == -2500
    assert live.position.liquidation_distance_pct is not None
    assert live.position.liquidation_distance_pct.quantize(Decimal("0.01")) == Decimal("1.82")  # 1000 / 55000
    assert (live.mark_at, live.read_at, live.from_feed) == (LATER, READ_AT, True)
    past = reprice(p, (p,), lambda pt, sym: Mark(pt, sym, Decimal(53000), LATER), READ_AT)
    assert past.position.liquidation_distance_pct is not None and past.position.liquidation_distance_pct < 0


def test_a_mark_no_newer_than_the_read_leaves_the_position_as_read() -> None:
    p = position()
    for marks in (lambda pt, sym: None, lambda pt, sym: Mark(pt, sym, Decimal(50000), READ_AT)):
        live = reprice(p, (p,), marks, READ_AT)
        assert live.position == p and not live.from_feed and live.liquidation is LiquidationBasis.AS_READ


def crossed_pair() -> tuple[Position, Position]:
    btc = position(margin_mode=MarginMode.CROSSED)
    eth = position(
        margin_mode=MarginMode.CROSSED,
        symbol="ETHUSDT",
        size=Decimal(5),
        entry_price=Decimal(3000),
        mark_price=Decimal(3000),
        liquidation_price=Decimal(2000),
        maintenance_rate=Decimal("0.005"),
    )
    return btc, eth


def test_a_crossed_price_moves_by_the_other_positions_pnl_and_maintenance_change() -> None:
    btc, eth = crossed_pair()
    marks = {"BTCUSDT": Decimal(60000), "ETHUSDT": Decimal(2900)}
    live = reprice(btc, (btc, eth), lambda pt, sym: Mark(pt, sym, marks[sym], LATER), READ_AT)
    # ETH lost 5 * 100 = 500 USDT and its maintenance fell by 0.005 * 5 * 100 = 2.5; over D = 0.5 - 0.004 * 0.5:
    assert live.liquidation is LiquidationBasis.ADJUSTED
    assert live.position.liquidation_price == (Decimal(54000) + (Decimal("-2.5") + 500) / Decimal("0.498")).quantize(
        Decimal("0.00000001")
    )


@pytest.mark.parametrize(
    ("changes", "pooled", "why"),
    [
        ({}, True, "collateral pooled across coins (unified account or multi-asset mode)"),
        ({"maintenance_rate": None}, False, "maintenance rate of ETHUSDT unknown"),
        ({"liquidation_price": None}, False, None),
    ],
)
def test_a_crossed_price_stays_as_read_when_it_cannot_be_adjusted_soundly_and_says_why(
    changes: dict[str, object], pooled: bool, why: str | None
) -> None:
    btc, eth = crossed_pair()
    eth = dataclasses.replace(eth, **changes)  # type: ignore[arg-type]
    subject = btc if "liquidation_price" not in changes else eth
    live = reprice(subject, (btc, eth), lambda pt, sym: Mark(pt, sym, Decimal(2500), LATER), READ_AT, pooled=pooled)
    assert live.liquidation is LiquidationBasis.AS_READ
    assert live.position.liquidation_price == subject.liquidation_price
    assert live.why_as_read == (why or "no liquidation price as read")


def test_a_crossed_price_stays_as_read_without_a_fresh_mark_for_another_position() -> None:
    btc, eth = crossed_pair()
    fresh = {"BTCUSDT": LATER, "ETHUSDT": READ_AT - timedelta(seconds=1)}
    live = reprice(btc, (btc, eth), lambda pt, sym: Mark(pt, sym, Decimal(100), fresh[sym]), READ_AT)
    assert live.liquidation is LiquidationBasis.AS_READ
    assert live.why_as_read == "no mark newer than the read for ETHUSDT"


def test_a_snapshot_is_repriced_position_by_position() -> None:
    btc, eth = crossed_pair()
    snapshot = AccountSnapshot("a", READ_AT, AccountMode.UNIFIED, positions=(btc, eth))
    lives = live_positions(snapshot, lambda pt, sym: Mark(pt, sym, Decimal(2950), LATER) if sym == "ETHUSDT" else None)
    assert [live.from_feed for live in lives] == [False, True]
    assert lives[1].why_as_read == "collateral pooled across coins (unified account or multi-asset mode)"
    assert lives[1].position.unrealized_pnl == -250


@pytest.mark.parametrize(("asset_mode", "basis"), [("single", "adjusted"), ("union", "as_read"), (None, "adjusted")])
def test_a_classic_account_in_multi_asset_mode_keeps_crossed_prices_as_read(asset_mode: str | None, basis: str) -> None:
    btc, eth = crossed_pair()
    futures = FuturesAccount("USDT-FUTURES", "USDT", Decimal(9000), None, Decimal(0), Decimal(0), Decimal(0), None,
                             asset_mode=asset_mode)  # fmt: skip
    snapshot = AccountSnapshot("a", READ_AT, AccountMode.CLASSIC, futures=(futures,), positions=(btc, eth))
    lives = live_positions(snapshot, lambda pt, sym: Mark(pt, sym, Decimal(2950 if sym == "ETHUSDT" else 60000), LATER))
    assert [live.liquidation.value for live in lives] == [basis, basis]
