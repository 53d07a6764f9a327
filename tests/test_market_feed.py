"""The market feed against the simulator on loopback: marks and spot prices follow the simulator's, a product
type without answers goes stale and recovers (logged once each way), and the feed's requests go ahead of
queued signed reads inside a small per-IP budget without a single 429."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest

from monitor.clock import Clock, ManualClock, SystemClock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.client import BitgetClient
from monitor.exchange.bitget.market import MarkPrices
from monitor.exchange.bitget.ratelimit import AccountBudget, IpBudget
from monitor.exchange.bitget.servertime import ServerClock
from monitor.market.feed import SPOT, MarketFeed
from monitor.market.live import LiquidationBasis, reprice
from monitor.simulator.world import build_world
from tests.conftest import Sim, SimFactory

CLOCK = SystemClock()
FAST = 0.05  # seconds: the feed's interval in these tests


def make_feed(sim: Sim, clock: Clock = CLOCK, budget: IpBudget | None = None, **options: float) -> MarketFeed:
    options = {"mark_interval": FAST, "spot_interval": 2 * FAST, **options}
    prices = MarkPrices(sim.session, sim.url, budget or IpBudget(6000, 60.0, CLOCK), clock, priority=True)
    return MarketFeed(prices, clock, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def running(feed: MarketFeed) -> AsyncIterator[MarketFeed]:
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(FAST / 5)


async def set_mark(sim: Sim, symbol: str, product_type: str, mark: str) -> None:
    await sim.control("POST", "/_sim/price", {"symbol": symbol, "product_type": product_type, "mark": mark})


async def test_marks_and_spot_prices_follow_the_simulator_interval_by_interval(sim: Sim) -> None:
    feed = make_feed(sim)
    feed.watch(["usdt-futures", "COIN-FUTURES"])
    updates: list[str] = []
    feed.subscribe(updates.append)
    async with running(feed):
        await until(lambda: feed.mark("USDT-FUTURES", "BTCUSDT") is not None)
        first = feed.mark("USDT-FUTURES", "BTCUSDT")
        await set_mark(sim, "BTCUSDT", "USDT-FUTURES", "61000.5")
        await until(lambda: (m := feed.mark("USDT-FUTURES", "BTCUSDT")) is not None and m.price == Decimal("61000.5"))
        mark = feed.mark("USDT-FUTURES", "BTCUSDT")
        assert first is not None and first.price == 60000
        assert mark is not None and mark.at > first.at  # each mark carries the time it was asked for
        coin_mark = feed.mark("COIN-FUTURES", "BTCUSD")
        assert coin_mark is not None and coin_mark.price == 60000  # another product type, its own mark
        # Spot coins are valued at what the simulator values them at: the USDT-futures mark.
        await until(lambda: feed.spot_price("BTC") == Decimal("61000.5"))
        assert feed.spot_price("USDT") == 1 and feed.spot_price("USDC") == 1 and feed.spot_price("DOGE") is None
        for _ in range(5):  # it keeps reading, each product type
            await until(lambda: updates.count("USDT-FUTURES") > 0 and updates.count("COIN-FUTURES") > 0)
            updates.clear()
        await until(lambda: feed.stale == frozenset())
        assert {h.name for h in feed.health()} == {"COIN-FUTURES", "USDT-FUTURES", SPOT}
        feed.watch(["COIN-FUTURES"])  # no position uses USDT-futures any more: no more reads of it
        updates.clear()
        reads = sim.sim.requests[("-", ep.TICKERS.path)]
        await until(lambda: updates.count("COIN-FUTURES") >= 3)
        assert "USDT-FUTURES" not in updates and feed.mark("USDT-FUTURES", "BTCUSDT") is None
        kept = feed.mark("USDT-FUTURES", "BTCUSDT", stale_ok=True)
        assert kept is not None and kept.price == Decimal("61000.5")
        # One read per product type per interval at most, never doubled while one is in flight.
        assert sim.sim.requests[("-", ep.TICKERS.path)] - reads <= updates.count("COIN-FUTURES") + 1


async def test_a_product_type_without_answers_goes_stale_after_three_intervals_and_recovers(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.market.feed")
    feed = make_feed(sim, mark_interval=2 * FAST, spot_interval=1.0)  # stale after 0.3 s, not one slow answer
    feed.watch(["USDT-FUTURES"])
    async with running(feed):
        await until(lambda: feed.mark("USDT-FUTURES", "BTCUSDT") is not None)
        last = feed.mark("USDT-FUTURES", "BTCUSDT")
        await sim.control("POST", "/_sim/faults", {"kind": "500", "count": 100_000, "endpoint": ep.TICKERS.path})
        await until(lambda: "USDT-FUTURES" in feed.stale)
        assert feed.is_stale("USDT-FUTURES") and not feed.is_stale(SPOT)
        assert feed.mark("USDT-FUTURES", "BTCUSDT") is None  # callers fall back to account reads
        assert last is not None and feed.mark("USDT-FUTURES", "BTCUSDT", stale_ok=True) is not None
        (health,) = [h for h in feed.health() if h.name == "USDT-FUTURES"]
        assert health.stale and health.age is not None and health.age > 3 * 2 * FAST
        assert health.error is not None and "HTTP 500" in health.error and ep.TICKERS.path in health.error
        failed = sim.sim.requests[("-", ep.TICKERS.path)]
        await until(lambda: sim.sim.requests[("-", ep.TICKERS.path)] >= failed + 5)  # still failing, still asking
        await sim.control("DELETE", "/_sim/faults")
        await until(lambda: not feed.is_stale("USDT-FUTURES"))
        await until(lambda: sim.sim.requests[("-", ep.TICKERS.path)] >= failed + 10)  # fresh for a while
        assert feed.mark("USDT-FUTURES", "BTCUSDT") is not None
        assert [(h.name, h.stale, h.error) for h in feed.health()] == [
            ("USDT-FUTURES", False, None),
            (SPOT, False, None),
        ]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no fresh USDT-FUTURES prices" in m and "HTTP 500" in m for m in messages) == 1
    assert sum("USDT-FUTURES prices fresh again" in m for m in messages) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert not any("spot" in m for m in messages)


async def test_staleness_counts_intervals_without_a_fresh_answer(sim: Sim) -> None:
    """On a clock that moves only when told: a newly watched product type is not stale until three intervals
    have passed without an answer, and an answered one goes stale three intervals after its answer was asked."""
    clock = ManualClock()
    feed = make_feed(sim, clock, mark_interval=1.0, spot_interval=10.0)
    feed.watch(["USDT-FUTURES"])
    assert not feed.is_stale("USDT-FUTURES") and feed.is_stale("COIN-FUTURES")  # COIN-FUTURES: not watched
    clock.advance(3.01)
    assert feed.stale == {"USDT-FUTURES"} and not feed.is_stale(SPOT)
    async with running(feed):
        await asyncio.wait_for(feed.updated(0), 5)
        await until(lambda: feed.version >= 2)  # marks and spot, each read once: the clock does not move
        assert feed.stale == frozenset() and feed.mark("USDT-FUTURES", "ETHUSDT") is not None
        clock.advance(3.0)
        assert feed.stale == frozenset()
        clock.advance(0.01)  # checked at once, before the feed's next turn can read again
        assert feed.stale == {"USDT-FUTURES"} and feed.mark("USDT-FUTURES", "ETHUSDT") is None
        assert feed.spot_price("ETH") == 3000  # spot goes stale after three of its own intervals
        clock.advance(27)
        assert feed.spot_price("ETH") is None and feed.is_stale(SPOT)
    with pytest.raises(ValueError, match="not futures product types: SPOT"):
        feed.watch(["spot"])


async def test_feed_reads_go_ahead_of_queued_signed_reads_and_nothing_meets_a_429(make_sim: SimFactory) -> None:
    """A small per-IP budget (30 per 3 s, at the simulator too), a backlog of signed reads queued in it: the
    feed's first answer comes before most of the backlog has left, and no request of either sees a 429."""
    sim = await make_sim(accounts=12, ip_per_minute=30, ip_window=3.0)
    ip = IpBudget(30, 3.0, CLOCK)
    accounts = [a for a in sim.world.accounts.values() if not a.unified]
    clients = [
        BitgetClient(sim.session, sim.url, a.name, sim.credentials(a), ServerClock(CLOCK), budget=AccountBudget(ip))
        for a in accounts
    ]
    done: list[str] = []

    async def signed(client: BitgetClient) -> None:
        await client.spot_assets()
        done.append(client.account)

    backlog = [asyncio.create_task(signed(c)) for c in clients for _ in range(3)]
    await asyncio.sleep(0.1)  # all queued in the budget
    feed = make_feed(sim, budget=ip, mark_interval=0.5, spot_interval=1.0)
    feed.watch(["USDT-FUTURES"])
    async with running(feed):
        await asyncio.wait_for(feed.updated(0), 10)
        waiting = len(backlog) - len(done)
        await asyncio.wait_for(asyncio.gather(*backlog), 30)
        assert feed.stale == frozenset()
    assert len(backlog) >= 20 and waiting > len(backlog) / 2
    stats = await sim.control("GET", "/_sim/stats")
    assert stats["totals"]["rate_limited"] == 0 and stats["totals"]["ip_lockouts"] == 0
    assert stats["requests"]["-"][ep.TICKERS.path] >= 1 and len(done) == len(backlog)


