"""The odds of liquidation: the first-passage formula against a Monte Carlo of the simulator's own seeded walk,
the volatility estimate against the simulator's volatility, and the rolling store of marks."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from monitor.domain import MarginMode, Position, PositionMode, Side
from monitor.exchange.bitget import parse
from monitor.risk.odds import (
    MIN_SAMPLES,
    MarkHistory,
    hit_probability,
    liquidation_probability,
    position_odds,
    realized_volatility,
)
from monitor.simulator import render
from monitor.simulator.market import Market, Symbol
from monitor.simulator.world import build_world

START = datetime(2026, 1, 1, tzinfo=UTC)
# The Monte Carlo: paths of the simulator's walk, one per simulated symbol, stepped by Market.step itself.
PATHS = 2000
STEPS = 240
STEP = timedelta(seconds=15)  # 240 steps: one hour
PER_STEP = 0.001  # the simulator's volatility: sd of the log mark per step
SIGMA = PER_STEP / math.sqrt(STEP.total_seconds())  # per square root of a second
# Broadie, Glasserman and Kou: a walk watched only at its steps touches a level about as often as a continuously
# watched one does a level 0.5826 * sigma * sqrt(step) further away. The formula assumes continuous watching.
BGK = 0.5826


def _walk() -> tuple[list[list[Decimal]], list[list[Decimal]]]:
    """Running minimum and maximum of every path after each step."""
    start = Decimal(60000)
    symbols = [Symbol("USDT-FUTURES", f"PATH{i}", start, Decimal("0.01"), Decimal("0.004")) for i in range(PATHS)]
    market = Market(symbols, volatility=PER_STEP, seed=17)
    low, high = [start] * PATHS, [start] * PATHS
    lows, highs = [], []
    for _ in range(STEPS):
        market.step()
        for i, s in enumerate(symbols):
            low[i] = min(low[i], s.mark)
            high[i] = max(high[i], s.mark)
        lows.append(list(low))
        highs.append(list(high))
    return lows, highs


def _risky_long() -> Position:
    """An isolated BTC long about one hour-sigma from its liquidation price, as the monitor reads it."""
    world = build_world({"accounts": [{
        "name": "mc", "api_key": "k", "passphrase": "p", "api_secret": "s" * 32,
        "positions": [{"product_type": "USDT-FUTURES", "symbol": "BTCUSDT", "side": "long",
                       "margin_mode": "isolated", "size": "1", "entry": "60000", "margin": "1150"}],
        "wallets": [{"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "2000"}],
    }]})  # fmt: skip
    account = world.accounts["mc"]
    (position,) = parse.positions(render.positions(world.market, account, "USDT-FUTURES", 0), "USDT-FUTURES")
    assert position.mark_price == Decimal(60000)
    return position


def test_the_first_passage_formula_matches_a_monte_carlo_of_the_simulators_walk() -> None:
    lows, highs = _walk()
    position = _risky_long()
    assert position.liquidation_price is not None
    hour = STEP * STEPS
    sd_hour = SIGMA * math.sqrt(hour.total_seconds())
    checks = [  # (what, steps, level, hit by the path's low or high)
        ("the position's liquidation within the hour", STEPS, position.liquidation_price, "low"),
        ("the same level within a quarter", STEPS // 4, position.liquidation_price, "low"),
        ("1.5 sigma up within the hour", STEPS, Decimal(60000 * math.exp(1.5 * sd_hour)), "high"),
        ("0.5 sigma down within the hour", STEPS, Decimal(60000 * math.exp(-0.5 * sd_hour)), "low"),
    ]
    for what, steps, level, side in checks:
        horizon = STEP * steps
        extremes = (lows if side == "low" else highs)[steps - 1]
        hits = sum(1 for x in extremes if (x <= level if side == "low" else x >= level)) / PATHS
        formula = hit_probability(Decimal(60000), level, SIGMA, horizon)
        if steps == STEPS and side == "low" and level == position.liquidation_price:
            assert liquidation_probability(position, SIGMA, horizon) == formula
            assert 0.2 < formula < 0.5  # the case is meant to be neither rare nor certain
        gap = abs(math.log(float(level) / 60000))
        spread = SIGMA * math.sqrt(2 * horizon.total_seconds())
        allowance = math.erfc(gap / spread) - math.erfc((gap + BGK * PER_STEP) / spread)  # continuous - stepped
        error = math.sqrt(hits * (1 - hits) / PATHS)
        tolerance = 3 * error + allowance
        assert abs(hits - formula) <= tolerance, f"{what}: {hits} hit, formula {formula} +- {tolerance}"
        # Sharper: the formula at the level moved by the stepping correction (itself good to a few 0.001).
        shift = math.exp(BGK * PER_STEP)
        stepped = hit_probability(Decimal(60000), level / Decimal(shift) if side == "low" else level * Decimal(shift),
                                  SIGMA, horizon)  # fmt: skip
        assert abs(hits - stepped) <= 3 * error + 0.005, f"{what}: {hits} hit, {stepped} with the correction"
        assert hits <= formula + 3 * error, f"{what}: a stepped walk cannot hit more often than a continuous one"


def _sampled_walk(count: int, per_sqrt_second: float, seed: int) -> list[tuple[datetime, Decimal]]:
    """Marks of one simulated symbol at irregular times (5 to 30 s apart, one 10-minute gap), the simulator's
    step scaled to each interval so the walk has the same volatility per square root of a second."""
    symbol = Symbol("USDT-FUTURES", "BTCUSDT", Decimal(60000), Decimal("0.1"), Decimal("0.004"))
    market = Market([symbol], seed=seed)
    rng = random.Random(seed)
    at = START
    samples = [(at, symbol.mark)]
    for i in range(count - 1):
        gap = timedelta(minutes=10) if i == count // 2 else timedelta(seconds=rng.uniform(5, 30))
        market.volatility = per_sqrt_second * math.sqrt(gap.total_seconds())
        market.step()
        at += gap
        samples.append((at, symbol.mark))
    return samples


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_volatility_estimate_recovers_the_simulators_volatility(seed: int) -> None:
    true = 0.0005 / math.sqrt(10)
    samples = _sampled_walk(3000, true, seed)
    estimate = realized_volatility(samples)
    assert estimate is not None
    # The estimate of sigma^2 has a relative standard error sqrt(2 * sum dt^2) / sum dt; sigma's is half that.
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(samples)]
    error = math.sqrt(2 * sum(g * g for g in gaps)) / sum(gaps) / 2
    assert abs(estimate / true - 1) <= 4 * error, (estimate, true, error)


def test_the_volatility_ignores_sample_order_duplicates_and_bad_marks() -> None:
    samples = _sampled_walk(200, 0.0002, 5)
    estimate = realized_volatility(samples)
    shuffled = list(reversed(samples)) + samples[:10] + [(START, Decimal(0)), (START, Decimal(-5))]
    assert realized_volatility(shuffled) == estimate


def test_too_little_history_gives_no_volatility() -> None:
    samples = _sampled_walk(200, 0.0002, 6)
    assert realized_volatility([]) is None
    assert realized_volatility(samples[: MIN_SAMPLES - 1]) is None  # 29 samples
    dense = [(START + timedelta(seconds=i), Decimal(100 + i % 2)) for i in range(100)]
    assert realized_volatility(dense) is None  # 100 samples over 99 s: too short a span
    assert realized_volatility(dense, min_span=timedelta(seconds=60)) is not None


def _position(side: Side, mark: str, liquidation: str | None) -> Position:
    return Position(
        product_type="USDT-FUTURES", symbol="BTCUSDT", margin_coin="USDT", side=side,
        position_mode=PositionMode.ONE_WAY, margin_mode=MarginMode.ISOLATED, size=Decimal(1),
        entry_price=Decimal(60000), mark_price=Decimal(mark),
        liquidation_price=None if liquidation is None else Decimal(liquidation), margin=Decimal(1000),
        leverage=None, unrealized_pnl=Decimal(0),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("side", "mark", "liquidation", "volatility", "expected"),
    [
        (Side.LONG, "54000", "54000", None, 1.0),  # at the price: liquidated now
        (Side.LONG, "53000", "54000", 0.0001, 1.0),  # past it
        (Side.SHORT, "66000", "65000", 0.0001, 1.0),
        (Side.LONG, "60000", "54000", None, None),  # no history
        (Side.LONG, "60000", None, 0.0001, None),  # no liquidation price
        (Side.LONG, "60000", "54000", 0.0, 0.0),  # a mark that never moves
        (Side.SHORT, "60000", "66000", 0.0, 0.0),
    ],
)
def test_edge_cases_of_the_liquidation_probability(
    side: Side, mark: str, liquidation: str | None, volatility: float | None, expected: float | None
) -> None:
    position = _position(side, mark, liquidation)
    assert liquidation_probability(position, volatility, timedelta(hours=24)) == expected


def test_a_mark_that_never_moved_gives_no_volatility_rather_than_zero_odds() -> None:
    still = [(START + timedelta(seconds=15 * i), Decimal(60000)) for i in range(200)]
    assert realized_volatility(still) is None
    assert liquidation_probability(_risky_long(), realized_volatility(still), timedelta(hours=24)) is None


def test_the_probability_grows_with_time_and_volatility_and_shrinks_with_distance() -> None:
    near, far = _position(Side.LONG, "60000", "57000"), _position(Side.SHORT, "60000", "66000")
    sigma = 0.0006 / math.sqrt(10)
    p = {h: liquidation_probability(near, sigma, timedelta(hours=h)) for h in (1, 24)}
    assert p[1] is not None and p[24] is not None and 0 < p[1] < p[24] < 1
    far_24 = liquidation_probability(far, sigma, timedelta(hours=24))
    assert far_24 is not None and far_24 < p[24]
    doubled = liquidation_probability(near, 2 * sigma, timedelta(hours=1))
    assert doubled is not None and doubled > p[1]
    # the formula by hand: 5 % down is ln(60000/57000) = 0.0513; sigma * sqrt(3600 s) = 0.0114; z = 4.50
    z = math.log(60000 / 57000) / (sigma * math.sqrt(3600))
    assert p[1] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))), rel=1e-9)


def test_bad_inputs_to_the_formula_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        hit_probability(Decimal(0), Decimal(1), 0.1, timedelta(hours=1))
    with pytest.raises(ValueError, match="negative"):
        hit_probability(Decimal(1), Decimal(2), -0.1, timedelta(hours=1))


# -- the rolling store ---------------------------------------------------------------------------------------


def test_the_store_keeps_one_mark_per_resolution() -> None:
    history = MarkHistory(resolution=timedelta(seconds=10))
    kept = [history.add("usdt-futures", "BTCUSDT", START + timedelta(seconds=0.3 * i), Decimal(60000 + i))
            for i in range(200)]  # fmt: skip
    samples = history.samples("USDT-FUTURES", "BTCUSDT")
    assert len(samples) == sum(kept) == 6  # 0, 10.2, 20.4, 30.6, 40.8, 51 s of 59.7 s
    assert all(b[0] - a[0] >= 10 for a, b in itertools.pairwise(samples))
    assert history.add("USDT-FUTURES", "BTCUSDT", START, Decimal(1)) is False  # older than the last: dropped


def test_the_store_forgets_marks_older_than_its_window_and_caps_the_count() -> None:
    history = MarkHistory(window=timedelta(hours=1), resolution=timedelta(seconds=10))
    for i in range(1000):  # 10 000 s of marks
        history.add("USDT-FUTURES", "ETHUSDT", START + timedelta(seconds=10 * i), Decimal(3000))
    samples = history.samples("USDT-FUTURES", "ETHUSDT")
    assert len(samples) == 361 == history.max_samples
    assert samples[-1][0] - samples[0][0] == 3600
    capped = MarkHistory(max_samples=50)
    for i in range(100):
        capped.add("USDT-FUTURES", "ETHUSDT", START + timedelta(seconds=10 * i), Decimal(3000))
    assert len(capped.samples("USDT-FUTURES", "ETHUSDT")) == 50


def test_seeding_many_marks_at_once_is_the_same_as_receiving_them_in_order() -> None:
    samples = _sampled_walk(500, 0.0002, 8)
    one_by_one = MarkHistory(window=timedelta(hours=1))
    for at, mark in samples:
        one_by_one.add("USDT-FUTURES", "BTCUSDT", at, mark)
    seeded = MarkHistory(window=timedelta(hours=1))
    # live marks arrived first; the stored ones come after a restart, out of order
    for at, mark in samples[400:]:
        seeded.add("USDT-FUTURES", "BTCUSDT", at, mark)
    seeded.add_many("USDT-FUTURES", "BTCUSDT", reversed(samples[:400]))
    assert seeded.samples("USDT-FUTURES", "BTCUSDT") == one_by_one.samples("USDT-FUTURES", "BTCUSDT")
    held = [(datetime.fromtimestamp(t, UTC), m) for t, m in seeded.samples("USDT-FUTURES", "BTCUSDT")]
    assert len(held) < len(samples)  # some came within 10 s of the previous one
    estimate = seeded.volatility("USDT-FUTURES", "BTCUSDT", samples[-1][0])
    assert estimate == pytest.approx(realized_volatility(held), rel=1e-9)


def test_the_store_gives_no_volatility_for_a_symbol_it_barely_knows() -> None:
    history = MarkHistory()
    assert history.volatility("USDT-FUTURES", "BTCUSDT", START) is None
    for i in range(10):
        history.add("USDT-FUTURES", "BTCUSDT", START + timedelta(seconds=10 * i), Decimal(60000 + i))
    assert history.volatility("USDT-FUTURES", "BTCUSDT", START + timedelta(minutes=2)) is None


def test_the_store_drops_symbols_no_longer_fed() -> None:
    history = MarkHistory(window=timedelta(hours=1))
    history.add("USDT-FUTURES", "OLDUSDT", START, Decimal(1))
    history.add("USDT-FUTURES", "BTCUSDT", START + timedelta(minutes=50), Decimal(60000))
    history.forget_before(START + timedelta(minutes=90))
    assert history.symbols() == [("USDT-FUTURES", "BTCUSDT")]


def test_the_store_refuses_naive_times_and_impossible_marks() -> None:
    history = MarkHistory()
    with pytest.raises(ValueError, match="time zone"):
        history.add("USDT-FUTURES", "BTCUSDT", datetime(2026, 1, 1), Decimal(1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="USDT-FUTURES BTCUSDT: a mark must be a positive number"):
        history.add("USDT-FUTURES", "BTCUSDT", START, Decimal("NaN"))
    with pytest.raises(ValueError, match="positive"):
        history.add_many("USDT-FUTURES", "BTCUSDT", [(START, Decimal(-1))])


def test_a_positions_odds_come_from_its_symbols_marks_in_the_store() -> None:
    history = MarkHistory()
    samples = _sampled_walk(400, 0.0005 / math.sqrt(10), 9)
    history.add_many("USDT-FUTURES", "BTCUSDT", samples)
    now = samples[-1][0]
    near = _position(Side.LONG, "60000", "57000")
    odds = position_odds(near, history, now)
    sigma = history.volatility("USDT-FUTURES", "BTCUSDT", now)
    assert sigma is not None
    hour, day = timedelta(hours=1), timedelta(hours=24)
    assert odds == {hour: liquidation_probability(near, sigma, hour), day: liquidation_probability(near, sigma, day)}
    assert position_odds(dataclasses.replace(near, symbol="ETHUSDT"), history, now) == {hour: None, day: None}


def test_the_remembered_volatility_follows_every_change_of_the_samples() -> None:
    """The figure is remembered between changes: after each add, trim, cap, seed and narrower window it is what
    a fresh estimate of the samples held says."""
    walk = _sampled_walk(900, 0.0004, 3)
    history = MarkHistory(window=timedelta(hours=1), max_samples=300)

    def fresh(now: datetime, window: timedelta = timedelta(hours=1)) -> float | None:
        since = now.timestamp() - window.total_seconds()
        held = [(datetime.fromtimestamp(t, UTC), m) for t, m in history.samples("USDT-FUTURES", "BTCUSDT")]
        return realized_volatility([(at, m) for at, m in held if at.timestamp() >= since])

    checked = 0
    for i, (at, mark) in enumerate(walk):
        history.add("USDT-FUTURES", "BTCUSDT", at, mark)
        if i % 37 == 0 or i > 880:
            for now, window in ((at, timedelta(hours=1)), (at, timedelta(minutes=20)), (at, timedelta(hours=1))):
                assert history.volatility("USDT-FUTURES", "BTCUSDT", now, window=window) == fresh(now, window)
                checked += 1
    last = walk[-1][0]
    for later in (last + timedelta(minutes=5), last + timedelta(minutes=30)):  # the oldest samples age out
        assert history.volatility("USDT-FUTURES", "BTCUSDT", later) == fresh(later)
    remembered = history.volatility("USDT-FUTURES", "BTCUSDT", last)
    # a seed that changes samples between the oldest and the newest held
    history.add_many("USDT-FUTURES", "BTCUSDT", [(at + timedelta(seconds=5), mark * 2) for at, mark in walk[-200:]])
    assert history.volatility("USDT-FUTURES", "BTCUSDT", last) == fresh(last) != remembered
    history.forget_before(last + timedelta(hours=2))
    assert history.volatility("USDT-FUTURES", "BTCUSDT", last) is None and checked > 50
