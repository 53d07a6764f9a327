"""The poller against the simulator: faults stay with their account, budgets hold, reloads and signals work."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.poller.scheduler import BATCH, Poller, batched
from monitor.poller.state import Status
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from tests import stored as readback
from tests.conftest import Sim, SimFactory
from tests.launch import running


def _config(sim: Sim, tmp_path: Path, url: str | None = None, **monitor: str) -> Config:
    """An accounts file for the simulator's accounts (reached at `url`, the simulator's own by default), with
    [monitor] settings given as TOML strings."""
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, url or sim.url)
    settings = {"database_url": f"sqlite:///{tmp_path}/m.db", **monitor}
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    text = path.read_text().replace("[monitor]\n", f"[monitor]\n{lines}", 1)
    path.write_text(text.replace("[[accounts]]", '[web]\nlisten = "127.0.0.1:0"\n[[accounts]]', 1))
    return load_config(path, env={})


async def test_a_bad_signature_and_a_revoked_key_leave_twenty_others_fresh(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=22)
    config = _config(sim, tmp_path)
    sim.account("sim-001").secret = "0" * 64  # the key on Bitget no longer matches the configured secret
    await sim.control("POST", "/_sim/accounts/sim-004", {"revoked": True})
    poller = Poller(config, sim.session, SystemClock())
    outcomes = {o.account: o for o in await poller.cycle()}
    assert (outcomes["sim-001"].error_code, outcomes["sim-004"].error_code) == ("40009", "40037")
    assert all(o.ok for name, o in outcomes.items() if name not in ("sim-001", "sim-004"))
    status = poller.status()
    assert (status.ok, status.unreachable, status.stale) == (20, 2, 2)
    assert poller.accounts["sim-001"].status == Status.UNREACHABLE
    # demo, unified, RSA and coin-margined accounts are among the twenty
    ok = [sim.account(n) for n, o in outcomes.items() if o.ok]
    assert any(a.demo for a in ok) and any(a.unified for a in ok) and any(a.secret is None for a in ok)


async def test_a_429_burst_is_absorbed_when_a_retry_succeeds(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=4)
    config = _config(sim, tmp_path)
    await sim.control("POST", "/_sim/faults", {"kind": "429", "account": "sim-002", "count": 2})
    await sim.control("POST", "/_sim/faults", {"kind": "40725", "account": "sim-003", "count": 1})
    outcomes = await Poller(config, sim.session, SystemClock()).cycle()
    assert all(o.ok for o in outcomes)
    assert sum(n for (account, _), n in sim.sim.rate_limited.items() if account == "sim-002") == 2


async def test_malformed_and_truncated_bodies_are_reported_for_their_account_only(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=6)
    config = _config(sim, tmp_path)
    await sim.control("POST", "/_sim/faults", {"kind": "malformed", "account": "sim-002", "count": 50})
    await sim.control("POST", "/_sim/faults", {"kind": "truncated", "account": "sim-003", "count": 50})
    poller = Poller(config, sim.session, SystemClock())
    outcomes = {o.account: o for o in await poller.cycle()}
    assert outcomes["sim-002"].error_code == "MalformedResponse" and "not Bitget JSON" in str(
        outcomes["sim-002"].error_message
    )
    assert outcomes["sim-003"].error_code == "MalformedResponse" and "truncated" in str(
        outcomes["sim-003"].error_message
    )
    assert poller.accounts["sim-002"].status == Status.FAILING  # transient: retried at the normal cadence
    assert all(o.ok for n, o in outcomes.items() if n not in ("sim-002", "sim-003"))


async def test_clock_skew_over_30_seconds_is_corrected(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=5)
    await sim.control("POST", "/_sim/clock", {"offset_ms": -50_000})
    outcomes = await Poller(_config(sim, tmp_path), sim.session, SystemClock()).cycle()
    assert all(o.ok for o in outcomes)
    assert sum(n for (_, code), n in sim.sim.rejected.items() if code == "40008") == 0  # measured before signing


async def test_many_accounts_under_a_small_ip_budget_see_no_429(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=200, ip_per_minute=100, ip_window=1.0, lockout=30)
    config = _config(sim, tmp_path, ip_budget="100/s", ip_lockout="5s")
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = await Poller(config, sim.session, SystemClock()).cycle()
    elapsed = loop.time() - started
    assert all(o.ok for o in outcomes), [o.error_message for o in outcomes if not o.ok][:3]
    assert sum(sim.sim.rate_limited.values()) == 0 and sim.sim.ip_limiter.lockouts == 0
    total = sum(sim.sim.requests.values())
    print(f"{total} requests in {elapsed:.1f} s: {total / elapsed:.0f}/s against a budget of 100/s")


async def test_the_ip_budget_is_spent_evenly_from_the_start(make_sim: SimFactory, tmp_path: Path) -> None:
    """A process cannot know what its IP spent before it started (its own run before a crash, say), so it
    comes up at the budget's steady rate; and with more to read than the budget allows, it spreads requests
    evenly instead of spending a minute's budget in the first second."""
    sim = await make_sim(accounts=40, ip_per_minute=1200, lockout=30)  # Bitget's one-minute window
    config = _config(sim, tmp_path, ip_budget="1200/min")
    outcomes = await Poller(config, sim.session, SystemClock()).cycle()
    assert all(o.ok for o in outcomes), [o.error_message for o in outcomes if not o.ok][:3]
    steady = 1200 * 0.97 / 60  # per second
    total = sum(sim.sim.requests.values())
    # two seconds' worth at the steady rate, plus what built up while the poller started (without pacing and
    # the assumed earlier use, the whole cycle goes out in the first two seconds: over 200 requests)
    assert total > 150 and sim.sim.ip_limiter.busiest("127.0.0.1", 2.0) <= 4 * steady


