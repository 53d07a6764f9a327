"""/metrics in Prometheus text format, built by prometheus_client from the live state at each scrape.

Labels stay bounded: accounts come from the accounts file, error codes from Bitget's set, states and
severities are fixed lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from monitor.alerts.model import Alert, State
from monitor.poller.state import FRESH
from web.status import AccountRow, StatusReader

PREFIX = "bitget_monitor_"


class _Snapshot(Collector):
    def __init__(self, source: StatusReader, outbox: dict[str, int]) -> None:
        self.source = source
        self.outbox = outbox

    def collect(self) -> Iterator[Any]:
        counters, health = self.source.counters(), self.source.health()
        rows = self.source.rows()
        per_account: dict[str, tuple[str, Callable[[AccountRow], Any]]] = {
            "account_equity_usdt": ("Equity in USDT, from the last good read", lambda r: r.equity),
            "account_unrealized_pnl_usdt": ("Unrealized PnL in USDT", lambda r: r.upnl),
            "account_worst_liquidation_distance_percent": (
                "Percent the mark must move for the closest position to be liquidated",
                lambda r: r.worst_distance,
            ),
            "account_margin_ratio": (
                "Highest cross risk or unified margin ratio (1 = liquidation)",
                lambda r: r.margin_ratio,
            ),
            "account_last_success_timestamp_seconds": (
                "When the account last gave good data",
                lambda r: r.last_good_at.timestamp() if r.last_good_at else None,
            ),
        }
        for name, (doc, value) in per_account.items():
            family = GaugeMetricFamily(PREFIX + name, doc, labels=["account"])
            for r in rows:
                v = value(r)
                if v is not None:
                    family.add_metric([r.name], float(v))
            yield family
        up = GaugeMetricFamily(
            PREFIX + "account_up", "1 when the account's data is fresh", labels=["account", "status"]
        )
        for r in rows:
            up.add_metric([r.name, r.health], 1.0 if r.health in FRESH else 0.0)
        yield up
        stale = GaugeMetricFamily(
            PREFIX + "market_feed_stale",
            "1 while the mark feed of a product type has no fresh answer (positions use the account reads' marks)",
            labels=["product_type"],
        )
        for f in health.feed:
            stale.add_metric([f.name], 1.0 if f.stale else 0.0)
        yield stale
        errors = CounterMetricFamily(PREFIX + "poll_errors", "Failed polls by Bitget code", labels=["code"])
        for code, count in sorted(counters.poll_errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield CounterMetricFamily(PREFIX + "requests", "Requests sent to Bitget", value=counters.requests)
        yield CounterMetricFamily(PREFIX + "rate_limited", "HTTP 429 answers from Bitget", value=counters.rate_limited)
        alerts = GaugeMetricFamily(PREFIX + "alerts", "Alerts by state and severity (liquidated: positions)",
                                   labels=["state", "severity"])  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        every = self.source.alerts(include_resolved=True)
        # A liquidated position counts once, however many of its alerts ended so; its other alerts end resolved
        # at the same moment: part of the liquidation, not a resolution (as the reports count them).
        liquidations: dict[tuple[str | None, str, Any], Alert] = {}
        for a in every:
            if a.state is State.LIQUIDATED:
                liquidations.setdefault((a.account, a.subject, a.resolved_at), a)
        for a in every:
            carrier = liquidations.get((a.account, a.subject, a.resolved_at))
            if carrier is not None and carrier is not a and a.state in (State.LIQUIDATED, State.RESOLVED):
                continue
            key = (str(a.state), str(a.severity or "none"))
            counts[key] = counts.get(key, 0) + 1
        for (state, severity), count in sorted(counts.items()):
            alerts.add_metric([state, severity], count)
        yield alerts
        outbox = GaugeMetricFamily(PREFIX + "outbox_messages", "Outbox messages by status", labels=["status"])
        for status in ("queued", "held", "sent", "merged", "dropped"):
            outbox.add_metric([status], self.outbox.get(status, 0))
        # not in the table yet (the database refuses writes): delivered from memory meanwhile
        outbox.add_metric(["memory"], health.messages_in_memory)
        yield outbox
        yield CounterMetricFamily(PREFIX + "outbox_memory_dropped", "Unsent messages dropped from a full outbox "
                                  "in memory", value=counters.memory_dropped)  # fmt: skip
        yield GaugeMetricFamily(PREFIX + "outbox_failing_messages", "Queued messages whose last attempt failed",
                                value=self.outbox.get("failing", 0))  # fmt: skip
        refused = CounterMetricFamily(PREFIX + "refused_writes", "Poll results the database refused, per account",
                                      labels=["account"])  # fmt: skip
        for account, count in sorted(counters.refused_writes.items()):
            refused.add_metric([account], count)
        yield refused
        stalled = counters.stalled_seconds
        yield CounterMetricFamily(PREFIX + "stalled_seconds", "Time the monitor could not run (a stalled event loop "
                                  "or a suspended machine), left out of staleness", value=stalled)  # fmt: skip
        yield CounterMetricFamily(PREFIX + "confirming_reads", "Account reads asked for at once to confirm what "
                                  "the mark feed suggests", value=counters.confirming_reads)  # fmt: skip
        yield CounterMetricFamily(PREFIX + "estimated_alerts", "Accounts judged on the live estimate for want of a "
                                  "confirming read in time", value=counters.estimated_alerts)  # fmt: skip
        if health.config is not None:
            reload = health.config
            yield GaugeMetricFamily(PREFIX + "config_reload_failed", "1 while the latest reload of the accounts "
                                    "file was rejected (the previous configuration is in use)",
                                    value=0 if reload.error is None else 1)  # fmt: skip
            yield GaugeMetricFamily(PREFIX + "config_last_reload_timestamp_seconds", "When the configuration in "
                                    "use was loaded (at start or by a reload)",
                                    value=reload.loaded_at.timestamp())  # fmt: skip
        yield CounterMetricFamily(PREFIX + "notifications_sent", "Messages delivered to every URL", value=counters.sent)
        yield CounterMetricFamily(PREFIX + "notification_failures", "Failed delivery attempts", value=counters.failures)


async def render_metrics(source: StatusReader) -> tuple[bytes, str]:
    try:
        outbox = await source.outbox_counts()
    except Exception:  # the database is away: the rest of the metrics still matter
        outbox = {}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(source, outbox))
    return generate_latest(registry), CONTENT_TYPE_LATEST