async def test_a_crossed_position_read_then_repriced_from_the_feed_agrees_with_the_simulator(
    make_sim: SimFactory,
) -> None:
    """End to end: a thinly collateralised cross account read through the client, ETH's mark moved, the feed's
    new marks: BTC's live liquidation price is where the simulator now puts it, and ETH's PnL is its PnL."""
    legs = [("BTCUSDT", "0.5", "60000"), ("ETHUSDT", "10", "3000")]
    positions = [
        {"product_type": "USDT-FUTURES", "symbol": s, "side": "long", "size": n, "entry": e} for s, n, e in legs
    ]
    wallet = {"product_type": "USDT-FUTURES", "coin": "USDT", "balance": "8000"}
    spec = {"name": "cross", "api_key": "k", "api_secret": "s", "passphrase": "p", "products": ["USDT-FUTURES"],
            "wallets": [wallet], "positions": positions}  # fmt: skip
    sim = await make_sim(world=build_world({"accounts": [spec]}))
    read_at = CLOCK.now()
    read = await sim.client(sim.account("cross")).positions("USDT-FUTURES")
    btc, eth = sorted(read, key=lambda p: p.symbol)
    feed = make_feed(sim)
    feed.watch(["USDT-FUTURES"])
    await set_mark(sim, "ETHUSDT", "USDT-FUTURES", "2900")
    async with running(feed):
        await until(lambda: (m := feed.mark("USDT-FUTURES", "ETHUSDT")) is not None and m.price == 2900)
        live_btc, live_eth = (reprice(p, read, feed.mark, read_at) for p in (btc, eth))
    state = await sim.control("GET", "/_sim/state")
    now = {p["symbol"]: Decimal(p["liquidation_price"]) for p in state["accounts"][0]["positions"]}
    assert btc.liquidation_price is not None and live_btc.liquidation is LiquidationBasis.ADJUSTED
    assert live_btc.position.liquidation_price is not None
    assert abs(live_btc.position.liquidation_price - now["BTCUSDT"]) <= Decimal("0.1")  # BTCUSDT's tick
    assert live_btc.position.liquidation_price - btc.liquidation_price > 1900  # ETH's loss moved it up by ~2000
    assert live_eth.position.unrealized_pnl == -1000 and live_eth.position.mark_price == 2900


