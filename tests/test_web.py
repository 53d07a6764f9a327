"""The status page, the JSON API, health and metrics, on aiohttp's test client over a service that has read
the simulator for real."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.cli import main
from monitor.poller.state import ACCOUNT_STATUSES
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from tests.conftest import Sim, SimFactory
from tests.launch import running

EVIL = "<script>alert(1)</script>"


def accounts_file(sim: Sim, tmp_path: Path, web: str = "", rename: bool = True) -> Path:
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    text = path.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{tmp_path}/m.db"\n', 1)
    extra = (
        f'[web]\nlisten = "127.0.0.1:0"\n{web}\n[channels]\nops = ["json://hook-user:channel-pass-9@127.0.0.1:9/x"]\n'
    )
    text = text.replace("[[accounts]]", extra + "[[accounts]]", 1)
    if rename:
        text = text.replace('name = "sim-001"', f'name = "{EVIL}"', 1)
    path.write_text(text)
    return path


@pytest.fixture
async def served(make_sim: SimFactory, tmp_path: Path) -> AsyncIterator[Any]:
    """`run` on the simulator's accounts, entered once it has read and judged every account, and a client for the
    pages it serves. Routine reads come once an hour (the first at once), so a test sees these first reads."""

    async def start(accounts: int = 12, web: str = "", revoke: str | None = None) -> tuple[Any, Service, Sim]:
        sim = await make_sim(accounts=accounts)
        if revoke:
            await sim.control("POST", f"/_sim/accounts/{revoke}", {"revoked": True})
        path = accounts_file(sim, tmp_path, web)
        path.write_text(path.read_text().replace("[monitor]\n", '[monitor]\npoll_interval = "1h"\n', 1))
        service = await stack.enter_async_context(running(path, read_now=True))
        client = await stack.enter_async_context(aiohttp.ClientSession(base_url=service.web_url))
        return client, service, sim

    async with contextlib.AsyncExitStack() as stack:
        yield start


def secrets_of(sim: Sim) -> list[str]:
    found = ["channel-pass-9", "hook-user"]
    for account in sim.world.accounts.values():
        found += [account.api_key, account.passphrase] + ([account.secret] if account.secret else [])
    return found


async def test_the_overview_shows_totals_alerts_and_every_account_escaped(served: Any) -> None:
    client, service, sim = await served()
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('<tr class="status-') == 12
    assert "Equity" in html and "USDT" in html
    firing = [a for a in service.engine.current.values() if a.state == "firing"]
    assert firing and firing[0].summary.split(":")[0] in html  # the generated world has positions near liquidation
    assert "/static/style.css" in html and "http://" not in html.replace(sim.url, "") and "https://" not in html
    for secret in secrets_of(sim):
        assert secret not in html


async def test_the_overview_filters_sorts_and_pages(served: Any) -> None:
    client, _, _ = await served(accounts=130, revoke="sim-007")
    html = await (await client.get("/")).text()
    assert html.count('<tr class="status-') == 100 and "page 1 of 2" in html
    rows = re.findall(r'<tr class="status-(\w+)">', html)
    ranks = [ACCOUNT_STATUSES.index(r) for r in rows]
    assert ranks == sorted(ranks) and rows[0] in ("liquidation", "critical")  # worst first: risk, then data health
    html = await (await client.get("/?page=2")).text()
    assert html.count('<tr class="status-') == 30
    html = await (await client.get("/?status=unreachable")).text()
    assert html.count('<tr class="status-') == 1 and "sim-007" in html and "40037" in html
    html = await (await client.get("/?tag=rsa&sort=equity&dir=desc")).text()
    rows = re.findall(r'<tr class="status-\w+">(.*?)</tr>', html, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    equities = [float(c[2].replace(",", "")) for c in cells if c[2] != "–"]
    assert equities == sorted(equities, reverse=True) and len(equities) > 1


async def test_the_account_page_shows_positions_balances_chart_and_alerts(served: Any) -> None:
    client, service, _ = await served()
    await service.writer.flush(5)
    name = next(s.name for s in service.poller.active() if s.snapshot and s.snapshot.positions)  # type: ignore[union-attr]
    response = await client.get(f"/accounts/{name}?range=7d")
    html = await response.text()
    assert response.status == 200
    assert 'class="bar' in html and "Balances" in html and "Deliveries" in html and 'aria-current="page">7d' in html
    assert (await client.get("/accounts/nobody")).status == 404
    overview = await (await client.get("/")).text()
    link = re.search(r'href="(/accounts/%3Cscript[^"]*)"', overview)
    assert link and "%2F" in link.group(1)  # the "/" in the name stays inside one path segment
    evil = await client.get(link.group(1))
    assert evil.status == 200 and EVIL not in await evil.text()


async def test_the_api_carries_the_same_numbers_with_decimals_as_strings(served: Any) -> None:
    client, service, sim = await served()
    body = await (await client.get("/api/v1/status")).json()
    assert len(body["accounts"]) == 12
    row = next(a for a in body["accounts"] if a["name"] == "sim-002")
    state = service.poller.accounts["sim-002"]  # type: ignore[union-attr]
    assert state.snapshot is not None and row["equity"] == format(state.snapshot.equity_usdt, "f")
    assert isinstance(body["totals"]["equity_usdt"], str) and body["alerts"]
    detail = await (await client.get("/api/v1/accounts/sim-002")).json()
    assert detail["equity"] == row["equity"] and isinstance(detail["positions"], list)
    text = await (await client.get("/api/v1/status")).text()
    for secret in secrets_of(sim):
        assert secret not in text


async def test_security_headers_on_every_answer(served: Any) -> None:
    client, _, _ = await served(accounts=2)
    for path in ("/", "/alerts", "/api/v1/status", "/healthz", "/nowhere", "/static/style.css"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]


async def test_with_a_token_everything_but_healthz_needs_it(served: Any) -> None:
    client, _, _ = await served(accounts=2, web='token = "s3cret-token-42"')
    assert (await client.get("/healthz")).status == 200
    page = await client.get("/alerts", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/login?next=/alerts"
    for path in ("/api/v1/status", "/metrics", "/readyz"):
        assert (await client.get(path)).status == 401, path
    assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer wrong"})).status == 401
    ok = await client.get("/api/v1/status", headers={"Authorization": "Bearer s3cret-token-42"})
    assert ok.status == 200
    wrong = await client.post("/login", data={"token": "nope", "next": "/alerts"}, allow_redirects=False)
    assert wrong.status == 401
    login = await client.post("/login", data={"token": "s3cret-token-42", "next": "/alerts"}, allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "/alerts"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    assert "s3cret-token-42" not in cookie
    value = login.cookies["bm_session"].value
    page = await client.get("/alerts", headers={"Cookie": f"bm_session={value}"}, allow_redirects=False)
    assert page.status == 200
    outside = await client.post("/login", data={"token": "s3cret-token-42", "next": "//evil.example"},
                                allow_redirects=False)  # fmt: skip
    assert outside.headers["Location"] == "/"


async def test_every_page_declares_an_icon_and_favicon_ico_answers_without_signing_in(served: Any) -> None:
    import re

    client, _, _ = await served(accounts=1, web='token = "s3cret-token-42"')
    for path in ("/login", "/favicon.ico"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 200, path
        if path == "/login":
            (icon,) = re.findall(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', await response.text())
            response = await client.get(icon)
            assert response.status == 200
        assert response.content_type == "image/svg+xml", path
        assert (await response.text()).startswith("<svg "), path
    signed_in = {"Authorization": "Bearer s3cret-token-42"}
    for page in ("/", "/alerts"):
        assert '<link rel="icon" ' in await (await client.get(page, headers=signed_in)).text(), page


async def test_metrics_follow_their_setting_and_parse_with_the_client_library(served: Any) -> None:
    client, _, sim = await served(web='token = "t0ken-abc"\nmetrics_public = true', revoke="sim-003")
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    equity = {s.labels["account"]: s.value for s in families["bitget_monitor_account_equity_usdt"].samples}
    assert len(equity) == 11 and EVIL in equity  # label values are escaped by the library, not by us
    errors = {s.labels["code"]: s.value for s in families["bitget_monitor_poll_errors"].samples}
    assert errors == {"40037": 1.0}
    assert families["bitget_monitor_requests"].samples[0].value > 20
    states = {(s.labels["state"], s.labels["severity"]) for s in families["bitget_monitor_alerts"].samples}
    assert ("firing", "critical") in states
    assert {s.labels["status"] for s in families["bitget_monitor_outbox_messages"].samples} >= {"queued", "sent"}
    assert families["bitget_monitor_outbox_failing_messages"].samples[0].value >= 0
    for secret in [*secrets_of(sim), "t0ken-abc"]:
        assert secret not in text


async def test_readyz_fails_when_too_few_accounts_are_fresh(served: Any) -> None:
    client, _, _ = await served(accounts=4, web="ready_fresh_share = 1.0", revoke="sim-002")
    response = await client.get("/readyz")
    body = await response.json()
    checks = {
        "database": True,
        "poller": True,  # running: only the accounts fail it
        "fresh_accounts": False,
        "leases": True,
        "outbox_written": True,
        "market_feed": True,
        "config": True,  # the file as loaded at start: no reload rejected
    }
    assert response.status == 503 and body["checks"] == checks
    assert (await client.get("/healthz")).status == 200


def test_run_refuses_a_public_address_without_a_token(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[web]\nlisten = "0.0.0.0:0"\n[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\n'
                    'passphrase = "p"\n')  # fmt: skip
    assert main(["run", "-c", str(path)]) == 2
    error = capsys.readouterr().err
    assert "0.0.0.0:0 is not a loopback address and [web] has no token" in error
    assert "--allow-public-without-auth" in error


async def test_the_demo_serves_the_page_prints_alerts_on_the_console_and_stops_on_ctrl_c() -> None:
    import asyncio
    import signal
    import sys

    import aiohttp

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "demo", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        url = re.search(r"status page on (http://127\.0\.0\.1:\d+)", line)
        assert url, line
        console = ""
        while "=== [CRITICAL]" not in console:
            console += (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        async with aiohttp.ClientSession() as session, session.get(url.group(1) + "/api/v1/status") as response:
            body = await response.json()
        assert len(body["accounts"]) == 12 and body["alerts"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()


async def test_without_a_token_only_loopback_names_are_answered(served: Any) -> None:
    client, _, _ = await served(accounts=2)
    assert (await client.get("/api/v1/status", headers={"Host": "attacker.example"})).status == 421
    assert (await client.get("/", headers={"Host": "localhost:8080"})).status == 200
    assert (await client.get("/healthz", headers={"Host": "monitor"})).status == 200
    assert (await client.get("/login")).status == 404  # nothing to sign in to


async def test_a_new_token_applies_on_reload(served: Any) -> None:
    client, service, _ = await served(accounts=2, web='token = "first-token"')
    assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer first-token"})).status == 200
    path = service.config_path
    path.write_text(path.read_text().replace('token = "first-token"', 'token = "second-token"'))
    assert await service.reload()
    assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer first-token"})).status == 401
    assert (await client.get("/api/v1/status", headers={"Authorization": "Bearer second-token"})).status == 200
