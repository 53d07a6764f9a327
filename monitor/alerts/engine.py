"""The alert engine: loads the alert state, keeps the alerts in memory (the drawdown peaks: monitor.alerts.peaks),
and after every poll and on a timer calls the pure decisions (monitor.alerts.decide) and hands their changes on:
rendered messages and changed alerts to the journal (monitor.alerts.journal), positions that disappeared to a
mark read (monitor.alerts.verdicts) whose verdict is decided the same way.

State lives in the database. On start the engine loads it before judging anything, so a restart neither
re-sends nor misses. Changes are written in order; if the database is away they wait in memory and go out when
it is back. Their messages do not wait: they go to the outbox in memory (see monitor.alerts.outbox) and are
delivered from there. With a spool (monitor.alerts.spool) the changes are on local disk first: a restart during
an outage restores them (announced alerts stay announced, unsent messages are sent), and a process started
while the database is away judges from the spool's last known alert state instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from monitor.alerts import decide, departures
from monitor.alerts.compose import compose
from monitor.alerts.journal import Journal
from monitor.alerts.lifecycle import vanish
from monitor.alerts.messages import messages_for
from monitor.alerts.model import (
    ACTIVE,
    ENDED,
    RESOLVED_KEPT,
    Alert,
    Item,
    Outgoing,
    Silence,
    State,
    Transition,
    alert_order,
)
from monitor.alerts.outbox import MemoryOutbox
from monitor.alerts.peaks import Peaks
from monitor.alerts.ports import AlertStorage
from monitor.alerts.sight import Sights
from monitor.alerts.spool import Spool
from monitor.alerts.verdicts import Verdicts
from monitor.clock import Clock
from monitor.config.model import Config
from monitor.rules.view import AccountView

log = logging.getLogger(__name__)

TICK = 5.0  # seconds between timer evaluations (repeats, `for`, silences ending, accounts going quiet)
RETRY = 5.0  # seconds between attempts while the database is away


class AlertEngine:
    def __init__(
        self, config: Config, store: AlertStorage, clock: Clock, *, on_queued: Callable[[], None] = lambda: None,
        memory: MemoryOutbox | None = None, spool: Spool | None = None,
    ):  # fmt: skip
        self.store = store
        self.clock = clock
        self.on_queued = on_queued  # wakes the sender once messages are in the outbox (either of them)
        self.memory = memory if memory is not None else MemoryOutbox("local")  # the sender's, shared
        self.current: dict[str, Alert] = {}
        self._by_account: dict[str | None, set[str]] = defaultdict(set)
        self.silences: list[Silence] = []
        self.peaks = Peaks()
        self._last_success: dict[str, datetime] = {}  # from the database: good data before this process started
        self._owned: set[str] | None = None  # the accounts this process polls, when processes share them
        self.ready = False
        self.journal = Journal(store, clock, self.memory, on_queued, self._dropped, spool,
                               lambda: self.current.values())  # fmt: skip
        self.verdicts = Verdicts(clock, self.current, self._watched, self._settle, self.journal.dirty.set)
        self._late: asyncio.Task[None] | None = None  # loading from the database after a start from the spool
        self._severities = decide.ActiveSeverities(self.current)  # what the rules' hysteresis is measured from
        self._sights = Sights()  # what each account's last judgement saw
        self.judgements = 0  # accounts judged since start (what `changed_only` saves shows here)
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Take a (re)loaded configuration."""
        self.config = config
        self.rules = {r.name: r for r in config.rules}
        self.messages = messages_for(config)
        self._channels = {a.name: a.channels for a in config.accounts}
        self._tags = {a.name: a.tags for a in config.accounts}
        self.verdicts.keep(self._tags)
        self._sights.configure(config.rules)
        self._retire(self.clock.now())

    def _retire(self, now: datetime) -> None:
        """Alerts whose rule or account left the configuration resolve, without a message: nothing watches
        them any more, and they must not stay firing forever."""
        for alert in list(self.current.values()):
            if alert.state not in ACTIVE:
                continue
            if alert.rule not in self.rules:
                reason = "rule removed"
            elif alert.account is not None and alert.account not in self._tags:
                reason = "account removed"
            else:
                continue
            new, transition = vanish(alert, now, reason)
            self._record(replace(new, last_notified_state=new.state), transition)

    # -- state ------------------------------------------------------------------------------------------

    async def load(self, accounts: set[str] | None = None) -> None:
        """Load the alert state (retrying while the database is away); nothing is judged before it is in.
        With `accounts`, only theirs (an account this process just took over from another).

        First the spool's state (alerts as last known, changes the database had not taken); while the database
        is away that is what judging starts from, and the database's state is loaded when it answers."""
        restored = self.journal.restore() if accounts is None and not self.ready else None
        if restored is not None:
            for alert in restored.known.values():
                self.current[alert.key] = alert
                self._by_account[alert.account].add(alert.key)
        while True:
            try:
                now = self.clock.now()
                alerts = await asyncio.to_thread(self.store.alerts.load, now, accounts)
                last_success = await asyncio.to_thread(self.store.alerts.last_success)
                if accounts is None:
                    self.silences = await asyncio.to_thread(self.store.alerts.silences, now)
                    if not self.peaks.seeded:  # a late load would put old samples behind newer ones
                        await asyncio.to_thread(self.peaks.seed, self.config, self.rules.values(), self.store, now)
                break
            except Exception as exc:
                if restored is not None:  # judge now from the spool; the database's state when it answers
                    log.error("alert state not loaded (%s): judging from the last state known to the spool; "
                              "silences, acknowledgements and drawdown peaks from before this start are not "
                              "known until the database answers", str(exc).strip())  # fmt: skip
                    self.ready = True
                    self._retire(self.clock.now())
                    self._late = asyncio.get_running_loop().create_task(self.load(), name="alert state")
                    return
                log.error("alert state not loaded (%s); alerts wait for the database", str(exc).strip())
                await asyncio.sleep(RETRY)
        self._last_success.update(last_success)
        for alert in alerts:
            if not self.journal.holds(alert.key):  # never over a change not written yet
                self.current[alert.key] = alert
                self._by_account[alert.account].add(alert.key)
        if accounts is None:
            self.ready = True
            self._retire(now)
            self.journal.checkpoint()
            firing, pending = (sum(a.state is s for a in alerts) for s in (State.FIRING, State.PENDING))
            log.info("alert state loaded: %d firing, %d pending", firing, pending)

    async def adopt(self, owned: set[str]) -> None:
        """Processes sharing accounts handed some over: load the alerts of accounts gained (another process
        may have changed them), forget those of accounts this process does not poll (their owner speaks)."""
        gained = owned - self._owned if self._owned is not None else set()
        self._owned = owned
        for name in [n for n in self._by_account if n is not None and n not in owned]:
            for key in self._by_account.pop(name):
                self.current.pop(key, None)
        self.verdicts.keep(owned)  # what another process polls is its to judge
        self._sights.clear()
        if gained and self.ready:
            await self.load(gained)

    # -- evaluation --------------------------------------------------------------------------------------

    def evaluate(
        self, views: Iterable[AccountView], now: datetime, *, portfolio: bool = False, changed_only: bool = False
    ) -> None:
        """Judge these accounts (and the portfolio rules) now; queue what changed. One account's failure (a
        bug, a broken template) is logged and does not touch the others. `changed_only` (the timer, a new mark):
        an account judging could not change is left out (monitor.alerts.sight); its drawdown peaks still take
        the read."""
        if not self.ready:
            return
        views = list(views)
        for view in views:
            try:
                self.peaks.track(view, self.rules.values())  # every fresh read is a sample, judged or not
            except Exception:
                log.exception("%s: drawdown peak not tracked", view.name)
            sight = self._sights.of(view, now)
            if changed_only and self._sights.unchanged(view.name, sight) and not self._by_account.get(view.name):
                continue
            self._sights.forget(view.name)
            self.judgements += 1
            try:
                self._evaluate_account(view, now)
            except Exception:
                log.exception("%s: alert evaluation failed", view.name)
            else:
                self._sights.judged(view.name, sight)
        if portfolio:
            try:
                self._evaluate_portfolio(views, now)
            except Exception:
                log.exception("portfolio alert evaluation failed")
        self.journal.evaluated()

    def _evaluate_account(self, view: AccountView, now: datetime) -> None:
        keys = self._by_account.get(view.name, ())
        peaks = self.peaks.account(view, self.rules.values(), now)
        decision = decide.judge_account(view, self.rules, self.current, keys, now, self._severities, peaks,
                                        self.verdicts.awaiting)  # fmt: skip
        self.current.update(decision.moved)  # kept in memory, written with the next change
        timeout = self.config.monitor.request_timeout.total_seconds()
        departed = self.verdicts.depart(view, decision.closing, self.rules.values(), now, timeout)
        for key, change in departed.items():  # what cannot wait for a mark
            decision.changes[key] = change
            decision.held.discard(key)
            decision.keys.add(key)
        self._settle(decision.changes, decision.keys, now)

    def _evaluate_portfolio(self, views: list[AccountView], now: datetime) -> None:
        peaks = self.peaks.portfolio(views, self.rules.values(), now)
        decision = decide.judge_portfolio(views, self.rules, self.current, now, peaks, self._severities)
        self.current.update(decision.moved)
        self._settle(decision.changes, decision.keys, now)

    def _watched(self, account: str) -> bool:
        """Whether this process still judges the account (configured, and polled here)."""
        return account in self._tags and (self._owned is None or account in self._owned)

    @property
    def marks(self) -> departures.MarkSource | None:
        """Where a position that disappears has its mark read (None: judged on the last read alone)."""
        return self.verdicts.marks

    @marks.setter
    def marks(self, source: departures.MarkSource | None) -> None:
        self.verdicts.marks = source

    async def judged(self) -> None:
        """Wait for positions that disappeared to be judged (`once`, shutdown: before the last flush)."""
        await self.verdicts.judged()

    def _settle(self, changes: dict[str, tuple[Alert, Transition | None]], keys: Iterable[str], now: datetime) -> None:
        """Decide what people hear about, render it, and only then record everything together: a message
        that cannot be rendered leaves the alerts unmarked, to be tried again."""
        notice = decide.notify(changes, keys, self.current, self.rules, self.silences, now)
        messages = self._compose(notice.items, now) if notice.items else []
        marked = notice.marked
        for key, (alert, transition) in changes.items():
            self._record(marked.pop(key, alert), transition)
        for alert in marked.values():
            self._record(alert, None)
        self.journal.queue(messages, now)

    def _compose(self, items: list[Item], now: datetime) -> list[Outgoing]:
        c = self.config
        return compose(items, self.rules, self._channels, self._tags, c.channels, self.messages, now)

    def _record(self, alert: Alert, transition: Transition | None) -> None:
        self.current[alert.key] = alert
        self._by_account[alert.account].add(alert.key)
        self.journal.record(alert, transition)

    # -- background --------------------------------------------------------------------------------------

    async def run(self, views: Callable[[], list[AccountView]], portfolio: Callable[[], bool] = lambda: True) -> None:
        """Load the state, then evaluate every TICK and write whatever changed. Portfolio rules need every
        account: `portfolio` says whether this process sees them all (not when processes share accounts)."""
        await self.load()
        writer = asyncio.create_task(self.journal.run(), name="alert writer")
        try:
            while True:
                now = self.clock.now()
                try:
                    self.silences = await asyncio.to_thread(self.store.alerts.silences, now)
                except Exception as exc:  # keep the silences known; evaluation goes on
                    log.warning("silences not refreshed: %s", str(exc).strip())
                try:
                    self.evaluate(views(), now, portfolio=portfolio(), changed_only=True)
                    self._forget(now)
                except Exception:  # a bug must not end alerting
                    log.exception("alert evaluation pass failed")
                await asyncio.sleep(TICK)
        finally:
            tasks = [writer] + ([self._late] if self._late is not None else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, now: datetime) -> None:
        """Drop settled alerts from memory (the database keeps them)."""
        for key, alert in list(self.current.items()):
            settled = alert.state is State.INACTIVE or (
                alert.state in ENDED and alert.resolved_at is not None
                and now - alert.resolved_at > RESOLVED_KEPT
            )  # fmt: skip
            if settled and not self.journal.holds(key):
                del self.current[key]
                self._by_account[alert.account].discard(key)

    @property
    def last_success(self) -> dict[str, datetime]:
        """Each account's last good data as the database knew it at load (also from before this process)."""
        return self._last_success

    @property
    def waiting(self) -> int:
        """Messages evaluated but not yet in the outbox table."""
        return self.journal.waiting

    async def flush(self) -> bool:
        """Write what is pending (monitor.alerts.journal); False when the database is away."""
        return await self.journal.flush()

    def _dropped(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            self.current.pop(alert.key, None)
            self._by_account[alert.account].discard(alert.key)

    def active(self, account: str) -> bool:
        """Whether an alert of the account is pending or firing."""
        found = (self.current.get(key) for key in self._by_account.get(account, ()))
        return any(alert is not None and alert.state in ACTIVE for alert in found)

    def firing(self) -> list[Alert]:
        return sorted((a for a in self.current.values() if a.state is State.FIRING), key=alert_order)
