"""`once`: one monitor cycle for cron and timers, the same lifecycle as `run`, continued from the database (a
part of monitor.service.Service)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp

from monitor.alerts.engine import AlertEngine
from monitor.alerts.model import ACTIVE, Alert, State, alert_order
from monitor.alerts.sender import CLAIM, Sender
from monitor.alerts.spool import Spool
from monitor.clock import Clock
from monitor.config import Config
from monitor.domain import PollOutcome
from monitor.errors import reason
from monitor.exchange.bitget.market import MarkPrices
from monitor.poller.scheduler import Poller
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.views import AccountViews

log = logging.getLogger(__name__)

# The budgets throttle; the connection pool must not (requests queued for a connection after their budget turn
# would reach Bitget in a burst). Slow answers hold connections, hence the headroom.
CONNECTIONS = 512
ONCE_LOAD_TIMEOUT = 15.0  # seconds `once` waits for the alert state once the schema is in place


@dataclass
class OnceResult:
    """What one `once` cycle did. `error` says why the cycle or its messages are not (all) stored."""

    outcomes: list[PollOutcome]
    alerts: list[Alert] = field(default_factory=list)  # active after the cycle, or resolved by it
    error: str | None = None
    sent: int = 0
    queued: int = 0  # messages still in the outbox (due later, failing, or cut off by the timeout)


class OnceCycle:
    """The `once` methods of the service; the attributes are the service's."""

    config: Config
    clock: Clock
    migrate: bool
    store: Store
    sender: Sender
    spool: Spool
    engine: AlertEngine
    views: AccountViews
    session: aiohttp.ClientSession | None
    poller: Poller | None

    def _read_marks(self, session: aiohttp.ClientSession, poller: Poller) -> None:
        """Positions that disappear are judged against the public mark, read inside the poller's IP budget."""
        m = self.config.monitor
        self.engine.marks = MarkPrices(session, m.bitget_url, poller.ip_budget, self.clock,
                                       timeout=m.request_timeout.total_seconds())  # fmt: skip

    async def once(self, deliver_timeout: float = 30.0, *, dry_run: bool = False) -> OnceResult:
        """One monitor cycle, for cron and timers: the same lifecycle as `run`, continued from the database.

        Load the alert state, read every account once, store the reads, judge them (`for` and repeats count
        from stored times, so a series of calls behaves like `run`), store the transitions and the outbox, and
        deliver what is due (earlier queued messages too) for at most `deliver_timeout` seconds; what is not
        delivered stays queued for the next call. `dry_run`: read and report only, the database is not touched.
        """
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        self.poller = Poller(self.config, self.session, self.clock)  # no hooks: stored and judged after the cycle
        self._read_marks(self.session, self.poller)
        result = OnceResult([])
        try:
            if not dry_run:
                result.error = await self._once_storage()
            result.outcomes = await self.poller.cycle()
            if dry_run or result.error is not None:
                return result
            result.error = await self._once_judge(result)
            if result.error is None:
                result.error = await self._once_deliver(result, deliver_timeout)
            return result
        finally:
            await self.poller.stop()
            await self.session.close()
            self.sender.close()
            await asyncio.to_thread(self.store.close)
            self.spool.close()  # its lock too: a next `once` in this process (or another) may take it

    async def _once_storage(self) -> str | None:
        """Schema, accounts and the alert state, or why not (the database is away, locked, too new)."""
        try:
            if self.migrate:
                await asyncio.to_thread(migrations.upgrade, self.config.monitor.database_url.reveal())
            await asyncio.to_thread(self.store.register_accounts, self.config.accounts, self.clock.now())
            await asyncio.wait_for(self.engine.load(), ONCE_LOAD_TIMEOUT)  # load() itself waits for ever
        except TimeoutError:
            return f"alert state not loaded within {ONCE_LOAD_TIMEOUT:.0f} s"
        except Exception as exc:
            return reason(exc)
        return None

    async def _once_judge(self, result: OnceResult) -> str | None:
        assert self.poller is not None
        try:
            await asyncio.to_thread(self.store.write_polls, result.outcomes)
        except Exception as exc:
            return f"reads not stored: {reason(exc)}"
        now = self.clock.now()
        views = [self.views.of(s.reading(), now) for s in self.poller.accounts.values()]
        self.engine.evaluate(views, now, portfolio=True)
        await self.engine.judged()  # positions gone since the stored alerts: judged against the mark read now
        if not await self.engine.flush():
            return f"alert changes and their messages not stored ({self.engine.waiting} messages)"
        shown = [a for a in self.engine.current.values()
                 if a.state in ACTIVE or (a.state is State.RESOLVED and a.resolved_at == now)]  # fmt: skip
        result.alerts = sorted(shown, key=alert_order)
        return None

    async def _once_deliver(self, result: OnceResult, timeout: float) -> str | None:
        """Deliver until nothing more is due: a lane's next message becomes due once its head is sent, and a
        failed one waits for its backoff (the next call)."""

        async def deliver() -> None:
            while await self.sender.send_due():
                pass

        try:
            await asyncio.wait_for(deliver(), timeout)
        except TimeoutError:
            log.warning("--deliver-timeout (%.0f s) reached: undelivered messages stay queued for the next run "
                        "(one cut off mid-delivery once its claim lapses, in %s)", timeout, CLAIM)  # fmt: skip
        except Exception as exc:
            return f"deliveries not recorded: {reason(exc)}"
        result.sent = self.sender.sent
        try:
            result.queued = (await asyncio.to_thread(self.store.alerts.outbox_counts)).get("queued", 0)
        except Exception as exc:
            return f"outbox not readable: {reason(exc)}"
        return None
