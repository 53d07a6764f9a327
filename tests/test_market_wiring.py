"""`run` with the market feed wired in, against the simulator: a mark crossing a level between account reads asks
for one confirming read and sends one message; a read that cannot confirm in time gives an estimated message;
a stale feed falls back to the account reads and says so; the feed, confirmations and routine reads share a
small per-IP budget without a 429."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.exchange.bitget import endpoints as ep
from monitor.rules.evaluate import ESTIMATED
from monitor.service import Service
from tests.conftest import SimFactory, Sink, until
from tests.launch import accounts_file, running
from tests.scenarios import LIQUIDATION_RULE, TWO_ACCOUNTS
from web.metrics import PREFIX


@asynccontextmanager
async def monitoring(
    make_sim: SimFactory, sink: Sink, tmp_path: Path, *, market: str = "", monitor: str = "", **sim_options: object
) -> AsyncIterator[tuple[Service, object]]:
    """`run` on the scenario's accounts: reads every 30 s (so only a confirming read can come within seconds),
    marks every 200 ms; every account read once before the test goes on."""
    sim = await make_sim(scenario=TWO_ACCOUNTS, **sim_options)
    head = f'[channels]\nops = ["{sink.url()}"]\n[market]\nmark_interval = "200ms"\n{market}\n{LIQUIDATION_RULE}'
    path = accounts_file(sim, tmp_path, f'poll_interval = "30s"\n{monitor}', head)
    async with running(path, read_now=True) as service:  # the first reads now, not spread over 30 s
        await until(lambda: "USDT-FUTURES" in service.market.feed.watched and not service.market.feed.stale)  # type: ignore[union-attr]
        yield service, sim


async def test_a_live_mark_crossing_a_level_triggers_one_confirming_read_and_one_message(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, sim):
        assert service.poller is not None and service.live is not None
        polls = service.poller.accounts["iso"].polls
        await asyncio.sleep(1.0)
        assert sink.received == [] and service.live.confirming.asked == 0  # 9.1 % from liquidation: fine
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
        await until(lambda: len(sink.received) >= 1, timeout=8)  # a routine read would take 30 s
        await asyncio.sleep(1.5)  # more marks: no second confirmation, no second message
        assert await _live_counts(service, sim) == (1, 0)  # confirming reads, estimated alerts, as /metrics says
        assert service.poller.accounts["iso"].polls >= polls + 1
        [title] = sink.titles()
        assert title.startswith("[CRITICAL] iso: BTCUSDT long: 2.2") and ESTIMATED not in title


async def test_a_confirming_read_that_fails_gives_a_message_estimated_from_the_mark(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path, market='confirm_timeout = "500ms"\n') as (service, sim):
        assert service.live is not None
        fault = {"kind": "500", "account": "iso", "endpoint": ep.ALL_POSITIONS.path, "count": 1000}
        await sim.control("POST", "/_sim/faults", fault)  # type: ignore[attr-defined]
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
        await until(lambda: len(sink.received) >= 1, timeout=8)
        [title] = sink.titles()
        assert title.startswith("[CRITICAL] iso: BTCUSDT long: 2.2") and title.endswith(ESTIMATED)
        assert (await _live_counts(service, sim))[1] == 1


async def test_a_stale_feed_falls_back_to_the_account_reads_and_says_so_in_readyz_and_metrics(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, sim):
        assert service.market is not None and service.web_url is not None
        session = sim.session  # type: ignore[attr-defined]
        await until(lambda: service.market.mark("USDT-FUTURES", "BTCUSDT") is not None)  # type: ignore[union-attr]
        ready = await (await session.get(service.web_url + "/readyz")).json()
        assert ready["checks"]["market_feed"] is True
        await sim.control("POST", "/_sim/faults", {"kind": "500", "endpoint": ep.TICKERS.path, "count": 10_000})  # type: ignore[attr-defined]
        await until(lambda: "USDT-FUTURES" in service.market.feed.stale)  # type: ignore[union-attr]
        ready = await (await session.get(service.web_url + "/readyz")).json()
        assert ready["checks"]["market_feed"] is False and ready["ready"] is False
        metrics = await (await session.get(service.web_url + "/metrics")).text()
        assert 'bitget_monitor_market_feed_stale{product_type="USDT-FUTURES"} 1.0' in metrics
        # the positions as read: no live mark, the page's row says so
        assert service.market.mark("USDT-FUTURES", "BTCUSDT") is None
        [row] = [r for r in _rows(service) if r.name == "iso"]
        assert row.mark_age is None and row.age is not None


async def test_the_feed_confirmations_and_routine_reads_see_no_429_under_a_small_ip_budget(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(
        make_sim, sink, tmp_path, monitor='ip_budget = "40/s"\n', ip_per_minute=40, ip_window=1.0
    ) as (service, sim):
        assert service.live is not None
        for mark in ("96", "95", "93", "92"):  # at risk, warning, critical: a read each time
            await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": mark})  # type: ignore[attr-defined]
            await asyncio.sleep(1.0)
        assert service.live.confirming.asked >= 2
        stats = await sim.control("GET", "/_sim/stats")  # type: ignore[attr-defined]
        assert stats["totals"]["rate_limited"] == 0 and stats["totals"]["ip_lockouts"] == 0
        assert stats["requests"]["-"][ep.TICKERS.path] >= 10


async def _live_counts(service: Service, sim: object) -> tuple[float, float]:
    """bitget_monitor_confirming_reads_total and bitget_monitor_estimated_alerts_total from /metrics."""
    session = sim.session  # type: ignore[attr-defined]
    text = await (await session.get(f"{service.web_url}/metrics")).text()
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return found[f"{PREFIX}confirming_reads_total"], found[f"{PREFIX}estimated_alerts_total"]


def _rows(service: Service) -> list:  # type: ignore[type-arg]
    from monitor.readmodel import ServiceReader

    return ServiceReader(service).rows()


async def test_a_mark_beyond_the_liquidation_price_is_critical_at_once_without_waiting_for_the_read(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path, market='confirm_timeout = "1m"\n') as (service, sim):
        assert service.live is not None
        slow = {"kind": "slow", "account": "iso", "endpoint": ep.ALL_POSITIONS.path, "delay": 30, "count": 1000}
        await sim.control("POST", "/_sim/faults", slow)  # type: ignore[attr-defined]
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "90.5"})  # type: ignore[attr-defined]
        await until(lambda: len(sink.received) >= 1, timeout=8)  # the read hangs, the timeout is a minute
        [title] = sink.titles()
        assert title.startswith("[CRITICAL] iso: BTCUSDT long: past liquidation") and title.endswith(ESTIMATED)
        assert service.live.confirming.asked == 1 and service.live.pending("iso")


async def test_a_mark_that_eases_a_position_resolves_nothing_until_the_account_is_read(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path, monitor='risk_poll_interval = "30s"\n') as (service, sim):
        assert service.poller is not None
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
        await until(lambda: len(sink.received) >= 1, timeout=8)
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "100"})  # type: ignore[attr-defined]
        await asyncio.sleep(2.0)  # ten marks at 9 % from liquidation, no read
        assert len(sink.received) == 1
        assert [a.severity for a in service.engine.firing()] == ["critical"]
        service.poller.read_now("iso")
        await until(lambda: len(sink.received) >= 2, timeout=8)
        assert sink.titles()[1].startswith("[RESOLVED] iso: BTCUSDT long: 9.")


async def test_marks_that_move_no_alert_do_not_judge_the_account_again(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, sim):
        assert service.poller is not None
        accounts = service.poller.accounts

        def polls() -> int:
            return sum(s.polls for s in accounts.values())

        await asyncio.sleep(0.5)  # the first marks after the reads
        judged, read = service.engine.judgements, polls()
        await asyncio.sleep(1.0)  # five marks, all at the price read
        # The reads (at most) and the engine's timer (at most once), not every mark.
        assert service.engine.judgements - judged <= polls() - read + len(accounts)
        # Marks moving iso's long closer to liquidation at each step, never past a level nor into the at-risk band
        # (6 %: the warning level plus its clear): it is calm, so not judged at each of them either.
        judged, read = service.engine.judgements, polls()
        for mark in ("99", "98.5", "98", "97.5", "97"):  # 8.2 % ... 6.3 % from liquidation
            await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": mark})  # type: ignore[attr-defined]
            await asyncio.sleep(0.3)
        assert service.engine.judgements - judged <= polls() - read + len(accounts)
        assert sink.received == [] and service.live is not None and service.live.confirming.asked == 0
        # One into the warning band is judged at once (a confirming read, then the message).
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "95.5"})  # type: ignore[attr-defined]
        await until(lambda: len(sink.received) >= 1, timeout=8)
        assert sink.titles()[0].startswith("[WARNING] iso: BTCUSDT long: 4.")
        # Marks inside the warning band move no alert (easing waits for a read): not judged at each either.
        judged, read = service.engine.judgements, polls()
        for mark in ("95.4", "95.3", "95.2", "95.1"):  # 4.7 % ... 4.4 % from liquidation
            await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": mark})  # type: ignore[attr-defined]
            await asyncio.sleep(0.3)
        assert service.engine.judgements - judged <= polls() - read + len(accounts)
        assert len(sink.received) == 1


async def test_a_position_gone_is_judged_on_the_feeds_next_mark_without_a_tickers_request_of_its_own(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, _):
        assert service.market is not None and service.engine.marks is service.market
        answers: list[datetime] = []  # when each of the feed's USDT-futures answers was asked for
        service.market.subscribe(
            lambda name: answers.append(service.market.prices.latest(name).asked_at)  # type: ignore[union-attr]
            if name == "USDT-FUTURES" else None
        )  # fmt: skip
        await until(lambda: len(answers) >= 2)
        read_ended = service.clock.now()
        marks = await service.market.read("USDT-FUTURES", read_ended)
        # asked after the read ended (an older mark could predate a liquidation), and one of the feed's answers
        assert marks.asked_at >= read_ended and marks.asked_at in answers
        assert marks.mark("BTCUSDT") == 100