async def test_arrival_jitter_does_not_push_a_budget_past_the_limit(
    make_sim: SimFactory, tmp_path: Path, aiohttp_server: Any
) -> None:
    """Requests sent far enough apart can arrive closer together: here the first ones are slow to get there
    (think of new connections) and the later ones are not. Bitget still never sees more than its limit."""
    sim = await make_sim(accounts=40, ip_per_minute=50, ip_window=1.0, lockout=30)
    forwarded = 0

    async def forward(request: web.Request) -> web.Response:
        nonlocal forwarded
        forwarded += 1
        if forwarded <= 60:
            await asyncio.sleep(0.8)
        async with sim.session.get(sim.url + request.path_qs, headers=request.headers) as answer:
            body = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-")}
            return web.Response(status=answer.status, body=body, headers=headers, content_type=answer.content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    proxy = await aiohttp_server(app)
    config = _config(sim, tmp_path, str(proxy.make_url("")).rstrip("/"), ip_budget="50/s")
    outcomes = await Poller(config, sim.session, SystemClock()).cycle()
    assert all(o.ok for o in outcomes), [o.error_message for o in outcomes if not o.ok][:3]
    assert sum(sim.sim.rate_limited.values()) == 0 and sim.sim.ip_limiter.lockouts == 0


async def test_an_account_at_risk_is_re_read_at_the_risk_interval(
    make_sim: SimFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.poller.poll")
    sim = await make_sim(accounts=6)
    config = _config(sim, tmp_path, poll_interval="60s", risk_poll_interval="300ms")
    poller = Poller(config, sim.session, SystemClock())
    await poller.cycle()
    risky = [s.name for s in poller.accounts.values() if s.at_risk]
    assert risky == ["sim-002"]
    assert "sim-002: at risk: re-read every 0.3 s" in caplog.messages  # for people, not "0:00:00.300000"
    poller.start(stagger=False)
    await asyncio.sleep(1.5)
    await poller.stop()
    polls = {name: s.polls for name, s in poller.accounts.items()}
    assert 4 <= polls["sim-002"] <= 8  # one read, then one every 0.3 s (start to start) for 1.5 s: never more
    assert all(n == 2 for name, n in polls.items() if name != "sim-002")
    risk_reads = sim.sim.requests[("sim-002", "/api/v2/spot/account/assets")]
    assert risk_reads == 1  # only the first, full read: risk polls read positions and account, not spot


async def test_an_ip_lock_out_pauses_everything_and_busy_accounts_do_not(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=6, ip_per_minute=1000, ip_window=1.0, lockout=60)
    config = _config(sim, tmp_path, ip_lockout="60s")
    poller = Poller(config, sim.session, SystemClock())
    await poller.cycle()
    # Busy accounts: 429s for four accounts, but the IP is fine. Nothing pauses.
    for name in ("sim-001", "sim-002", "sim-003", "sim-004"):
        await sim.control("POST", "/_sim/faults", {"kind": "429", "account": name, "count": 1})
    await poller.cycle()
    assert poller.ip_budget.window.paused_for == 0 and poller.ip_budget.lockouts == 0
    # A real lock-out: the IP is over its budget and every answer is a 429. The poller notices, confirms it on
    # an IP-only endpoint, and stops asking until the lock-out is over.
    await sim.control("POST", "/_sim/limits", {"ip_per_minute": 1})
    task = asyncio.create_task(poller.cycle())
    for _ in range(50):
        await asyncio.sleep(0.1)
        if poller.ip_budget.lockouts:
            break
    assert poller.ip_budget.lockouts == 1 and poller.ip_budget.window.paused_for > 50
    await asyncio.sleep(0.3)
    asked = sum(sim.sim.rate_limited.values())
    await asyncio.sleep(1)
    assert sum(sim.sim.rate_limited.values()) == asked  # paused: not one more request
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_reload_adds_removes_and_rejects_bad_files(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=5)
    path = _config(sim, tmp_path, poll_interval="500ms").path
    original = path.read_text()
    # start with four accounts: sim-005 is added by the reload
    blocks = original.split("[[accounts]]")
    path.write_text("[[accounts]]".join(blocks[:5]))
    async with running(path) as service:
        assert service.poller is not None and set(service.poller.accounts) == {f"sim-00{i}" for i in range(1, 5)}
        # valid: sim-001 removed, sim-005 added; delivered by SIGHUP
        path.write_text(blocks[0] + "[[accounts]]" + "[[accounts]]".join(blocks[2:]))
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(1.2)
        assert set(service.poller.accounts) == {f"sim-00{i}" for i in range(2, 6)}
        assert service.poller.accounts["sim-005"].status == Status.OK
        # invalid: rejected, the running set stays; noticed by the file watch
        path.write_text(path.read_text() + "\n[[accounts]]\nname = 1\n")
        await asyncio.sleep(2.5)
        assert set(service.poller.accounts) == {f"sim-00{i}" for i in range(2, 6)}
        assert all(s.status == Status.OK for s in service.poller.accounts.values()), {
            n: (s.status, s.error_message) for n, s in service.poller.accounts.items()
        }


async def test_run_stops_cleanly_on_sigterm_mid_cycle_and_keeps_what_it_read(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=8)
    config = _config(sim, tmp_path, poll_interval="1s")
    await sim.control("POST", "/_sim/faults", {"kind": "slow", "account": "sim-003", "delay": 30, "count": 100})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "-c", str(config.path), stderr=asyncio.subprocess.PIPE
    )
    try:
        others = {f"sim-00{i}" for i in range(1, 9)} - {"sim-003"}

        async def read_twice() -> bool:  # an endpoint asked twice: the account's first read is complete
            requests = (await sim.control("GET", "/_sim/stats"))["requests"]
            return all(name in requests and max(requests[name].values()) >= 2 for name in others)

        for _ in range(600):  # a loaded machine takes seconds just to start the process
            if await read_twice():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the accounts were not read within a minute")
        process.send_signal(signal.SIGTERM)  # sim-003 is still stuck in a slow request
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, err = await asyncio.wait_for(process.communicate(), timeout=15)
        assert process.returncode == 0, err.decode()[-2000:]
        assert loop.time() - started < 10
    finally:
        if process.returncode is None:
            process.kill()
    from monitor.store.repository import Store

    store = Store(config.monitor.database_url.reveal())
    try:
        latest = await asyncio.to_thread(readback.latest, store)
    finally:
        store.close()
    assert set(latest) == others
    assert "Traceback" not in err.decode()


async def test_once_prints_json_and_exits_1_when_an_account_fails(make_sim: SimFactory, tmp_path: Path) -> None:
    import json

    sim = await make_sim(accounts=4)
    config = _config(sim, tmp_path)
    await sim.control("POST", "/_sim/accounts/sim-002", {"revoked": True})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "once", "--json", "-c", str(config.path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1, err.decode()
    report = json.loads(out)
    by_name = {a["name"]: a for a in report["accounts"]}
    assert by_name["sim-002"]["error"]["code"] == "40037" and by_name["sim-002"]["ok"] is False
    ok = by_name["sim-003"]
    assert ok["ok"] and isinstance(ok["equity_usdt"], str) and ok["positions"]
    position = ok["positions"][0]
    assert set(position) == {"symbol", "product_type", "side", "size", "mark_price", "liquidation_price",
                             "liquidation_distance_pct", "unrealized_pnl", "margin_mode"}  # fmt: skip
    assert all(isinstance(v, str) or v is None for v in position.values())
    unreachable = [a for a in report["alerts"] if a["rule"] == "unreachable"]
    assert unreachable == [{"rule": "unreachable", "type": "unreachable", "account": "sim-002", "subject": "",
                            "severity": "critical", "value": "0", "summary": unreachable[0]["summary"],
                            "state": "firing"}]  # fmt: skip
    assert unreachable[0]["summary"].startswith("cannot be read: Bitget error 40037")
    assert all(a["severity"] in ("warning", "critical") for a in report["alerts"])


async def test_two_pollers_share_the_accounts_and_one_takes_over_when_the_other_stops(
    make_sim: SimFactory, tmp_path: Path, db_url: str
) -> None:
    if db_url.startswith("sqlite"):
        return  # SQLite means one process: sharing is a PostgreSQL feature
    sim = await make_sim(accounts=12)
    path = _config(sim, tmp_path, poll_interval="1s", lease_ttl="1500ms").path
    path.write_text(path.read_text().replace(f"sqlite:///{tmp_path}/m.db", db_url))
    services = [Service(path, load_config(path, env={}), SystemClock()) for _ in range(2)]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(s.run(stop)) for s, stop in zip(services, stops, strict=True)]
    try:
        for _ in range(100):  # both migrate (one at a time), then split the accounts within a few renewals
            await asyncio.sleep(0.2)
            owned = [s.poller.owned if s.poller else None for s in services]
            if owned[0] and owned[1] and len(owned[0]) == len(owned[1]) == 6:
                break
        assert owned[0] is not None and owned[1] is not None
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {f"sim-{i:03d}" for i in range(1, 13)}
        assert len(owned[0]) == len(owned[1]) == 6
        stops[0].set()
        await asyncio.wait_for(tasks[0], timeout=10)
        await asyncio.sleep(2)
        assert services[1].poller is not None and services[1].poller.owned == owned[0] | owned[1]
        await asyncio.sleep(1.5)
        states = services[1].poller.accounts
        assert all(states[name].status == Status.OK for name in owned[0])  # now read by the survivor
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)


@pytest.mark.parametrize(
    ("seconds", "interval", "now", "expected"),
    [
        (29.3, 30.0, 1000.0, 29.0),  # due at 1029.3: the second boundary 1029
        (29.6, 30.0, 1000.0, 30.0),  # due at 1029.6: 1030
        (4.9, 30.0, 1000.25, 4.75),  # a risk re-read: to the boundary, not to the clock's fraction
        (0.2, 30.0, 1000.0, 0.0),  # due at the boundary now: at once, never in the past
        (0.0, 30.0, 1000.6, 0.0),  # already due (polling behind): at once, not at the next boundary
        (-2.0, 30.0, 1000.6, 0.0),
        (0.5, 1.5, 10.0, 0.5),  # a 1.5 s poll_interval: boundaries every 50 ms
        (0.52, 1.5, 10.0, 0.5),
    ],
)
def test_reads_falling_due_near_the_same_boundary_wake_together(
    seconds: float, interval: float, now: float, expected: float
) -> None:
    got = batched(seconds, interval, now)
    assert got == pytest.approx(expected)
    grid = min(BATCH, interval / 30)
    assert abs(got - max(seconds, 0.0)) <= grid / 2 + 1e-9  # a cadence keeps its average
