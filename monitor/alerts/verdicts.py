"""Positions that disappear, as the engine meets them: the last fresh read of each account is kept; a read
that finds positions gone (or closes the alerts of positions gone) plans their verdicts (the pure part is
monitor.alerts.departures), reads the current marks in a task of its own, and hands the alert changes back to
the engine (`settle`) to be recorded and announced like any other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from monitor.alerts import decide, departures
from monitor.alerts.lifecycle import vanish
from monitor.alerts.model import CLOSED, Alert
from monitor.clock import Clock
from monitor.domain import AccountSnapshot
from monitor.rules.model import Rule, RuleType
from monitor.rules.view import AccountView

log = logging.getLogger(__name__)

Changes = dict[str, decide.Change]


class Verdicts:
    def __init__(
        self, clock: Clock, current: Mapping[str, Alert], watched: Callable[[str], bool],
        settle: Callable[[Changes, Iterable[str], datetime], None], written: Callable[[], None],
    ):  # fmt: skip
        self.clock = clock
        self.current = current  # the engine's alerts in memory
        self.watched = watched  # whether an account is still configured and polled by this process
        self.settle = settle  # records and announces changes (the engine's)
        self.written = written  # wakes the writer after changes made outside a judgement
        # Positions that disappear are judged against the current mark (None: on the last read alone).
        self.marks: departures.MarkSource | None = None
        self._seen: dict[str, AccountSnapshot] = {}  # the last fresh snapshot judged, per account
        self.awaiting: set[str] = set()  # alerts whose position is gone, waiting for the mark
        self._tasks: set[asyncio.Task[None]] = set()

    def keep(self, accounts: Iterable[str]) -> None:
        """Forget the last reads of other accounts: an old read kept here would make the positions closed
        meanwhile look gone (and judged again) when the account comes back."""
        names = set(accounts)
        self._seen = {name: s for name, s in self._seen.items() if name in names}

    def depart(self, view: AccountView, closing: dict[str, Alert], rules: Iterable[Rule], now: datetime,
               timeout: float) -> Changes:  # fmt: skip
        """Positions gone since the account's last fresh read, and the alerts of positions gone: each is judged
        closed or liquidated (monitor.alerts.departures) once the mark has been read, in a task of its own
        (`timeout`: the request timeout, in seconds). Returns what is settled at once: alerts of positions
        without a liquidation price close."""
        snapshot = view.snapshot
        if snapshot is None or not view.fresh:
            return {}
        previous, self._seen[view.name] = self._seen.get(view.name), snapshot
        gone = {}
        if previous is not None and previous is not snapshot:
            gone = departures.gone_positions(previous.positions, snapshot.positions)
        if not closing and not gone:
            return {}
        speakers = [r for r in rules
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
        self.awaiting.update(k for d in plan for k in d.alerts)
        task = asyncio.get_running_loop().create_task(
            self._verdict(view.name, plan, critical, snapshot.taken_at, timeout), name=f"verdict {view.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return settled

    async def _verdict(
        self, account: str, plan: list[departures.Departure], critical: Decimal | None, since: datetime,
        timeout: float,
    ) -> None:  # fmt: skip
        """Read the marks of the gone positions' product types (asked after the read that found them gone),
        then judge them. A mark that cannot be read within the request timeout leaves the last read's evidence,
        and the message says so."""
        marks: dict[str, departures.MarkTable | str] = {}
        assert self.marks is not None
        limit = timeout * 2  # a wait for the budget, then the request
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
            self.written()
        except Exception:
            log.exception("%s: judging positions that disappeared failed", account)
        finally:
            self.awaiting.difference_update(k for d in plan for k in d.alerts)

    def _conclude(
        self, account: str, plan: list[departures.Departure], marks: dict[str, departures.MarkTable | str],
        critical: Decimal | None, now: datetime, unavailable: str = "",
    ) -> None:  # fmt: skip
        changes = decide.conclude(account, plan, marks, self.current, self._seen.get(account), self.watched(account),
                                  critical, now, unavailable)  # fmt: skip
        if changes:
            self.settle(changes, changes.keys(), now)

    async def judged(self) -> None:
        """Wait for positions that disappeared to be judged (`once`, shutdown: before the last flush)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
