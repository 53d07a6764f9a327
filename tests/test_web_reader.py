"""The page's handlers against a small fake read model (web.status.StatusReader): what they show comes from the
reader alone, with no service, poller or database behind it. tests/test_web.py runs them on the real service."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor.alerts.model import Alert, OutboxMessage, Silence, State, alert_order
from monitor.clock import Clock, ManualClock
from monitor.config.model import WebSettings
from monitor.poller.state import Reading
from monitor.rules.model import Severity
from monitor.store.views import EquitySample
from web.app import create_app
from web.status import AccountRow, Counters, Health

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def account(name: str, status: str = "ok", equity: str = "100") -> AccountRow:
    return AccountRow(name=name, tags=("desk",), status=status, error_code=None, error_message=None, fix=None,
                      equity=Decimal(equity), upnl=Decimal(0), worst_distance=None, margin_ratio=None,
                      last_good_at=NOW, age=0.0, at_risk=False, positions=0)  # fmt: skip


class FakeReader:
    def __init__(self, rows: list[AccountRow], alerts: list[Alert], health: Health, counters: Counters) -> None:
        self._rows, self._alerts, self._health, self._counters = rows, alerts, health, counters
        self._clock = ManualClock(NOW)
        self.database = True

    @property
    def clock(self) -> Clock:
        return self._clock

    def web_settings(self) -> WebSettings:
        return WebSettings()

    def rows(self) -> list[AccountRow]:
        return self._rows

    def account_row(self, name: str) -> AccountRow | None:
        return next((r for r in self._rows if r.name == name), None)

    def reading(self, name: str) -> Reading | None:
        found = self.account_row(name)
        if found is None:
            return None
        return Reading(name, found.tags, None, NOW, "ok", 1, None, None, None, timedelta(0), None)

    def alerts(self, account: str | None = None, *, include_resolved: bool = False) -> list[Alert]:
        wanted = (State.FIRING, State.PENDING) + ((State.LIQUIDATED, State.RESOLVED) if include_resolved else ())
        found = [a for a in self._alerts if (account is None or a.account == account) and a.state in wanted]
        return sorted(found, key=alert_order)

    def silenced(self, alert: Alert) -> bool:
        return False

    def health(self) -> Health:
        return self._health

    def counters(self) -> Counters:
        return self._counters

    async def database_ok(self) -> bool:
        return self.database

    async def outbox(self, account: str | None = None, limit: int = 50, failing: bool = False) -> list[OutboxMessage]:
        return []

    async def outbox_counts(self) -> dict[str, int]:
        return {"queued": 2}

    async def silences(self) -> list[Silence]:
        return []

    async def equity(self, name: str, span: timedelta) -> list[EquitySample]:
        return []


HEALTHY = Health(database_ready=True, poller_running=True, lease_mode="single", messages_in_memory=0, behind=False,
                 sharing=None)  # fmt: skip
COUNTERS = Counters(poll_errors={"40725": 3}, requests=42, rate_limited=1, refused_writes={}, stalled_seconds=0.0,
                    memory_dropped=0, sent=5, failures=2)  # fmt: skip
FIRING = Alert("liq|alpha|BTCUSDT", "liq", "alpha", "BTCUSDT long", State.FIRING, NOW, Severity.CRITICAL,
               Decimal("4.5"), "alpha: BTCUSDT long: 4.50% from liquidation")  # fmt: skip


async def test_the_overview_shows_what_the_reader_gives_and_nothing_else(aiohttp_client: Any) -> None:
    reader = FakeReader([account("alpha"), account("beta", "stale")], [FIRING], HEALTHY, COUNTERS)
    client = await aiohttp_client(create_app(reader))
    html = await (await client.get("/")).text()
    assert html.count('<tr class="status-') == 2
    assert "alpha: BTCUSDT long: 4.50% from liquidation" in html
    assert (await client.get("/accounts/gamma")).status == 404


async def test_readyz_fails_on_the_readers_health_and_names_the_failed_checks(aiohttp_client: Any) -> None:
    reader = FakeReader([account("alpha")], [], HEALTHY, COUNTERS)
    client = await aiohttp_client(create_app(reader))
    assert (await client.get("/readyz")).status == 200
    reader.database = False
    response = await client.get("/readyz")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["database"] is False and checks["poller"] is True


async def test_the_metrics_are_the_readers_counters(aiohttp_client: Any) -> None:
    reader = FakeReader([account("alpha", equity="123.5")], [FIRING], HEALTHY, COUNTERS)
    client = await aiohttp_client(create_app(reader))
    text = await (await client.get("/metrics")).text()
    assert 'bitget_monitor_poll_errors_total{code="40725"} 3.0' in text
    assert "bitget_monitor_requests_total 42.0" in text
    assert 'bitget_monitor_account_equity_usdt{account="alpha"} 123.5' in text
    assert 'bitget_monitor_alerts{severity="critical",state="firing"} 1.0' in text
    assert 'bitget_monitor_outbox_messages{status="queued"} 2.0' in text


def liquidated(rule: str, ago: timedelta, subject: str = "BTCUSDT long") -> Alert:
    return Alert(f"{rule}|alpha|{subject}", rule, "alpha", subject, State.LIQUIDATED, NOW - ago, Severity.CRITICAL,
                 Decimal("-1"), f"{subject} liquidated {ago} ago", resolved_at=NOW - ago)  # fmt: skip


def rows_of(html: str) -> list[str]:
    """The alerts table's rows, by the summary each shows."""
    return re.findall(r'<td data-label="What" class="what">([^<]*)', html)


