"""The page's handlers against a small fake read model (web.status.StatusReader): what they show comes from the
reader alone, with no service, poller or database behind it. tests/test_web.py runs them on the real service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor.alerts.model import Alert, OutboxMessage, Silence, State
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
        return [a for a in self._alerts if account is None or a.account == account]

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
