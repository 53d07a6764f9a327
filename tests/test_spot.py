"""Spot balances of classic accounts read every spot_poll_interval and valued at the market feed's spot prices:
two signed requests per read of a spot + USDT-futures account, Bitget's own valuation only where the feed
cannot price a coin, and a transfer seen in the futures wallet reads the spot balances at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.clock import SystemClock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.market import MarkPrices
from monitor.exchange.bitget.ratelimit import IpBudget
from monitor.exchange.bitget.window import FEED
from monitor.market.feed import MarketFeed
from monitor.market.watch import MarketWatch
from monitor.poller.scheduler import Poller
from monitor.risk.odds import MarkHistory
from monitor.simulator import render
from monitor.simulator.market import SimAccount
from tests.conftest import Sim, SimFactory, until
from tests.test_poller import _config

CLOCK = SystemClock()
SIGNED = (ep.SPOT_ASSETS, ep.MIX_ACCOUNTS, ep.ALL_POSITIONS, ep.ALL_ACCOUNT_BALANCE, ep.ACCOUNT_INFO)


@pytest.fixture
async def feed(make_sim: SimFactory) -> AsyncIterator[tuple[Sim, MarketFeed]]:
    sim = await make_sim(accounts=12)
    prices = MarkPrices(sim.session, sim.url, IpBudget(6000, 60.0, CLOCK), CLOCK, priority=FEED)
    feed = MarketFeed(prices, CLOCK, mark_interval=0.5, spot_interval=0.5)
    task = asyncio.create_task(feed.run())
    await until(lambda: feed.spot_price("BTC") is not None)
    try:
        yield sim, feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _classic(sim: Sim, *, btc: bool) -> SimAccount:
    return sim.first(lambda a: not a.unified and a.products == ("spot", "USDT-FUTURES") and ("BTC" in a.spot) == btc)


def _signed(sim: Sim, name: str) -> dict[str, int]:
    return {e.path: n for e in SIGNED if (n := sim.sim.requests[(name, e.path)])}


def _bitget_spot_value(sim: Sim, account: SimAccount) -> Decimal:
    """What the simulator's all-account-balance answers for the account's spot, without asking it (1/s)."""
    (spot, *_) = render.all_account_balance(sim.world.market, account)
    return Decimal(spot["usdtBalance"])


async def test_a_classic_spot_and_futures_account_costs_two_signed_requests_a_read_valued_as_bitget_does(
    feed: tuple[Sim, MarketFeed], tmp_path: Path
) -> None:
    sim, market = feed
    account = _classic(sim, btc=True)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="1h"), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    for _ in range(10):
        assert (await poller.poll(state)).ok
    # The first read: key, spot, futures account, positions; then futures account and positions only.
    assert _signed(sim, account.name) == {
        ep.ACCOUNT_INFO.path: 1, ep.SPOT_ASSETS.path: 1, ep.MIX_ACCOUNTS.path: 10, ep.ALL_POSITIONS.path: 10
    }  # fmt: skip
    assert state.snapshot is not None and state.snapshot.spot_usdt == _bitget_spot_value(sim, account)
    # The feed's BTC price moves: the spot value follows it without another spot read.
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "61000"})
    await until(lambda: market.spot_price("BTC") == 61000)
    await poller.poll(state)
    assert state.snapshot.spot_usdt == _bitget_spot_value(sim, account)
    assert sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 1


async def test_spot_balances_are_read_again_every_spot_poll_interval(
    feed: tuple[Sim, MarketFeed], tmp_path: Path
) -> None:
    sim, market = feed
    account = _classic(sim, btc=False)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="300ms"), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    await poller.poll(state)
    await poller.poll(state)
    assert sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 1
    await asyncio.sleep(0.35)
    await poller.poll(state)
    assert sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 2


@pytest.mark.parametrize("with_a_trade", [False, True], ids=["transfer", "transfer and a trade"])
async def test_a_transfer_seen_in_the_futures_wallet_reads_the_spot_balances_in_the_same_poll(
    feed: tuple[Sim, MarketFeed], tmp_path: Path, with_a_trade: bool
) -> None:
    sim, market = feed
    account = _classic(sim, btc=False)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="1h"), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    await poller.poll(state)
    await poller.poll(state)
    before = state.snapshot
    assert before is not None and sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 1
    # 100 USDT moves from spot to the futures wallet, as a transfer on Bitget does.
    account.spot["USDT"] -= 100
    account.wallets[("USDT-FUTURES", "USDT")] += 100
    if with_a_trade:  # the trader moves funds to add to a position, in the same 30 s
        account.positions[0] = dataclasses.replace(account.positions[0], size=account.positions[0].size * 2)
    await poller.poll(state)
    after = state.snapshot
    assert after is not None and sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 2
    assert after.spot_usdt == before.spot_usdt - 100
    if not with_a_trade:
        assert after.equity_usdt == before.equity_usdt
    await poller.poll(state)  # the wallet is steady again: no more spot reads
    assert sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == 2


@pytest.mark.parametrize("read", ["risk", "confirming"])
async def test_a_failing_spot_request_never_fails_a_risk_or_confirming_read(
    feed: tuple[Sim, MarketFeed], tmp_path: Path, read: str
) -> None:
    """Spot coins are no collateral for classic futures: a quick read takes them as last read, so a spot
    request cannot delay or lose the read of a position near liquidation (funding moved the wallet here)."""
    sim, market = feed
    account = _classic(sim, btc=False)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="1s"), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    first = await poller.poll(state)
    assert first.ok and first.snapshot is not None
    account.wallets[("USDT-FUTURES", "USDT")] -= 1  # funding paid
    await sim.control("POST", "/_sim/faults", {"kind": "500", "account": account.name,
                                               "endpoint": ep.SPOT_ASSETS.path, "count": 1000})  # fmt: skip
    await asyncio.sleep(1.1)  # the spot balances are due too
    spot_reads = sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)]
    out = await poller.poll(state, risk_only=read == "risk", confirming=read == "confirming")
    assert out.ok and out.snapshot is not None and sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] == spot_reads
    assert out.snapshot.spot_usdt == first.snapshot.spot_usdt  # as last read
    routine = await poller.poll(state)  # the next routine read tries spot, fails, keeps the futures read
    assert routine.ok and sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)] > spot_reads


async def test_a_coin_the_feed_cannot_price_is_valued_by_bitget_once_per_spot_read(
    feed: tuple[Sim, MarketFeed], tmp_path: Path
) -> None:
    sim, market = feed
    account = _classic(sim, btc=True)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="1h"), sim.session, CLOCK)
    poller.spot_prices = lambda coin: None if coin == "BTC" else market.spot_price(coin)  # no BTCUSDT pair
    state = poller.accounts[account.name]
    for _ in range(3):
        await poller.poll(state)
    assert sim.sim.requests[(account.name, ep.ALL_ACCOUNT_BALANCE.path)] == 1
    assert state.snapshot is not None and state.snapshot.spot_usdt == _bitget_spot_value(sim, account)


async def test_without_a_feed_bitget_values_the_spot_coins_at_every_read(sim: Sim, tmp_path: Path) -> None:
    poller = Poller(_config(sim, tmp_path), sim.session, CLOCK)  # `once` and `check` have no feed
    account = _classic(sim, btc=True)
    state = poller.accounts[account.name]
    await poller.poll(state)
    assert state.snapshot is not None and state.snapshot.spot_usdt == _bitget_spot_value(sim, account)
    assert sim.sim.requests[(account.name, ep.ALL_ACCOUNT_BALANCE.path)] == 1


async def test_a_unified_account_reads_its_coins_with_its_account_and_never_the_spot_endpoints(
    feed: tuple[Sim, MarketFeed], tmp_path: Path
) -> None:
    sim, market = feed
    account = sim.first(lambda a: a.unified and "spot" in a.products)
    poller = Poller(_config(sim, tmp_path), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    for _ in range(4):
        assert (await poller.poll(state)).ok
    assert not sim.sim.requests[(account.name, ep.SPOT_ASSETS.path)]
    assert not sim.sim.requests[(account.name, ep.ALL_ACCOUNT_BALANCE.path)]
    assert sim.sim.requests[(account.name, ep.UNIFIED_ASSETS.path)] == 4
    assert sim.sim.requests[(account.name, ep.UNIFIED_POSITIONS.path)] == 4


async def test_coin_margined_equity_converts_to_usdt_at_the_feeds_spot_price(sim: Sim, tmp_path: Path) -> None:
    config = _config(sim, tmp_path)
    poller = Poller(config, sim.session, CLOCK)
    account = sim.first(lambda a: not a.unified and "COIN-FUTURES" in a.products)
    state = poller.accounts[account.name]
    await poller.poll(state)
    assert state.snapshot is not None
    [coin] = [f for f in state.snapshot.futures if f.product_type == "COIN-FUTURES"]
    assert coin.margin_coin == "BTC" and coin.usdt_equity == coin.equity * 60000  # as read
    market = MarketWatch(config, sim.session, poller.ip_budget, CLOCK, MarkHistory())
    task = asyncio.create_task(market.run())
    try:
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "62000"})
        await until(lambda: market.spot_price("BTC") == 62000)
        [live] = [f for f in market.live(state.snapshot).futures if f.product_type == "COIN-FUTURES"]
        assert live.usdt_equity == coin.equity * 62000 and live.equity == coin.equity
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_accounts_unrealized_pnl_and_equity_follow_its_positions_live_marks(sim: Sim, tmp_path: Path) -> None:
    """Between reads the page shows positions at the latest marks: the account's totals move with them (equity is
    wallet plus unrealized PnL), as the simulator's own next read says."""
    config = _config(sim, tmp_path)
    poller = Poller(config, sim.session, CLOCK)
    account = sim.first(
        lambda a: not a.unified and any(p.symbol == "BTCUSDT" and p.product_type == "USDT-FUTURES" for p in a.positions)
    )
    state = poller.accounts[account.name]
    await poller.poll(state)
    read = state.snapshot
    assert read is not None
    market = MarketWatch(config, sim.session, poller.ip_budget, CLOCK, MarkHistory())
    market.polled(account.name, read)
    task = asyncio.create_task(market.run())
    try:
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "62000"})
        await until(lambda: (m := market.mark("USDT-FUTURES", "BTCUSDT")) is not None and m.price == 62000)
        live = market.live(read)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(1.1)  # the simulator's per-second limits
    await poller.poll(state)
    fresh = state.snapshot
    assert fresh is not None

    def usdt_futures(snapshot: object) -> tuple[Decimal, Decimal]:
        [f] = [f for f in snapshot.futures if f.product_type == "USDT-FUTURES"]  # type: ignore[attr-defined]
        return f.equity, f.unrealized_pnl

    assert usdt_futures(live) != usdt_futures(read)  # it moved
    for now, then in zip(usdt_futures(live), usdt_futures(fresh), strict=True):
        assert abs(now - then) <= Decimal("0.00001")  # Bitget's 8 places, summed over the positions


async def test_a_quick_read_never_asks_bitget_to_value_coins_the_feed_stopped_pricing(
    feed: tuple[Sim, MarketFeed], tmp_path: Path
) -> None:
    sim, market = feed
    account = _classic(sim, btc=True)
    poller = Poller(_config(sim, tmp_path, spot_poll_interval="1h"), sim.session, CLOCK)
    poller.spot_prices = market.spot_price
    state = poller.accounts[account.name]
    assert (await poller.poll(state)).ok
    valuations = sim.sim.requests[(account.name, ep.ALL_ACCOUNT_BALANCE.path)]
    poller.spot_prices = lambda coin: None  # the spot feed went stale
    out = await poller.poll(state, confirming=True)
    assert out.ok and sim.sim.requests[(account.name, ep.ALL_ACCOUNT_BALANCE.path)] == valuations
    assert state.spot.due(0.0, 3600.0)  # the next routine read values them
