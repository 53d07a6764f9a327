"""`run` against the simulator, its pages loaded in headless Chromium: the rendered DOM, no request off the
machine, the refresh script running under the CSP, and a screenshot."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from tests.conftest import SimFactory
from tests.test_alerts_e2e import until
from tests.test_web import EVIL, accounts_file

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium (.ci/run installs it)"
)
# Chromium's own background services (updates, time, sign-in): not the page. The resolver rule below sends
# them nowhere; the page's requests are checked separately.
BROWSER_SERVICES = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com)/")


async def chromium(tmp_path: Path, url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0
    return out.decode()


async def test_the_pages_render_in_chromium_from_the_machine_alone(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=12)
    path = accounts_file(sim, tmp_path, web='listen = "127.0.0.1:0"')
    service = Service(path, load_config(path, env={}), SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: service.web_url is not None and service.poller is not None
                    and all(s.polls for s in service.poller.accounts.values()), timeout=30)  # fmt: skip
        await until(lambda: bool(service.engine.firing()), timeout=15)
        base = service.web_url
        assert base is not None
        netlog = tmp_path / "net.json"
        dom = await chromium(tmp_path, base + "/", f"--log-net-log={netlog}", "--virtual-time-budget=20000",
                             "--dump-dom")  # fmt: skip
        # the DOM: every account, the firing alerts, the evil name as text, the refresh script ran (CSP allows it)
        assert dom.count('<tr class="status-') == 12
        assert 'class="alerts"' in dom and "CRITICAL" in dom
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and EVIL not in dom
        assert re.search(r'<html lang="en" data-refreshed="\d+"', dom)
        # nothing but this machine: the page's references, and every request the browser logged
        assert not re.search(r'(src|href)="(https?:)?//(?!127\.0\.0\.1)', dom)
        urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text()))
        page = {u for u in urls if u.startswith(base)}
        assert {base + "/", base + "/static/style.css"} <= {u.split("?")[0] for u in page}
        assert all(BROWSER_SERVICES.match(u) for u in urls - page), urls - page
        account = await chromium(tmp_path, base + "/accounts/sim-002", "--dump-dom")
        assert "<h1>sim-002" in account and "Positions" in account and "Balances" in account
        screenshot = tmp_path / "overview.png"
        await chromium(tmp_path, base + "/", f"--screenshot={screenshot}", "--window-size=390,1400")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
