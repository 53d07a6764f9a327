"""The poller: every account read every poll_interval (risky ones every risk_poll_interval), each in its own
task, all inside one IP budget and per-account endpoint budgets. One account's faults never touch another's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import aiohttp

from monitor.clock import Clock, wait_for_event
from monitor.config.model import AccountConfig, Config
from monitor.domain import PollOutcome
from monitor.errors import ExchangeError
from monitor.exchange.bitget.client import BitgetClient, Credentials
from monitor.exchange.bitget.ratelimit import AccountBudget, IpBudget
from monitor.exchange.bitget.servertime import ServerClock
from monitor.exchange.bitget.window import CONFIRMING, RISK, ROUTINE
from monitor.numbers import counted
from monitor.poller.lag import LoopWatch
from monitor.poller.poll import read_account
from monitor.poller.spot import SpotPrice
from monitor.poller.state import AccountState, Reading, RiskLevels, Status

log = logging.getLogger(__name__)

JITTER = 0.05  # each routine interval varies by this fraction, so accounts spread over the interval's batches
# Routine reads falling due near the same BATCH boundary (at most a 30th of poll_interval) go out together, on the
# loop's clock: one wake-up of the event loop and their answers read in the same passes, instead of one of each per
# read. That is a quarter of the CPU a request costs at steady state (bench.steady). The per-IP pacing lets a
# second's worth through at once, so a batch is never a burst Bitget would count against us. Risk re-reads keep
# their exact cadence, counted from when each was due (so they stay on the batch they began on: counted from when
# the loop got to them, they drifted off it by a few milliseconds a read); reads asked for go at once.
BATCH = 1.0
BEHIND_CHECK_INTERVAL = 10.0  # seconds between checks whether polling keeps up


class Sink(Protocol):
    """Where the poller hands each poll's result as it comes: the outcome, and the account as data."""

    def __call__(self, reading: Reading, outcome: PollOutcome, /) -> None: ...


@dataclass(frozen=True)
class PollerStatus:
    """Accounts by status (monitor.poller.state.account_status), and how many have no fresh data (whatever
    their status: an unreachable account is stale too)."""

    accounts: int
    ok: int
    stale: int
    unreachable: int
    failing: int
    behind: bool  # the IP budget cannot read every account once per poll_interval
    effective_interval: float  # seconds between two reads of one account, recently


