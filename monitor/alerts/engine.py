"""The alert engine: evaluates the rules after every poll and on a timer, steps each alert through its
lifecycle, decides what to tell people and queues it, and writes all of it to the database.

State lives in the database. On start the engine loads it before judging anything, so a restart neither
re-sends nor misses. Changes are written in order; if the database is away they wait in memory and go out when
it is back (a crash meanwhile can repeat a message, never lose a transition the database already has). Their
messages do not wait: they go to the outbox in memory (see monitor.alerts.outbox) and are delivered from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from monitor.alerts import departures, lifecycle
from monitor.alerts.compose import compose
from monitor.alerts.lifecycle import notified, notify_reason, step, vanish
from monitor.alerts.messages import messages_for
from monitor.alerts.model import (
    ACTIVE,
    CLOSED,
    ENDED,
    RESOLVED_KEPT,
    Alert,
    AlertBatch,
    BatchRejected,
    Item,
    Outgoing,
    Queued,
    Silence,
    State,
    Transition,
    alert_order,
)
from monitor.alerts.outbox import MemoryOutbox
from monitor.alerts.ports import AlertStorage
from monitor.alerts.silences import silenced
from monitor.clock import Clock
from monitor.config.model import Config
from monitor.domain import AccountSnapshot
from monitor.rules.evaluate import AccountView, RollingPeak, evaluate_account, evaluate_portfolio, portfolio_equity
from monitor.rules.model import DATA_TYPES, Rule, RuleType, Severity

log = logging.getLogger(__name__)

TICK = 5.0  # seconds between timer evaluations (repeats, `for`, silences ending, accounts going quiet)
RETRY = 5.0  # seconds between attempts while the database is away


class AlertEngine:
    def __init__(
        self, config: Config, store: AlertStorage, clock: Clock, *, on_queued: Callable[[], None] = lambda: None,
        memory: MemoryOutbox | None = None,
    ):  # fmt: skip
        self.store = store
        self.clock = clock
        self.on_queued = on_queued  # wakes the sender once messages are in the outbox (either of them)
        self.memory = memory if memory is not None else MemoryOutbox("local")  # the sender's, shared
        self.alerts: dict[str, Alert] = {}
        self._by_account: dict[str | None, set[str]] = defaultdict(set)
        self.silences: list[Silence] = []
        self._peaks: dict[tuple[str, str | None], RollingPeak] = {}
        self._last_success: dict[str, datetime] = {}  # from the database: good data before this process started
        self._owned: set[str] | None = None  # the accounts this process polls, when processes share them
        self._pending = AlertBatch(clock.now())
        self._dirty = asyncio.Event()
        self._flushing = asyncio.Lock()  # batches are written one after the other, in order
        self.ready = False
        self.rejected = 0  # batches the database refused (logged; never retried)
        # Positions that disappear are judged against the current mark (None: on the last read alone).
        self.marks: departures.MarkSource | None = None
        self._seen: dict[str, AccountSnapshot] = {}  # the last fresh snapshot judged, per account
        self._awaiting: set[str] = set()  # alerts whose position is gone, waiting for the mark
        self._verdicts: set[asyncio.Task[None]] = set()
        self._failing = False  # the last write failed: messages go to memory before the next attempt
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Take a (re)loaded configuration."""
        self.config = config
        self.rules = {r.name: r for r in config.rules}
        self.messages = messages_for(config)
        self._channels = {a.name: a.channels for a in config.accounts}
        self._tags = {a.name: a.tags for a in config.accounts}
        self._seen = {name: s for name, s in self._seen.items() if name in self._tags}
        self._retire(self.clock.now())

    def _retire(self, now: datetime) -> None:
        """Alerts whose rule or account left the configuration resolve, without a message: nothing watches
        them any more, and they must not stay firing forever."""
        for alert in list(self.alerts.values()):
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
        With `accounts`, only theirs (an account this process just took over from another)."""
        while True:
            try:
                now = self.clock.now()
                alerts = await asyncio.to_thread(self.store.alerts.load, now, accounts)
                last_success = await asyncio.to_thread(self.store.alerts.last_success)
                if accounts is None:
                    self.silences = await asyncio.to_thread(self.store.alerts.silences, now)
                    await asyncio.to_thread(self._seed_peaks, now)
                break
            except Exception as exc:
                log.error("alert state not loaded (%s); alerts wait for the database", str(exc).strip())
                await asyncio.sleep(RETRY)
        self._last_success.update(last_success)
        for alert in alerts:
            if alert.key not in self._pending.alerts:  # never over a change not written yet
                self.alerts[alert.key] = alert
                self._by_account[alert.account].add(alert.key)
        if accounts is None:
            self.ready = True
            self._retire(now)
            firing, pending = (sum(a.state is s for a in alerts) for s in (State.FIRING, State.PENDING))
            log.info("alert state loaded: %d firing, %d pending", firing, pending)

    async def adopt(self, owned: set[str]) -> None:
        """Processes sharing accounts handed some over: load the alerts of accounts gained (another process
        may have changed them), forget those of accounts this process does not poll (their owner speaks)."""
        gained = owned - self._owned if self._owned is not None else set()
        self._owned = owned
        for name in [n for n in self._by_account if n is not None and n not in owned]:
            for key in self._by_account.pop(name):
                self.alerts.pop(key, None)
        # What another process polls is its to judge; an old read kept here would make its closed positions
        # look gone (and judged again) when the account comes back.
        self._seen = {name: snapshot for name, snapshot in self._seen.items() if name in owned}
        if gained and self.ready:
            await self.load(gained)

    def _seed_peaks(self, now: datetime) -> None:
        """Drawdown peaks from the stored equity series, so a restart does not forget the high-water mark.

        Raw points where the window is within raw retention, else hourly rollups (their highs). A portfolio's
        total at each stored point is the sum of every selected account's latest value so far.
        """
        for rule in self.rules.values():
            if rule.type is not RuleType.DRAWDOWN:
                continue
            raw = rule.window <= self.config.storage.raw_retention
            names = [a.name for a in self.config.accounts if rule.selects(a.name, a.tags)]
            series = {n: self.store.equity_series(n, now - rule.window, now, hourly=not raw) for n in names}
            if not rule.portfolio:
                for name, samples in series.items():
                    for s in samples:
                        self._peak(rule, name).add(s.at, s.high)
                continue
            latest: dict[str, Decimal] = {}
            points = sorted((s.at, name, s.equity) for name, samples in series.items() for s in samples)
            for at, name, equity in points:
                latest[name] = equity
                if len(latest) == len(names):
                    self._peak(rule, None).add(at, sum(latest.values(), Decimal(0)))

    def _peak(self, rule: Rule, account: str | None) -> RollingPeak:
        key = (rule.name, account)
        if key not in self._peaks or self._peaks[key].window != rule.window:
            self._peaks[key] = RollingPeak(rule.window)
        return self._peaks[key]

    # -- evaluation --------------------------------------------------------------------------------------

    def evaluate(self, views: Iterable[AccountView], now: datetime, *, portfolio: bool = False) -> None:
        """Judge these accounts (and the portfolio rules) now; queue what changed. One account's failure (a
        bug, a broken template) is logged and does not touch the others."""
        if not self.ready:
            return
        views = list(views)
        for view in views:
            try:
                self._track_peaks(view)
                self._evaluate_account(view, now)
            except Exception:
                log.exception("%s: alert evaluation failed", view.name)
        if portfolio:
            try:
                self._evaluate_portfolio(views, now)
            except Exception:
                log.exception("portfolio alert evaluation failed")
        self._dirty.set()
        if self._failing and self._pending.messages:  # no waiting for the next write attempt to send them
            self._to_memory(self._pending)
            self.on_queued()

    def _track_peaks(self, view: AccountView) -> None:
        if view.snapshot is None or not view.fresh:
            return
        for rule in self.rules.values():
            if rule.type is RuleType.DRAWDOWN and not rule.portfolio and rule.selects(view.name, view.tags):
                self._peak(rule, view.name).add(view.snapshot.taken_at, view.snapshot.equity_usdt)

    def _severity_of(self, rule: Rule, key: str, value: Decimal) -> Severity | None:
        alert = self.alerts.get(key)
        current = alert.severity if alert is not None and alert.state in ACTIVE else None
        return rule.severity(value, current)

    def _peak_of(self, rule: Rule, account: str | None) -> Decimal | None:
        return self._peak(rule, account).peak(self.clock.now())

    def _evaluate_account(self, view: AccountView, now: datetime) -> None:
        evaluation = evaluate_account(self.rules.values(), view, now, self._severity_of, self._peak_of)
        seen, held = set(), set()
        closing: dict[str, Alert] = {}
        changes: dict[str, tuple[Alert, Transition | None]] = {}
        for obs in evaluation.observations:
            seen.add(obs.key)
            if obs.held:
                held.add(obs.key)
                continue
            current = self.alerts.get(obs.key)
            new, transition = step(current, obs, now)
            if new is None:
                continue
            if transition is not None:
                changes[obs.key] = (new, transition)
            elif current is not None:  # the value moved: kept in memory, written with the next change
                self.alerts[obs.key] = new
        for key in self._by_account.get(view.name, ()):
            alert = self.alerts[key]
            rule = self.rules.get(alert.rule)
            if key in seen or alert.state not in ACTIVE or rule is None:
                continue
            if rule.name in evaluation.held or key in self._awaiting:
                held.add(key)
                continue
            if not rule.selects(view.name, view.tags):
                reason = "the rule no longer selects this account"
            elif rule.per_position:  # its position is gone: closed or liquidated? Judged with the mark first
                closing[key] = alert
                held.add(key)
                continue
            else:
                reason = "no longer reported"
            new, transition = vanish(alert, now, reason)
            changes[key] = (new, transition)
        for key, change in self._depart(view, closing, now).items():  # what cannot wait for a mark
            changes[key] = change
            held.discard(key)
        keys = set(self._by_account.get(view.name, ())) | changes.keys()
        self._settle(changes, keys - held, now)

    # -- positions that disappear --------------------------------------------------------------------------

    def _depart(
        self, view: AccountView, closing: dict[str, Alert], now: datetime
    ) -> dict[str, tuple[Alert, Transition | None]]:
        """Positions gone since the account's last fresh read, and the alerts of positions gone: each is judged
        closed or liquidated (monitor.alerts.departures) once the mark has been read, in a task of its own.
        Returns what is settled at once: alerts of positions without a liquidation price close."""
        snapshot = view.snapshot
        if snapshot is None or not view.fresh:
            return {}
        previous, self._seen[view.name] = self._seen.get(view.name), snapshot
        gone = {}
        if previous is not None and previous is not snapshot:
            gone = departures.gone_positions(previous.positions, snapshot.positions)
        if not closing and not gone:
            return {}
        speakers = [r for r in self.rules.values()
                    if r.type is RuleType.LIQUIDATION_DISTANCE and r.selects(view.name, view.tags)]  # fmt: skip
        critical = max((r.critical for r in speakers if r.critical is not None), default=None)
        plan, closed = departures.plan(
            gone, {k: (a.subject, a.details) for k, a in closing.items()}, [r.name for r in speakers]
        )
        settled = {key: vanish(closing[key], now, CLOSED) for key in closed}
        if not plan:
            return settled
        if self.marks is None:  # no mark source wired (a bare engine): the last read decides
            self._conclude(view.name, plan, {}, critical, now, "no mark source")
            return settled
        self._awaiting.update(k for d in plan for k in d.alerts)
        task = asyncio.get_running_loop().create_task(
            self._verdict(view.name, plan, critical, snapshot.taken_at), name=f"verdict {view.name}"
        )
        self._verdicts.add(task)
        task.add_done_callback(self._verdicts.discard)
        return settled

    async def _verdict(
        self, account: str, plan: list[departures.Departure], critical: Decimal | None, since: datetime
    ) -> None:
        """Read the marks of the gone positions' product types (asked after the read that found them gone),
        then judge them. A mark that cannot be read within the request timeout leaves the last read's evidence,
        and the message says so."""
        marks: dict[str, departures.MarkTable | str] = {}
        assert self.marks is not None
        limit = self.config.monitor.request_timeout.total_seconds() * 2  # a wait for the budget, then the request
        try:
            for product_type in sorted({d.last.product_type for d in plan}):
                try:
                    async with asyncio.timeout(limit):
                        marks[product_type] = await self.marks.read(product_type, since)
                except Exception as exc:  # any failure: judged on the last read, saying the mark was unavailable
                    marks[product_type] = departures.unavailable(exc, limit)
                    log.warning("%s: marks of %s unavailable for a position that disappeared: %s", account,
                                product_type, exc or marks[product_type])  # fmt: skip
            self._conclude(account, plan, marks, critical, self.clock.now())
            self._dirty.set()
        except Exception:
            log.exception("%s: judging positions that disappeared failed", account)
        finally:
            self._awaiting.difference_update(k for d in plan for k in d.alerts)

    def _conclude(
        self, account: str, plan: list[departures.Departure], marks: dict[str, departures.MarkTable | str],
        critical: Decimal | None, now: datetime, unavailable: str = "",
    ) -> None:  # fmt: skip
        changes: dict[str, tuple[Alert, Transition | None]] = {}
        latest = self._seen.get(account)
        back = departures.subjects(latest.positions) if latest is not None else set()
        watched = account in self._tags and (self._owned is None or account in self._owned)
        for d in plan:
            if d.subject in back or not watched:  # reopened meanwhile, or no longer this process's to judge
                continue
            mark, why = None, unavailable
            source = marks.get(d.last.product_type, unavailable)
            if isinstance(source, str):
                why = source
            else:
                try:
                    mark = source.mark(d.last.symbol)
                except KeyError as exc:
                    why = str(exc.args[0]) if exc.args else "no mark"
            verdict = departures.judge(d.last, mark, critical, why)
            details = departures.details_after(d.last, mark)
            for key in d.alerts:
                alert = self.alerts.get(key)
                if alert is None or alert.state not in ACTIVE:
                    continue
                if verdict.liquidated:
                    changes[key] = self._liquidated(alert, verdict, details, now)
                else:
                    changes[key] = vanish(alert, now, verdict.reason)
            for rule in d.speakers if verdict.liquidated else ():
                key = departures.alert_key(rule, account, d.subject)
                base = self.alerts.get(key)
                if base is not None and base.state in ACTIVE:
                    continue
                base = base or Alert(key, rule, account, d.subject, State.INACTIVE, now)
                changes[key] = self._liquidated(base, verdict, details, now)
        if changes:
            self._settle(changes, changes.keys(), now)

    @staticmethod
    def _liquidated(
        alert: Alert, verdict: departures.Verdict, details: dict[str, str], now: datetime
    ) -> tuple[Alert, Transition | None]:
        return lifecycle.liquidated(
            alert, now, summary=verdict.summary, reason=verdict.reason, value=verdict.value, details=details
        )

    async def judged(self) -> None:
        """Wait for positions that disappeared to be judged (`once`, shutdown: before the last flush)."""
        while self._verdicts:
            await asyncio.gather(*list(self._verdicts), return_exceptions=True)

    def _evaluate_portfolio(self, views: list[AccountView], now: datetime) -> None:
        changes: dict[str, tuple[Alert, Transition | None]] = {}
        keys = set()
        for rule in self.rules.values():
            if not rule.portfolio:
                continue
            total = portfolio_equity(rule, views)
            if total is not None:
                self._peak(rule, None).add(now, total)
            obs = evaluate_portfolio(rule, views, self._severity_of, self._peak_of)
            if obs is None or obs.held:  # some account has no fresh data, or no peak yet: hold
                continue
            current = self.alerts.get(obs.key)
            new, transition = step(current, obs, now)
            if new is None:
                continue
            keys.add(obs.key)
            if transition is not None:
                changes[obs.key] = (new, transition)
            elif current is not None:
                self.alerts[obs.key] = new
        self._settle(changes, keys, now)

    def _settle(self, changes: dict[str, tuple[Alert, Transition | None]], keys: Iterable[str], now: datetime) -> None:
        """Decide what people hear about, render it, and only then record everything together: a message
        that cannot be rendered leaves the alerts unmarked, to be tried again."""
        current = {**{k: self.alerts[k] for k in keys if k in self.alerts}, **{k: a for k, (a, _) in changes.items()}}
        inhibited = {a.account for a in current.values() if a.state is State.FIRING
                     and (r := self.rules.get(a.rule)) is not None and r.type is RuleType.UNREACHABLE}  # fmt: skip
        items, marked = [], {}
        for key, alert in current.items():
            rule = self.rules.get(alert.rule)
            if rule is None or (alert.account in inhibited and rule.type in DATA_TYPES):
                continue
            if silenced(alert, self.silences, now):  # tracked, quiet; announced again when the silence ends
                if alert.state is State.FIRING and alert.silenced_since is None:
                    marked[key] = replace(alert, silenced_since=now)
                continue
            reason = notify_reason(alert, rule, now)
            if reason is None:
                continue
            items.append(Item(alert, reason, str(rule.type), changes.get(key, (alert, None))[1]))
            marked[key] = notified(alert, now)
        messages = self._compose(items, now) if items else []
        for key, (alert, transition) in changes.items():
            self._record(marked.pop(key, alert), transition)
        for alert in marked.values():
            self._record(alert, None)
        self._pending.messages += [Queued(m, now) for m in messages]
        self._pending.at = now

    def _compose(self, items: list[Item], now: datetime) -> list[Outgoing]:
        c = self.config
        return compose(items, self.rules, self._channels, self._tags, c.channels, self.messages, now)

    def _record(self, alert: Alert, transition: Transition | None) -> None:
        self.alerts[alert.key] = alert
        self._by_account[alert.account].add(alert.key)
        self._pending.alerts[alert.key] = alert
        if transition is not None:
            self._pending.transitions.append(transition)
            if transition.to_state is State.LIQUIDATED:
                log.warning("alert %s: %s -> liquidated (%s)", alert.key, transition.from_state, transition.reason)
            elif transition.to_state in (State.FIRING, State.RESOLVED) or transition.from_state is State.FIRING:
                log.info("alert %s: %s -> %s (%s): %s", alert.key, transition.from_state, transition.to_state,
                         transition.reason, alert.summary)  # fmt: skip

    # -- background --------------------------------------------------------------------------------------

    async def run(self, views: Callable[[], list[AccountView]], portfolio: Callable[[], bool] = lambda: True) -> None:
        """Load the state, then evaluate every TICK and write whatever changed. Portfolio rules need every
        account: `portfolio` says whether this process sees them all (not when processes share accounts)."""
        await self.load()
        writer = asyncio.create_task(self._write(), name="alert writer")
        try:
            while True:
                now = self.clock.now()
                try:
                    self.silences = await asyncio.to_thread(self.store.alerts.silences, now)
                except Exception as exc:  # keep the silences known; evaluation goes on
                    log.warning("silences not refreshed: %s", str(exc).strip())
                try:
                    self.evaluate(views(), now, portfolio=portfolio())
                    self._forget(now)
                except Exception:  # a bug must not end alerting
                    log.exception("alert evaluation pass failed")
                await asyncio.sleep(TICK)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _forget(self, now: datetime) -> None:
        """Drop settled alerts from memory (the database keeps them)."""
        for key, alert in list(self.alerts.items()):
            settled = alert.state is State.INACTIVE or (
                alert.state in ENDED and alert.resolved_at is not None
                and now - alert.resolved_at > RESOLVED_KEPT
            )  # fmt: skip
            if settled and key not in self._pending.alerts:
                del self.alerts[key]
                self._by_account[alert.account].discard(key)

    async def _write(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY)

    async def flush(self) -> bool:
        """Write what is pending. If the database is away it stays pending (in order) for the next attempt,
        and its messages go to the outbox in memory, to be delivered meanwhile and written with their delivery
        state. If the database refuses the data itself, retrying cannot help: the batch is written account by
        account, and the refused part is logged and dropped (with its alerts, which the next evaluation
        rebuilds)."""
        async with self._flushing:
            batch, self._pending = self._pending, AlertBatch(self.clock.now())
            if self._failing and batch.messages:  # the database failed last time: no message waits to see
                self._to_memory(batch)
                self.on_queued()
            try:
                if batch:
                    try:
                        await self._save(batch)
                    except BatchRejected:
                        for part in batch.by_account():
                            await self._save_or_drop(part)
            except Exception as exc:
                batch.extend(self._pending)
                self._pending = batch
                self._to_memory(batch)
                self._failing = True
                log.error(
                    "alert changes not written (%s); %d messages wait, delivered from memory meanwhile",
                    str(exc).strip(),
                    self.memory.waiting,
                )
                self._dirty.set()
                if batch.messages:
                    self.on_queued()
                return False
            self._failing = False
            try:
                await self.memory.settle(self.store)
            except Exception as exc:
                log.warning("delivery state of messages sent from memory not written yet (%s)", str(exc).strip())
                self._dirty.set()
                return False
        if batch.messages:
            self.on_queued()
        return True

    def _to_memory(self, batch: AlertBatch) -> None:
        """The batch's messages go to the outbox in memory (those it cannot hold leave the batch too)."""
        dropped = {id(m) for m in self.memory.admit(m for m in batch.messages if m.id is None)}
        batch.messages = [m for m in batch.messages if m.id is None and id(m) not in dropped]

    async def _save(self, batch: AlertBatch) -> None:
        """Write a batch; the messages the sender delivers from memory are written as they are now (a copy:
        it may record an attempt meanwhile)."""
        copy = self.memory.snapshot(batch, self.clock.now())
        await asyncio.to_thread(self.store.alerts.save, copy)
        self.memory.written(batch, copy)

    async def _save_or_drop(self, part: AlertBatch) -> None:
        try:
            await self._save(part)
        except BatchRejected as exc:
            self.rejected += 1
            log.error("alert changes refused by the database and dropped (%d alerts, %d messages): %s",
                      len(part.alerts), len(part.messages), exc)  # fmt: skip
            self.memory.forget(part.messages)
            for key, alert in part.alerts.items():
                self.alerts.pop(key, None)
                self._by_account[alert.account].discard(key)

    @property
    def last_success(self) -> dict[str, datetime]:
        """Each account's last good data as the database knew it at load (also from before this process)."""
        return self._last_success

    @property
    def waiting(self) -> int:
        """Messages evaluated but not yet in the outbox table."""
        return sum(m.id is None for m in self._pending.messages)

    def firing(self) -> list[Alert]:
        return sorted((a for a in self.alerts.values() if a.state is State.FIRING), key=alert_order)
