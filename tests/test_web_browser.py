"""`run` against the simulator, its pages loaded in headless Chromium: the rendered DOM, no request off the
machine, the refresh script running under the CSP, and a screenshot."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from monitor.exchange.bitget import endpoints as ep
from tests.conftest import SimFactory, Sink, until
from tests.launch import running
from tests.test_market_wiring import monitoring
from tests.test_web import EVIL, accounts_file, served
from tests.test_web_odds import seed_walk

__all__ = ["served"]  # a fixture shared with tests.test_web

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
    path = accounts_file(sim, tmp_path)
    async with running(path, read_now=True) as service:  # not the 30 s a first cycle is spread over
        await until(lambda: bool(service.engine.firing()), timeout=15)
        base = service.web_url
        assert base is not None
        netlog = tmp_path / "net.json"
        dom = await chromium(tmp_path, base + "/", f"--log-net-log={netlog}", "--virtual-time-budget=20000",
                             "--dump-dom")  # fmt: skip
        # the DOM: every account, the firing alerts, the evil name as text, the refresh script ran (CSP allows it)
        assert dom.count('<tr class="status-') == 12
        assert 'class="alerts' in dom and "CRITICAL" in dom
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


# -- Playwright: the page as a trader sees it, on a desk and on a phone --------------------------------------------

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # the test extra is not installed
    async_playwright = None  # type: ignore[assignment]

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, never a downloaded one; its background services off, so nothing leaves the machine.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip
DESK, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: $MONITOR_SCREENSHOTS when set (to keep them as artifacts), else the test's
    temporary folder."""
    folder = Path(os.environ.get("MONITOR_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.skip("needs playwright for Python: pip install -e '.[test]'")
    if not DEBIAN_CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install chromium (.ci/run installs it)")
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(DEBIAN_CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def overflow(page: Page) -> int:
    """How far the page reaches past the viewport's right edge, in CSS pixels (0: nothing does)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


async def small_targets(page: Page) -> list[str]:
    """Visible links, buttons and fields shorter than 44 px (a finger's tap target)."""
    found = await page.evaluate(
        """() => [...document.querySelectorAll('a, button, input:not([type=hidden]), select')]
            .filter(e => e.offsetParent !== null && !e.closest('svg'))
            .filter(e => e.getBoundingClientRect().height < 44)
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    return list(found)


async def test_the_overview_and_an_account_page_fit_a_desk_and_a_phone(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    _, service, _ = await served()
    await service.writer.flush(5)
    base = service.web_url
    folder = screenshots(tmp_path)
    name = next(s.name for s in service.poller.active() if s.snapshot and s.snapshot.positions)
    taken = []
    for label, viewport in (("desk", DESK), ("phone", PHONE)):
        page = await browser.new_page(viewport=viewport)  # type: ignore[arg-type]
        await page.goto(base + "/")
        # risk first: the worst account heads the list and the header counts it
        first = await page.locator("table.accounts tbody tr").first.get_attribute("class")
        assert first in ("status-liquidation", "status-critical"), first
        assert await page.locator(".counts .badge.critical, .counts .badge.liquidation").count() >= 1
        taken.append(folder / f"overview-{label}.png")
        await page.screenshot(path=str(taken[-1]), full_page=True)
        if label == "phone":
            assert await overflow(page) <= 0
            assert await page.locator("table.accounts thead").is_hidden()  # stacked cards
            assert await small_targets(page) == []
        await page.goto(f"{base}/accounts/{quote(name, safe='')}")
        assert (await page.locator("h1").inner_text()).startswith(name)
        taken.append(folder / f"account-{label}.png")
        await page.screenshot(path=str(taken[-1]), full_page=True)
        if label == "phone":
            assert await overflow(page) <= 0
            assert await small_targets(page) == []
            assert await page.locator("main table:not(.cards)").count() == 0  # every table stacked, deliveries too
        await page.close()
    for shot in taken:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {shot}")


async def test_a_trader_sorts_filters_opens_an_account_and_switches_ranges(served: Any, browser: Browser) -> None:
    _, service, _ = await served()
    await service.writer.flush(5)
    base = service.web_url
    page = await browser.new_page(viewport=DESK)  # type: ignore[arg-type]
    await page.goto(base + "/")
    await page.get_by_role("link", name="Equity", exact=True).click()
    equities = await page.locator("table.accounts tbody td[data-label=Equity]").all_inner_texts()
    numbers = [Decimal(e.replace(",", "")) for e in equities if e != "–"]
    assert numbers == sorted(numbers) and len(numbers) > 1
    await page.fill("input[name=q]", "sim-00")
    await page.click("button:has-text('Filter')")
    names = await page.locator("table.accounts tbody td[data-label=Account] a").all_inner_texts()
    assert names and all("sim-00" in n for n in names)
    await page.locator("table.accounts tbody td[data-label=Account] a").first.click()
    assert "/accounts/" in page.url
    await page.get_by_role("link", name="7d", exact=True).click()
    assert await page.locator('.ranges a[aria-current="page"]').inner_text() == "7d"


async def test_a_trader_acknowledges_and_silences_an_alert_and_sees_it_on_the_page(
    served: Any, browser: Browser
) -> None:
    _, service, _ = await served()
    base = service.web_url
    page = await browser.new_page(viewport=DESK)  # type: ignore[arg-type]
    await page.goto(base + "/alerts")
    firing = page.locator("table.alerts tbody tr.state-firing")
    assert await firing.count() >= 2
    await firing.first.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url(base + "/alerts")
    assert "acknowledged by loopback user" in await page.locator("table.alerts").inner_text()
    acked = [a for a in service.engine.current.values() if a.acknowledged]
    assert len(acked) == 1 and acked[0].acknowledged_by and acked[0].acknowledged_by.startswith("loopback user")

    def stored() -> Any:
        return {a.key: a for a in service.store.alerts.load(service.clock.now())}.get(acked[0].key)

    await until(lambda: stored() is not None and stored().acknowledged_at == acked[0].acknowledged_at)  # in the db
    # silence the second one for an hour, with a reason
    row = firing.nth(1)
    await row.locator("summary").click()
    await row.locator("input[name=reason]").fill("rebalancing now")
    await row.locator("form.silence-form button").click()
    await page.wait_for_url(base + "/alerts")
    assert await page.locator("table.alerts .badge.silenced").count() >= 1
    silences = page.locator("table.silences tbody tr")
    assert await silences.count() == 1 and "rebalancing now" in await silences.inner_text()
    assert len(service.store.alerts.silences(service.clock.now())) == 1
    # and remove it again
    await silences.get_by_role("button").click()
    await page.wait_for_url(base + "/alerts")
    assert await page.locator("table.silences").count() == 0
    assert service.store.alerts.silences(service.clock.now()) == []


async def test_a_forged_post_without_the_csrf_token_is_refused(served: Any, browser: Browser) -> None:
    _, service, _ = await served()
    base = service.web_url
    page = await browser.new_page(viewport=DESK)  # type: ignore[arg-type]
    await page.goto(base + "/alerts")  # the browser holds the page's cookies, as a victim's would
    key = next(a.key for a in service.engine.current.values() if a.state == "firing")
    forged = await page.request.post(base + "/actions/acknowledge", form={"key": key, "back": "/alerts"})
    assert forged.status == 403 and "CSRF" in await forged.text()
    wrong = await page.request.post(base + "/actions/acknowledge", form={"key": key, "csrf": "0" * 64})
    assert wrong.status == 403
    silence = await page.request.post(
        base + "/actions/silence", form={"account": "*", "duration": "1h", "reason": "forged"}
    )
    assert silence.status == 403
    assert not any(a.acknowledged for a in service.engine.current.values())
    assert service.store.alerts.silences(service.clock.now()) == []


async def test_with_a_token_only_a_signed_in_browser_may_act(served: Any, browser: Browser) -> None:
    _, service, _ = await served(web='token = "a-long-page-token-1234"')
    base = service.web_url
    page = await browser.new_page(viewport=DESK)  # type: ignore[arg-type]
    anonymous = await page.request.post(base + "/actions/acknowledge", form={"key": "x"}, max_redirects=0)
    assert anonymous.status == 303 and "/login" in anonymous.headers["location"]
    await page.goto(base + "/alerts")
    assert "/login" in page.url
    await page.fill("input[name=token]", "a-long-page-token-1234")
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url(base + "/alerts")
    await page.locator("table.alerts tbody tr.state-firing").first.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url(base + "/alerts")
    assert "acknowledged by signed-in user" in await page.locator("table.alerts").inner_text()


async def test_the_odds_of_liquidation_show_on_a_desk_and_a_phone_without_overflow(
    served: Any, browser: Browser, tmp_path: Path
) -> None:
    _, service, _ = await served()
    seed_walk(service)
    base = service.web_url
    folder = screenshots(tmp_path)
    state = next(
        s for s in service.poller.active() if s.snapshot and any(p.liquidation_price for p in s.snapshot.positions)
    )
    priced = sum(1 for p in state.snapshot.positions if p.liquidation_price is not None)
    for label, viewport in (("desk", DESK), ("phone", PHONE)):
        page = await browser.new_page(viewport=viewport)  # type: ignore[arg-type]
        await page.goto(base + "/")
        odds = page.locator("table.accounts td[data-label='Liq. distance'] .odds")
        assert await odds.count() >= 2 and await odds.first.is_visible()
        assert re.fullmatch(r"odds \S+% in 1 h · \S+% in 24 h", (await odds.first.inner_text()).strip())
        await page.screenshot(path=str(folder / f"overview-odds-{label}.png"), full_page=True)
        if label == "phone":
            assert await overflow(page) <= 0
        await page.goto(f"{base}/accounts/{quote(state.name, safe='')}")
        cells = page.locator("table.positions td[data-label=Odds] .odds")
        assert await cells.count() == priced and await cells.first.is_visible()
        assert "in 24 h" in await cells.first.inner_text()
        await page.screenshot(path=str(folder / f"account-odds-{label}.png"), full_page=True)
        if label == "phone":
            assert await overflow(page) <= 0
            assert await small_targets(page) == []
        await page.close()


async def test_a_stale_mark_feed_shows_in_the_header_on_a_phone_without_overflow(
    make_sim: SimFactory, sink: Sink, tmp_path: Path, browser: Browser
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, sim):
        assert service.web_url is not None and service.market is not None
        await sim.control("POST", "/_sim/faults", {"kind": "500", "endpoint": ep.TICKERS.path, "count": 10_000})  # type: ignore[attr-defined]
        await until(lambda: "USDT-FUTURES" in service.market.feed.stale)  # type: ignore[union-attr]
        page = await browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
        for path, shot in (("/", "overview-stale-phone.png"), ("/accounts/iso", "account-stale-phone.png")):
            await page.goto(service.web_url + path)
            banner = page.locator("header .feed-stale")
            assert await banner.is_visible() and "Mark feed stale for USDT-FUTURES" in await banner.inner_text()
            assert await overflow(page) <= 0
            await page.screenshot(path=str(screenshots(tmp_path) / shot), full_page=True)
        await page.close()
