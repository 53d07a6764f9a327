"""What each account's last judgement saw, so that the timer and a new mark leave out an account whose judgement
could not change (the engine's `changed_only`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from monitor.rules.evaluate import unreachable_intervals
from monitor.rules.model import Rule, RuleType
from monitor.rules.view import AccountView

Sight = tuple[object, ...]


class Sights:
    def __init__(self) -> None:
        self._judged: dict[str, Sight] = {}  # per account: what its last judgement saw
        self._odds = False  # whether an odds-of-liquidation rule may watch a position

    def configure(self, rules: Iterable[Rule]) -> None:
        """A (re)loaded configuration: other rules may judge the same data otherwise."""
        self._judged.clear()
        self._odds = any(r.type is RuleType.LIQUIDATION_PROBABILITY for r in rules)

    def clear(self) -> None:
        self._judged.clear()

    def of(self, view: AccountView, now: datetime) -> Sight:
        """What judging an account depends on, but for time: an account without alerts whose sight is the one
        last judged is left as it is by a judgement now. Time moves only the unreachable count (part of the
        sight), drawdown peaks (they can only fall: less drawdown) and the odds of liquidation (the volatility
        moves with every mark: never left out while an odds rule may watch a position)."""
        s = view.snapshot
        if s is None:
            data: Sight = ()
        elif self._odds and s.positions:
            return (now,)  # never the same twice
        else:  # what was read, not when: a read that changed nothing leaves the judgement as it was
            data = (s.account, s.mode, s.spot, s.spot_usdt, s.futures, s.unified, s.positions, s.products)
        return (data, view.fresh, view.polled, view.permanent_error, view.error_code, view.error_message, view.key,
                view.estimated, view.tags, unreachable_intervals(view, now))  # fmt: skip

    def unchanged(self, account: str, sight: Sight) -> bool:
        return self._judged.get(account) == sight

    def forget(self, account: str) -> None:
        self._judged.pop(account, None)

    def judged(self, account: str, sight: Sight) -> None:
        """A judgement that succeeded (one that failed, a broken template, is tried again)."""
        self._judged[account] = sight