class Poller:
    def __init__(
        self,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        risk: RiskLevels | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.clock = clock
        self.risk = risk or RiskLevels.from_rules(config.rules)
        self.sink = sink
        self.spot_prices: SpotPrice | None = None  # the market feed's spot prices (`run`); None: Bitget values spot
        self.ip_budget = IpBudget(*config.monitor.ip_budget, clock)
        self.server_clock = ServerClock(clock)
        self.accounts: dict[str, AccountState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}  # set: read this account at once (read_now)
        self._confirming: set[str] = set()  # accounts whose read asked for is a confirming one
        self._behind = False
        self._behind_checked = float("-inf")
        # How often each account is really read: poll_interval, or the longer median gap while polling is behind.
        self.cadence = config.monitor.poll_interval
        self._running = False
        self.owned: set[str] | None = None  # accounts this process polls; None: all (no other process shares)
        self.watch = LoopWatch(clock)  # runs with `run`: stalls there are not held against the accounts
        self._watching: asyncio.Task[None] | None = None
        for account in config.accounts:
            self.accounts[account.name] = self._state(account)

    def _state(self, account: AccountConfig) -> AccountState:
        return AccountState(account, self._client(account), watch=self.watch, stall_mark=self.watch.stalled())

    def _client(self, account: AccountConfig) -> BitgetClient:
        m = self.config.monitor
        return BitgetClient(
            self.session, m.bitget_url, account.name,
            Credentials(account.api_key, account.api_secret, account.passphrase, account.demo),
            self.server_clock, timeout=m.request_timeout.total_seconds(), budget=AccountBudget(self.ip_budget),
            lockout=m.ip_lockout.total_seconds(), max_response_size=m.max_response_size,
        )  # fmt: skip

    # -- one poll ----------------------------------------------------------------------------------------

    async def poll(self, state: AccountState, *, risk_only: bool = False, confirming: bool = False) -> PollOutcome:
        """Read one account once (monitor.poller.poll) and hand the outcome to the sink."""
        outcome = await read_account(state, self.clock, self.config.monitor, self.risk, self.spot_prices,
                                     risk_only=risk_only, confirming=confirming)  # fmt: skip
        state.polls += 1
        if self.sink is not None:
            self.sink(state.reading(self.cadence), outcome)
        return outcome

    # -- one cycle (`once`) --------------------------------------------------------------------------------

    async def cycle(self) -> list[PollOutcome]:
        """Read every account once, concurrently, inside the budgets."""
        await self._sync_time()
        return list(await asyncio.gather(*(self.poll(s) for s in self.accounts.values())))

    async def _sync_time(self) -> None:
        if self.accounts and not self.server_clock.measured:
            try:
                await next(iter(self.accounts.values())).client.sync_time()
            except ExchangeError as exc:
                log.warning("cannot read Bitget's clock (%s); signing with this machine's clock", exc)

    # -- continuous polling (`run`) -----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every account this process owns until cancelled."""
        await self._sync_time()
        self._running = True
        self._watching = asyncio.create_task(self.watch.run(), name="loop watch")
        self.start(stagger=True)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def start(self, *, stagger: bool = True) -> None:
        """Start a polling task for every account this process owns (`stagger`: first reads spread over one
        interval, as `run` does)."""
        for state in self.active():
            self._start(state, stagger=stagger)

    @property
    def running(self) -> bool:
        return self._running

    def read_now(self, name: str, *, confirming: bool = True) -> bool:
        """Read this account at once, ahead of its next turn, still inside its budgets; a read in flight is
        followed by another at once. `confirming`: a mark moved it past a rule level (first in line after the
        feed); else its risk cadence starts (in line with the other risk reads). False when this process does not
        poll it (not running, not owned, unknown)."""
        if name not in self._tasks:
            return False
        if confirming:
            self._confirming.add(name)
        self._wakes.setdefault(name, asyncio.Event()).set()
        budget = self.accounts[name].client.budget
        if budget is not None:  # a routine read of it waiting for the budget goes first too, not to hold this up
            budget.promote(CONFIRMING if confirming else RISK)
        return True

    def active(self) -> list[AccountState]:
        return [s for s in self.accounts.values() if self.owned is None or s.name in self.owned]

    def readings(self) -> list[Reading]:
        """The accounts this process polls, as data."""
        return [s.reading(self.cadence) for s in self.active()]

    def set_owned(self, owned: set[str] | None) -> None:
        """Poll exactly these accounts from now on (leases shared with other processes)."""
        if owned == self.owned:
            return
        log.info("this process now polls %s", "all accounts" if owned is None else counted(len(owned), "account"))
        self.owned = owned
        for name in [n for n in self._tasks if owned is not None and n not in owned]:
            self._tasks.pop(name).cancel()
        if self._running:
            for state in self.active():
                if state.name not in self._tasks:
                    self._start(state, stagger=True)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        if self._watching is not None:
            tasks.append(self._watching)
            self._watching = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _start(self, state: AccountState, *, stagger: bool) -> None:
        self._tasks[state.name] = asyncio.create_task(self._loop(state, stagger), name=f"poll {state.name}")

    async def _loop(self, state: AccountState, stagger: bool) -> None:
        m = self.config.monitor
        interval = m.poll_interval.total_seconds()
        wake = self._wakes.setdefault(state.name, asyncio.Event())
        due: float | None = None  # when the coming read is due (the loop may get to it a little later)
        if stagger:  # spread the first reads over one interval
            first = batched(random.uniform(0, interval), interval)
            due = self.clock.monotonic() + first
            await _sleep(wake, first)
        last_start: float | None = None
        while True:
            start = self.clock.monotonic()
            woken = wake.is_set()
            on_cadence = not woken and due is not None  # a read asked for (or the first) starts its own cadence
            planned = due if on_cadence and due is not None else start
            wake.clear()
            confirming = state.name in self._confirming
            self._confirming.discard(state.name)
            if last_start is not None and not woken:  # a read asked for says nothing of the cadence
                state.history = [*state.history[-9:], start - last_start]
            last_start = start
            full_due = state.full_read_at is None or start - state.full_read_at >= interval
            try:
                quick = (state.at_risk or woken) and state.snapshot is not None and not full_due
                budget = state.client.budget
                if budget is not None:  # at a full per-IP budget routine reads wait, these keep their cadence
                    budget.priority = CONFIRMING if confirming else RISK if state.at_risk or woken else ROUTINE
                await self.poll(state, risk_only=quick, confirming=confirming)
                self._check_behind()
            except Exception:  # a bug must not end this account's polling
                log.exception("%s: unexpected error while polling", state.name)
            now = self.clock.monotonic()
            if state.status == Status.UNREACHABLE:
                wait = start + m.permanent_error_retry.total_seconds() - now
            elif state.at_risk:  # a fixed cadence from when each read was due: exact, and it stays on its batch
                wait = planned + m.risk_poll_interval.total_seconds() - now
                if not on_cadence:  # one that began off the batches moves onto the nearest, once
                    wait = batched(wait, interval)
            else:
                wait = batched(start + interval * random.uniform(1 - JITTER, 1 + JITTER) - now, interval)
            due = now + max(0.0, wait)
            await _sleep(wake, max(0.0, wait))

    def _check_behind(self) -> None:
        now = self.clock.monotonic()
        if now - self._behind_checked < BEHIND_CHECK_INTERVAL:  # status() is O(accounts): not after every poll
            return
        self._behind_checked = now
        status = self.status()
        interval = self.config.monitor.poll_interval.total_seconds()
        if status.behind and not self._behind:
            log.warning("polling is behind: %d accounts do not fit in ip_budget within poll_interval (%.0f s); "
                        "each account is read every %.0f s instead", status.accounts, interval,
                        status.effective_interval)  # fmt: skip
        elif self._behind and not status.behind:
            log.info("polling keeps up with poll_interval again")
        self._behind = status.behind
        self.cadence = (
            timedelta(seconds=status.effective_interval) if status.behind else self.config.monitor.poll_interval
        )

    # -- reload ------------------------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Take a new configuration: add, remove and update accounts in place, keep the rest running."""
        old = self.config
        self.config = config
        self.risk = RiskLevels.from_rules(config.rules)
        self._behind_checked = float("-inf")  # cadence and "behind" against the new poll_interval, soon
        if not self._behind:
            self.cadence = config.monitor.poll_interval
        new = {a.name: a for a in config.accounts}
        for name in list(self.accounts):
            if name not in new:
                self.accounts.pop(name)
                task = self._tasks.pop(name, None)
                if task:
                    task.cancel()
                log.info("%s: removed", name)
        for name, account in new.items():
            state = self.accounts.get(name)
            if state is None:
                state = self.accounts[name] = self._state(account)
                log.info("%s: added", name)
            elif state.config != account or old.monitor != config.monitor:
                state.config, state.client = account, self._client(account)
                state.key_checked_at = None
                if state.status == Status.UNREACHABLE:  # the fix may be in this change: try again now
                    state.status = Status.PENDING
                task = self._tasks.pop(name, None)
                if task:
                    task.cancel()
                log.info("%s: updated", name)
            if self._running and name not in self._tasks and (self.owned is None or name in self.owned):
                self._start(state, stagger=False)

    # -- status ------------------------------------------------------------------------------------------

    def status(self) -> PollerStatus:
        now = self.clock.now()
        m = self.config.monitor
        states = self.active()
        gaps = [g for s in states for g in s.history[-3:] if not s.at_risk and s.status != Status.UNREACHABLE]
        effective = sorted(gaps)[len(gaps) // 2] if gaps else m.poll_interval.total_seconds()
        counts = Counter(s.account_status(now, m.poll_interval, m.stale_grace) for s in states)
        return PollerStatus(
            accounts=len(states),
            ok=counts["ok"],
            stale=sum(s.stale(now, m.poll_interval, m.stale_grace) for s in states),
            unreachable=counts["unreachable"],
            failing=counts["failing"],
            behind=effective > m.poll_interval.total_seconds() * (1 + 2 * JITTER) + 1,
            effective_interval=effective,
        )


def batched(seconds: float, poll_interval: float, now: float | None = None) -> float:
    """A routine read's wait of `seconds` from `now` (default: the event loop's clock) moved to the nearest BATCH
    boundary (see BATCH): its jitter is larger, so the cadence keeps its average. A read already due goes now."""
    if seconds <= 0:
        return 0.0
    grid = min(BATCH, poll_interval / 30)
    now = asyncio.get_running_loop().time() if now is None else now
    return max(0.0, round((now + seconds) / grid) * grid - now)


async def _sleep(wake: asyncio.Event, seconds: float) -> None:
    """Sleep, or less when asked to read at once."""
    await wait_for_event(wake, seconds)
