"""Judging between account reads, on every mark the feed reads: what the rules see of each account, and when a
mark asks for a confirming read.

- What the rules see (`snapshot_for`, handed to `AccountViews`) of an account with an active alert: each
  position at the latest mark when that is worse for it than the read (closer to liquidation, and no more PnL),
  else as read: a mark may make things worse at once, but easing and resolving wait for a read. An account
  without one is judged as read (but for the odds of liquidation, which move with time alone): a mark taking one
  of its positions past a level asks for a read before anything is judged.
- On each new mark of a product type (`_marked`) the accounts holding positions of it are checked: a live value
  worse than a rule level the account's alerts stand at asks for a confirming read (monitor.confirming); judged
  on the live estimate meanwhile, an account follows every mark, and its messages say "estimated from the mark
  price; account read pending" until a read comes. A live value entering the at-risk band asks for a read too,
  which puts the account on the risk cadence. A mark that worsens nothing past a level is not judged: it could
  not move an alert (easing waits for a read); the alerts' values follow the marks at the engine's timer and at
  each read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from monitor.alerts.decide import ActiveSeverities
from monitor.alerts.engine import AlertEngine
from monitor.clock import Clock
from monitor.confirming import ConfirmingReads, Pending
from monitor.domain import AccountSnapshot, Position
from monitor.market.feed import SPOT
from monitor.market.live import worse_of
from monitor.market.quiet import Band, Current, check, quiet_bands
from monitor.market.watch import MarketWatch
from monitor.poller.scheduler import Poller
from monitor.poller.state import AccountState, Reading
from monitor.rules.evaluate import VALUED, evaluate_account, position_subject
from monitor.rules.model import Rule, RuleType, Severity
from monitor.rules.view import AccountView, alert_key

ViewOf = Callable[[Reading, datetime], AccountView]


class LiveJudge:
    def __init__(
        self,
        market: MarketWatch,
        poller: Poller,
        engine: AlertEngine,
        clock: Clock,
        confirm_timeout: Callable[[], float],
    ) -> None:
        self.market = market
        self.poller = poller
        self.engine = engine
        self.clock = clock
        self.view_of: ViewOf | None = None  # AccountViews.of: set by the service
        self.confirming = ConfirmingReads(poller, confirm_timeout, self._looked_at, self._judge_estimate)
        # Per account: its read and the marks of its positions (`_marks`), and the snapshot at those marks as live
        # and as judged (`worse_of`): re-priced once per read and move of its marks, not at every use.
        self._live: dict[str, tuple[AccountSnapshot, tuple[Decimal | None, ...], AccountSnapshot, AccountSnapshot]] = {}
        # Per account: what the last mark's pass saw when it left the account as it was (see `_sight`).
        self._quiet: dict[str, tuple[object, ...]] = {}
        self._rules: Mapping[str, Rule] | None = None  # the engine's rules `_watching` was made for
        self._watching: dict[str, tuple[tuple[str, ...], tuple[Rule, ...]]] = {}  # account: (tags, position rules)
        # Per account: the read, position rules and at-risk band its quiet bands were made for, and the bands.
        self._bands: dict[str, tuple[AccountSnapshot, tuple[Rule, ...], Decimal | None, tuple[Band, ...] | None]] = {}
        self._unsubscribe = market.subscribe(self._marked)

    async def run(self) -> None:
        """Read marks until cancelled."""
        try:
            await self.market.run()
        finally:
            self._unsubscribe()
            self.confirming.close()

    def polled(self, reading: Reading) -> None:
        """After each read: the feed watches what the account holds."""
        self.market.polled(reading.name, reading.snapshot)
        if reading.snapshot is None or not reading.snapshot.positions:
            self._live.pop(reading.name, None)
            self._bands.pop(reading.name, None)

    def pending(self, name: str) -> bool:
        return self.confirming.get(name) is not None

    # -- what the rules see ------------------------------------------------------------------------------

    def snapshot_for(self, reading: Reading) -> tuple[AccountSnapshot | None, bool]:
        """(the snapshot the rules judge, whether it is an estimate from the mark price)."""
        snapshot = reading.snapshot
        if snapshot is None or not snapshot.positions:
            return snapshot, False
        pending = self.confirming.get(reading.name)
        started = reading.read_started_at
        if pending is not None and started is not None and started >= pending.asked:  # the confirming read came
            self.confirming.settle(reading.name)  # (one already under way when it was asked read the market before)
            pending = None
        if pending is None:
            if not self.engine.active(reading.name) and not self._odds(reading):  # a mark past a level asks
                return snapshot, False  # for a read first (`_marked`): at the marks, judged as its read was
            return self._live_of(reading.name, snapshot)[1], False
        if pending.estimated:
            return self._live_of(reading.name, snapshot)[0], True
        return snapshot, False  # as read until the confirming read comes (or the timeout)

    def _live_of(
        self, name: str, snapshot: AccountSnapshot, marks: tuple[Decimal | None, ...] | None = None
    ) -> tuple[AccountSnapshot, AccountSnapshot]:
        """(the snapshot at the latest marks, the worse of it and the read for each position); `marks`: its
        `_marks` when known."""
        marks = self._marks(snapshot) if marks is None else marks
        known = self._live.get(name)
        if known is not None and known[0] is snapshot and known[1] == marks:
            return known[2], known[3]
        if not any(m is not None for m in marks):  # no mark newer than the read: exactly as read
            live = worse = snapshot
        else:
            live = self.market.live(snapshot)
            worse = worse_of(snapshot, live)
        self._live[name] = (snapshot, marks, live, worse)
        return live, worse

    def _marks(self, snapshot: AccountSnapshot) -> tuple[Decimal | None, ...]:
        """The marks `MarketWatch.live` would use for the snapshot's positions: the price of each one newer than
        the read (None: as read). The same marks give the same live snapshot."""
        marks = []
        for p in snapshot.positions:
            mark = self.market.mark(p.product_type, p.symbol)
            marks.append(None if mark is None or mark.at <= snapshot.taken_at else mark.price)
        return tuple(marks)

    # -- on each mark ------------------------------------------------------------------------------------

    def _marked(self, product_type: str) -> None:
        if product_type == SPOT or self.view_of is None:
            return
        now = self.clock.now()
        views = []
        for name in self.market.holders(product_type):
            state = self._state(name)
            if state is None:  # removed, or now polled by another process: stop watching for it
                self.market.forget(name)
                self.confirming.settle(name)
                self._quiet.pop(name, None)
                self._live.pop(name, None)
                self._bands.pop(name, None)
                self._watching.pop(name, None)
                continue
            if state.snapshot is None:
                continue
            marks = self._marks(state.snapshot)
            sight = self._sight(state.snapshot, marks, state.at_risk)
            if not self.pending(name):
                if self._quiet.get(name) == sight:  # the same read at the same marks: nothing to check again
                    continue
                found = self._figures(name, state, marks, now)
                if found is not None:
                    self._act(name, *found, now)
                    if not self.pending(name):
                        self._quiet[name] = sight
                    continue
            reading = state.reading(self.poller.cadence)
            pending = self.confirming.get(name)
            view = self.view_of(reading, now)  # settles `pending` if its confirming read has come
            self._check(reading, view, pending, now, marks)
            if pending is not None and pending.estimated and self.confirming.get(name) is pending:
                views.append(view)  # judged on the estimate: it follows the marks
            if self.pending(name):
                self._quiet.pop(name, None)
            else:
                self._quiet[name] = sight
        if views:
            self.engine.evaluate(views, now, changed_only=True)

    def _sight(self, snapshot: AccountSnapshot, marks: tuple[Decimal | None, ...], at_risk: bool) -> tuple[object, ...]:
        """What a mark's pass over an account depends on: the read, the marks of its positions (whether newer
        than the read, and their price: all `live` uses), its risk, and the rules. The same sight again means the
        same check; time alone moves alerts on the engine's timer, as between reads."""
        return (snapshot, marks, at_risk, self.engine.rules, self.poller.risk)

    def _figures(
        self, name: str, state: AccountState, marks: tuple[Decimal | None, ...], now: datetime
    ) -> tuple[bool, bool, bool] | None:
        """What `_check` finds of an account not waiting for a read, from each position's live figures without
        building a view or a live snapshot (monitor.market.quiet.check; its margin ratio stays as read). None
        where only `_check` can tell: an odds rule watches it (judged on the mark history), or its data is not
        fresh (the rules hold). Most accounts at most marks have no active alert and every mark inside its
        position's quiet band: nothing is computed for them."""
        snapshot = state.snapshot
        assert snapshot is not None
        m = self.poller.config.monitor
        rules = self._position_rules(name, state.config.tags)
        if any(rule.type not in VALUED for rule in rules) or state.stale(now, self.poller.cadence, m.stale_grace):
            return None
        band = None if state.at_risk else self.poller.risk.liquidation_pct
        current: Current | None = None
        if self.engine.active(name):
            active = ActiveSeverities(self.engine.current)

            def current(rule: Rule, p: Position) -> Severity | None:
                found: Severity | None = active.get(alert_key(rule.name, name, position_subject(p)))
                return found

        else:
            bands = self._bands_of(name, snapshot, rules, band)
            if bands is not None and all(b.holds(price) for b, price in zip(bands, marks, strict=True)):
                return False, False, False  # every mark inside its position's quiet band
        return check(snapshot, rules, marks, self.market.mark, current, band)

    def _bands_of(
        self, name: str, snapshot: AccountSnapshot, rules: tuple[Rule, ...], band: Decimal | None
    ) -> tuple[Band, ...] | None:
        """The account's quiet bands (monitor.market.quiet), made once per read, rules and at-risk band; None
        where they cannot be told."""
        known = self._bands.get(name)
        if known is None or known[0] is not snapshot or known[1] is not rules or known[2] != band:
            known = self._bands[name] = (snapshot, rules, band, quiet_bands(snapshot, rules, band, self.market.mark))
        return known[3]

    def _act(self, name: str, worse: bool, beyond: bool, entering: bool, now: datetime) -> None:
        """A confirming read when worse than the alerts (judged on the estimate at once when past liquidation);
        else a read to start the risk cadence when entering the at-risk band."""
        if worse:
            self.confirming.ask(name, now, at_once=beyond)
        elif entering:
            self.poller.read_now(name, confirming=False)

    def _odds(self, reading: Reading) -> bool:
        """Whether an odds-of-liquidation rule watches the account: its odds move with time alone (the
        volatility's window), at the live distance, which the marks' pass does not look at again."""
        rules = self._position_rules(reading.name, reading.tags)
        return any(rule.type is RuleType.LIQUIDATION_PROBABILITY for rule in rules)

    def _position_rules(self, name: str, tags: tuple[str, ...]) -> tuple[Rule, ...]:
        """The position rules that watch an account (kept while the rules and its tags stay the same)."""
        rules = self.engine.rules
        if self._rules is not rules:
            self._rules, self._watching = rules, {}
        known = self._watching.get(name)
        if known is None or known[0] != tags:
            chosen = tuple(r for r in rules.values() if r.per_position and not r.portfolio and r.selects(name, tags))
            known = self._watching[name] = (tags, chosen)
        return known[1]

    def _check(
        self, reading: Reading, view: AccountView, pending: Pending | None, now: datetime,
        marks: tuple[Decimal | None, ...],
    ) -> None:  # fmt: skip
        """Ask for a confirming read, or judge on the estimate, when the live view is worse than the alerts
        (`view`: the account as the rules see it now; `pending`: its confirmation as it was before that view;
        `marks`: the read's `_marks`)."""
        if pending is not None and pending.estimated:
            return
        assert reading.snapshot is not None
        live = self._live_of(reading.name, reading.snapshot, marks)[0]
        worse = self._worse_than_alerts(replace(view, snapshot=live), now)
        beyond = any(_beyond(p) for p in live.positions)
        if pending is not None:  # waiting for its read: only a liquidation seen cannot wait
            if self.confirming.get(reading.name) is not pending:
                return  # its read came with this view: the engine judges the read, not an estimate
            if beyond and worse:
                self.confirming.estimate(reading.name, pending)
            return
        self._act(reading.name, worse, beyond, not reading.at_risk and self.poller.risk.at_risk(live), now)

    def _worse_than_alerts(self, view: AccountView, now: datetime) -> bool:
        """Whether a position rule judges the live view worse than the alert it stands at (or at all)."""
        active = ActiveSeverities(self.engine.current)
        rules = [r for r in self.engine.rules.values() if r.per_position]
        for obs in evaluate_account(rules, view, now, active).observations:
            if obs.severity is not None:
                current = active.get(obs.key)
                if current is None or obs.severity.rank > current.rank:
                    return True
        return False

    # -- for the confirming reads ----------------------------------------------------------------------

    def _looked_at(self, name: str) -> None:
        """What the rules see of the account now (settles its confirmation if the read came)."""
        reading = self._reading(name)
        if reading is not None:
            self.snapshot_for(reading)

    def _judge_estimate(self, name: str) -> None:
        reading = self._reading(name)
        if reading is not None and self.view_of is not None:
            now = self.clock.now()
            self.engine.evaluate([self.view_of(reading, now)], now)

    def _reading(self, name: str) -> Reading | None:
        state = self._state(name)
        return state.reading(self.poller.cadence) if state is not None else None

    def _state(self, name: str) -> AccountState | None:
        """The poller's state of an account this process polls."""
        poller = self.poller
        state = poller.accounts.get(name)
        if state is None or (poller.owned is not None and name not in poller.owned):
            return None
        return state


def _beyond(p: Position) -> bool:
    distance = p.liquidation_distance_pct
    return distance is not None and distance <= 0
