"""After a restart, an account that cannot be read shows the last read the database holds, marked stale: its
positions, balances and equity on the page, in the API and in the overview's total, and its unreachable alert
says what goes unwatched and what fixes it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import aiohttp

from monitor.alerts.model import State
from tests.conftest import SimFactory
from tests.launch import running, until
from tests.test_web import accounts_file


async def test_an_unreachable_account_shows_its_last_stored_read_after_a_restart(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=6)
    path = accounts_file(sim, tmp_path, rename=False)
    path.write_text(path.read_text().replace("[monitor]\n", '[monitor]\npoll_interval = "1h"\n', 1))
    async with running(path, read_now=True) as service:
        assert service.poller is not None
        read = {n: s.snapshot for n, s in service.poller.accounts.items() if s.snapshot is not None}
        name = next(n for n, s in sorted(read.items()) if len(s.positions) >= 2)
        before = read[name]
    symbols = sorted(p.symbol for p in before.positions)

    await sim.control("POST", f"/_sim/accounts/{name}", {"ips": ["192.0.2.7"]})  # the key lost this host's IP
    async with running(path, read_now=True) as service, aiohttp.ClientSession(base_url=service.web_url) as client:
        state = service.poller.accounts[name] if service.poller is not None else None
        assert state is not None and state.snapshot is None and state.error_code == "40018"

        async with client.get(f"/api/v1/accounts/{name}") as response:
            account = await response.json()
        assert (account["health"], account["restored"]) == ("unreachable", True)
        assert Decimal(account["equity"]) == before.equity_usdt
        assert sorted(p["symbol"] for p in account["positions"]) == symbols
        assert "add this host's public IP to the key on Bitget" in account["fix"]

        async with client.get("/api/v1/status") as response:
            status = await response.json()
        rows = {r["name"]: r for r in status["accounts"]}
        assert rows[name]["equity"] == account["equity"]
        assert Decimal(status["totals"]["equity_usdt"]) == sum(Decimal(r["equity"]) for r in rows.values())

        async with client.get("/") as response:
            overview = await response.text()
        assert ", before the restart" in overview

        async with client.get(f"/accounts/{name}") as response:
            page = await response.text()
        assert "before the restart" in page and "No open positions" not in page and "never" not in page
        assert all(symbol in page for symbol in symbols)

        key = f"unreachable|{name}|"
        await until(lambda: key in service.engine.current, 10)
        alert = service.engine.current[key]
        assert alert.state is State.FIRING
        assert f"{len(symbols)} open positions now unwatched" in alert.summary
        assert alert.summary.count("40018") == 1
        assert "fix: the key is bound to other IP addresses; add this host's public IP" in alert.summary
