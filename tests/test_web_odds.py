"""The odds of liquidation and the mark feed's health on the page and the API, over a service that has read the
simulator for real: the odds are the liquidation_probability rule's own figure from the same mark history, "not
enough mark history" until there is enough, and a stale feed is said in the header and in each account's ages."""

from __future__ import annotations

import math
import random
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from monitor.exchange.bitget import endpoints as ep
from monitor.rules.evaluate import evaluate_account
from monitor.rules.model import Rule, RuleType
from monitor.service import Service
from tests.conftest import SimFactory, Sink, until
from tests.test_market_wiring import monitoring
from tests.test_web import served

__all__ = ["served"]  # a fixture shared with tests.test_web

ODDS_1H = re.compile(r'title="chance of liquidation within 1 hour">([^<]+)</span>')
ODDS_24H = re.compile(r'title="chance of liquidation within 24 hours">([^<]+)</span>')


def seed_walk(service: Service, *, step: float = 0.004, seed: int = 7) -> int:
    """An hour of marks (one per 10 s) for every symbol the accounts hold, a seeded random walk in the log price
    that ends at the mark as read, as if the feed had watched it: returns the symbols seeded."""
    assert service.poller is not None
    now = service.clock.now()
    rng = random.Random(seed)
    held = {(p.product_type, p.symbol): p.mark_price for s in service.poller.active() if s.snapshot
            for p in s.snapshot.positions}  # fmt: skip
    for (product_type, symbol), mark in held.items():
        logs = [0.0]
        for _ in range(359):
            logs.append(logs[-1] + rng.gauss(0, step))
        samples = [(now - timedelta(seconds=10 * (360 - i)), mark * Decimal(math.exp(x - logs[-1])))
                   for i, x in enumerate(logs)]  # fmt: skip
        service.mark_history.add_many(product_type, symbol, samples)
    return len(held)


async def test_the_odds_of_liquidation_show_beside_the_distance_and_are_the_rules_own_figure(served: Any) -> None:
    client, service, _ = await served()
    assert service.poller is not None
    # too little history: said plainly on the page and in the API, no figure
    html = await (await client.get("/")).text()
    assert "odds: not enough mark history" in html and not ODDS_1H.search(html)
    body = await (await client.get("/api/v1/status")).json()
    rows = [r for r in body["accounts"] if r["odds"] is not None]
    assert rows and all(r["odds"] == {"within_1h": None, "within_24h": None, "unknown": "not enough mark history"}
                        for r in rows)  # fmt: skip

    assert seed_walk(service) >= 2
    now = service.clock.now()
    state = next(
        s for s in service.poller.active() if s.snapshot and any(p.liquidation_price for p in s.snapshot.positions)
    )
    view = service.views.of(state.reading(), now)
    rules = [Rule("odds-1h", RuleType.LIQUIDATION_PROBABILITY, Decimal(5), Decimal(20), horizon=timedelta(hours=1)),
             Rule("odds-24h", RuleType.LIQUIDATION_PROBABILITY, Decimal(5), Decimal(20))]  # fmt: skip
    judged = {(o.rule.name, o.subject): o.value for o in evaluate_account(rules, view, now).observations}

    detail = await (await client.get(f"/api/v1/accounts/{quote(state.name, safe='')}")).json()
    assert detail["positions"]
    for p in detail["positions"]:
        subject = f"{p['product_type']} {p['symbol']} {p['side']}"
        odds = p["liquidation_odds"]
        if p["liquidation_price"] is None:
            assert odds["unknown"] == "no liquidation price" and judged[("odds-24h", subject)] is None
            continue
        assert odds["unknown"] is None
        for horizon, key in (("1h", "within_1h"), ("24h", "within_24h")):  # the rule's value, in percent
            assert Decimal(f"{odds[key] * 100:.4f}") == judged[(f"odds-{horizon}", subject)], (subject, horizon)
        assert 0 <= odds["within_1h"] <= odds["within_24h"] <= 1

    # the page: per position on the account page, the likeliest position's on the overview
    page = await (await client.get(f"/accounts/{quote(state.name, safe='')}")).text()
    with_price = [p for p in detail["positions"] if p["liquidation_price"] is not None]
    assert len(ODDS_1H.findall(page)) == len(ODDS_24H.findall(page)) == len(with_price)
    assert all(re.fullmatch(r"<0\.1%|>99\.9%|\d+(\.\d)?%", text) for text in ODDS_24H.findall(page))
    overview = await (await client.get("/")).text()
    assert "not enough mark history" not in overview
    row = next(r for r in (await (await client.get("/api/v1/status")).json())["accounts"] if r["name"] == state.name)
    # the likeliest within a day, which need not be the nearest (a volatile symbol further away)
    likeliest = max(with_price, key=lambda p: (p["liquidation_odds"]["within_24h"], p["liquidation_odds"]["within_1h"]))
    assert row["odds"] == likeliest["liquidation_odds"]


async def test_a_stale_mark_feed_is_said_in_the_header_and_in_each_accounts_ages(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    async with monitoring(make_sim, sink, tmp_path) as (service, sim):
        assert service.market is not None and service.web_url is not None
        session = sim.session  # type: ignore[attr-defined]
        await until(lambda: service.market.mark("USDT-FUTURES", "BTCUSDT") is not None)  # type: ignore[union-attr]
        fresh = await (await session.get(service.web_url + "/")).text()
        assert "Mark feed stale" not in fresh and ", as read" not in fresh
        await sim.control("POST", "/_sim/faults", {"kind": "500", "endpoint": ep.TICKERS.path, "count": 10_000})  # type: ignore[attr-defined]
        await until(lambda: "USDT-FUTURES" in service.market.feed.stale)  # type: ignore[union-attr]
        for path in ("/", "/accounts/iso", "/alerts"):
            html = await (await session.get(service.web_url + path)).text()
            banner = re.search(r'<p class="banner danger feed-stale"[^>]*>(.*?)</p>', html, re.S)
            assert banner, path
            text = re.sub(r"<[^>]+>", "", banner.group(1))
            assert "Mark feed stale for USDT-FUTURES (no fresh mark for" in text, text
            assert re.search(r"from the account reads instead \(the oldest is \d+ (s|min) old\)\.", text), text
            assert "HTTP 500" in text and "<" not in text.replace("&lt;", "<")  # the error, not the answer's body
        overview = await (await session.get(service.web_url + "/")).text()
        iso = re.search(r"<tr[^>]*>\s*<td data-label=\"Account\"><a href=\"/accounts/iso\">.*?</tr>", overview, re.S)
        assert iso is not None
        assert re.search(r'data-label="Read age" class="num warn">\d+ s<', iso.group(0))
        assert re.search(r'data-label="Mark age" class="num"><span class="warn" [^>]*>\d+ s, as read<', iso.group(0))
