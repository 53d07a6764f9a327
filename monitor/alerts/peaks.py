"""The drawdown peaks the engine keeps: one rolling high-water mark (RollingPeak) per drawdown rule and account
(None: a portfolio rule's total), fed by every fresh read and seeded on start from the stored equity series."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from monitor.alerts.ports import AlertStorage
from monitor.config.model import Config
from monitor.rules.evaluate import portfolio_equity
from monitor.rules.model import Rule, RuleType
from monitor.rules.view import AccountView


class Peaks:
    def __init__(self) -> None:
        self._peaks: dict[tuple[str, str | None], RollingPeak] = {}

    @property
    def seeded(self) -> bool:
        """Whether any sample is in (a late seed would put old samples behind newer ones)."""
        return bool(self._peaks)

    def seed(self, config: Config, rules: Iterable[Rule], store: AlertStorage, now: datetime) -> None:
        """Drawdown peaks from the stored equity series, so a restart does not forget the high-water mark.

        Raw points where the window is within raw retention, else hourly rollups (their highs). A portfolio's
        total at each stored point is the sum of every selected account's latest value so far.
        """
        for rule in rules:
            if rule.type is not RuleType.DRAWDOWN:
                continue
            raw = rule.window <= config.storage.raw_retention
            names = [a.name for a in config.accounts if rule.selects(a.name, a.tags)]
            series = {n: store.equity_series(n, now - rule.window, now, hourly=not raw) for n in names}
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

    def track(self, view: AccountView, rules: Iterable[Rule]) -> None:
        """Every fresh read is a sample, judged or not."""
        if view.snapshot is None or not view.fresh:
            return
        for rule in rules:
            if rule.type is RuleType.DRAWDOWN and not rule.portfolio and rule.selects(view.name, view.tags):
                self._peak(rule, view.name).add(view.snapshot.taken_at, view.snapshot.equity_usdt)

    def account(self, view: AccountView, rules: Iterable[Rule], now: datetime) -> dict[str, Decimal]:
        """The account's drawdown peaks at `now`, by rule."""
        peaks = {}
        for rule in rules:
            if rule.type is RuleType.DRAWDOWN and not rule.portfolio and rule.selects(view.name, view.tags):
                peak = self._peak(rule, view.name).peak(now)
                if peak is not None:
                    peaks[rule.name] = peak
        return peaks

    def portfolio(self, views: list[AccountView], rules: Iterable[Rule], now: datetime) -> dict[str, Decimal]:
        """Take the portfolio totals now into the portfolio rules' peaks; their peaks at `now`, by rule."""
        peaks = {}
        for rule in rules:
            if not rule.portfolio:
                continue
            total = portfolio_equity(rule, views)
            if total is not None:
                self._peak(rule, None).add(now, total)
            peak = self._peak(rule, None).peak(now)
            if peak is not None:
                peaks[rule.name] = peak
        return peaks


class RollingPeak:
    """The highest value within a sliding time window, in O(1) amortised per sample (a monotonic queue)."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._samples: deque[tuple[datetime, Decimal]] = deque()  # values strictly decreasing

    def add(self, at: datetime, value: Decimal) -> None:
        while self._samples and self._samples[-1][1] <= value:
            self._samples.pop()
        self._samples.append((at, value))

    def peak(self, now: datetime) -> Decimal | None:
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        return self._samples[0][1] if self._samples else None