async def test_a_read_slower_than_the_interval_is_not_doubled_and_the_next_follows_it(sim: Sim) -> None:
    feed = make_feed(sim)
    feed.watch(["USDT-FUTURES"])
    updates: list[str] = []
    feed.subscribe(updates.append)
    async with running(feed):
        await until(lambda: "USDT-FUTURES" in updates)
        await sim.control("POST", "/_sim/faults", {"kind": "slow", "delay": 0.6, "endpoint": ep.TICKERS.path})
        asked = sim.sim.requests[("-", ep.TICKERS.path)]
        await until(lambda: sim.sim.requests[("-", ep.TICKERS.path)] > asked)  # the slow one is in flight
        updates.clear()
        await asyncio.sleep(0.3)  # six turns pass while it hangs
        assert sim.sim.requests[("-", ep.TICKERS.path)] == asked + 1 and "USDT-FUTURES" not in updates
        await until(lambda: updates.count("USDT-FUTURES") >= 3)  # it ends, and reading goes on


async def test_a_failing_subscriber_does_not_starve_the_others_and_one_that_left_hears_nothing(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    feed = make_feed(sim)
    feed.watch(["USDT-FUTURES"])
    heard: list[str] = []
    left: list[str] = []

    def broken(name: str) -> None:
        raise RuntimeError("a subscriber's bug")

    feed.subscribe(broken)
    feed.subscribe(heard.append)
    unsubscribe = feed.subscribe(left.append)
    unsubscribe()
    async with running(feed):
        await until(lambda: heard.count("USDT-FUTURES") >= 3)
    assert left == [] and caplog.text.count("a subscriber failed on") == 1