async def test_recent_liquidations_head_the_overview_and_alerts_tables_with_when_they_happened(
    aiohttp_client: Any,
) -> None:
    fresh, older = liquidated("liq", timedelta(seconds=19)), liquidated("liq2", timedelta(hours=3), "ETHUSDT short")
    stale = liquidated("liq3", timedelta(hours=30), "SOLUSDT long")  # past the 24 h: the alerts page only
    resolved = replace(FIRING, key="odds|alpha|x", rule="odds", state=State.RESOLVED, resolved_at=NOW,
                       summary="resolved one")  # fmt: skip
    reader = FakeReader([account("alpha")], [stale, resolved, FIRING, older, fresh], HEALTHY, COUNTERS)
    client = await aiohttp_client(create_app(reader))
    overview = await (await client.get("/")).text()
    assert rows_of(overview) == [fresh.summary, older.summary, FIRING.summary]
    assert overview.count('<span class="badge critical">LIQUIDATED</span>') == 2
    assert "2026-03-02 11:59:41 UTC (19 s ago)" in overview  # when the liquidation happened
    page = await (await client.get("/alerts")).text()
    assert rows_of(page) == [fresh.summary, older.summary, FIRING.summary, stale.summary, "resolved one"]


async def test_the_alerts_metric_counts_a_liquidated_position_once(aiohttp_client: Any) -> None:
    three = [liquidated(rule, timedelta(minutes=1)) for rule in ("liq", "odds", "upnl")]  # stored before the fix
    eth = liquidated("liq", timedelta(hours=2), "ETHUSDT short")
    # Now one alert carries the liquidation and the position's others end resolved with it: part of it, not
    # a resolution; another subject's resolution (or the same one's at another moment) still counts.
    quiet = [replace(eth, key=f"{rule}|alpha|ETHUSDT short", rule=rule, state=State.RESOLVED, severity=Severity.WARNING)
             for rule in ("odds", "upnl")]  # fmt: skip
    resolved = [replace(quiet[0], subject="SOLUSDT long"), replace(quiet[1], resolved_at=NOW - timedelta(hours=5))]
    reader = FakeReader([account("alpha")], [*three, eth, *quiet, *resolved], HEALTHY, COUNTERS)
    client = await aiohttp_client(create_app(reader))
    text = await (await client.get("/metrics")).text()
    assert 'bitget_monitor_alerts{severity="critical",state="liquidated"} 2.0' in text
    assert 'bitget_monitor_alerts{severity="warning",state="resolved"} 2.0' in text
