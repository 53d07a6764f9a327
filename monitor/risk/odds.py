"""The odds of liquidation: how likely the mark is to reach a position's liquidation price within a horizon.

The model: the log of the mark is a driftless Brownian motion with volatility sigma (per square root of a second),
estimated from the recent marks of the symbol. For such a walk started at ln M, the probability of touching the
level ln L within T seconds is, by the reflection principle,

    P = 2 * (1 - Phi(|ln(L / M)| / (sigma * sqrt(T))))  =  erfc(|ln(L / M)| / (sigma * sqrt(2 T)))

with Phi the standard normal distribution function. Assumptions and limits, to keep in mind when reading it:
- no drift: the trend of the market is ignored (over hours it is small beside the noise, and nobody knows it);
- constant volatility: sigma is the recent realized one; a calm market that wakes up is underestimated;
- continuous monitoring: Bitget watches the mark all the time, the formula too (a walk sampled in steps touches
  the level less often than this, which makes the formula the cautious side);
- normal returns: crypto returns have fat tails, so large moves, and with them the odds of a distant liquidation,
  are underestimated; the figure is a guide to compare positions and horizons, not a promise;
- the liquidation price itself is taken as fixed: true for an isolated position, an approximation for a crossed
  one, whose price moves with the other positions of the account.

Volatility from marks: with log returns r_i over intervals dt_i (irregular spacing and gaps are fine: a gap's
return simply spans its longer interval), sigma^2 = sum r_i^2 / sum dt_i, the maximum-likelihood estimate for a
driftless walk. It needs at least MIN_SAMPLES marks spanning MIN_SPAN; fewer say too little, and give None.
Marks quantised to the tick add noise to very short returns: on a coarse tick (a cheap coin), 10-second samples
overstate sigma a little.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from monitor.domain import Position

MIN_SAMPLES = 30
MIN_SPAN = timedelta(minutes=10)
HORIZONS = (timedelta(hours=1), timedelta(hours=24))

Sample = tuple[datetime, Decimal]  # (time, mark)


def realized_volatility(
    samples: Iterable[tuple[datetime, Decimal | float]],
    *,
    min_samples: int = MIN_SAMPLES,
    min_span: timedelta = MIN_SPAN,
) -> float | None:
    """Volatility of the log mark per square root of a second, or None with too little history (or a mark that
    did not move in it).

    Samples may come in any order; marks that are not positive, and samples at a time already seen, are skipped.
    """
    points = sorted((_seconds(at), float(mark)) for at, mark in samples if mark > 0)
    return _volatility(points, min_samples, min_span)


def _volatility(points: list[tuple[float, float]], min_samples: int, min_span: timedelta) -> float | None:
    """realized_volatility of (seconds, mark) points in time order."""
    squares = 0.0
    elapsed = 0.0
    count = 0
    previous: tuple[float, float] | None = None
    for t, mark in points:
        if previous is not None:
            if t <= previous[0]:
                continue
            squares += math.log(mark / previous[1]) ** 2
            elapsed += t - previous[0]
        previous = (t, mark)
        count += 1
    if count < min_samples or elapsed < min_span.total_seconds():
        return None
    if squares == 0:  # a mark that never moved (a frozen feed, a halted market) says nothing of the odds: not "0 %"
        return None
    return math.sqrt(squares / elapsed)


def hit_probability(mark: Decimal, price: Decimal, volatility: float, horizon: timedelta) -> float:
    """Probability that the mark touches `price` within `horizon` (first passage of a driftless walk in log
    price). Raises ValueError for a mark or price that is not positive, or a negative volatility or horizon."""
    if not (mark > 0 and price > 0):
        raise ValueError(f"mark and price must be positive, got {mark} and {price}")
    seconds = horizon.total_seconds()
    if volatility < 0 or seconds < 0:
        raise ValueError(f"volatility and horizon must not be negative, got {volatility} and {horizon}")
    gap = abs(math.log(float(price) / float(mark)))
    if gap == 0:
        return 1.0
    if volatility == 0 or seconds == 0:
        return 0.0
    return math.erfc(gap / (volatility * math.sqrt(2 * seconds)))


def liquidation_probability(position: Position, volatility: float | None, horizon: timedelta) -> float | None:
    """Probability that `position` is liquidated within `horizon`: 1 when the mark is already at or past its
    liquidation price; None without a liquidation price or without a volatility (too little history)."""
    distance = position.liquidation_distance_pct
    if distance is None or position.liquidation_price is None:
        return None
    if distance <= 0:
        return 1.0
    if volatility is None:
        return None
    return hit_probability(position.mark_price, position.liquidation_price, volatility, horizon)


def position_odds(
    position: Position, history: MarkHistory, now: datetime, horizons: Iterable[timedelta] = HORIZONS
) -> dict[timedelta, float | None]:
    """liquidation_probability of `position` for each horizon, with its symbol's volatility from `history`."""
    volatility = history.volatility(position.product_type, position.symbol, now)
    return {horizon: liquidation_probability(position, volatility, horizon) for horizon in horizons}


class MarkHistory:
    """Recent marks per (product type, symbol), in memory: at most one sample per `resolution`, none older than
    `window` before the newest, at most `max_samples`. Marks are kept as floats (they only feed a statistic):
    a full day at one per 10 s is 8,641 samples, about 0.6 MB per symbol.

    A mark feed pushes with `add`; after a restart, `add_many` seeds a symbol from stored marks.

    `volatility` is asked for on every judgement of every position (the liquidation_probability rule) and every
    page: it is remembered per symbol until the samples it used change, since a day of samples takes milliseconds
    to sum and they change at most once per `resolution`.
    """

    def __init__(
        self,
        *,
        window: timedelta = timedelta(hours=24),
        resolution: timedelta = timedelta(seconds=10),
        max_samples: int | None = None,
    ) -> None:
        if window <= timedelta(0) or resolution < timedelta(0):
            raise ValueError(f"window must be positive and resolution not negative, got {window} and {resolution}")
        self.window = window
        self.resolution = resolution
        steps = int(window / resolution) + 1 if resolution else 100_000
        self.max_samples = max_samples if max_samples is not None else steps
        if self.max_samples < 2:
            raise ValueError(f"max_samples must be 2 or more, got {self.max_samples}")
        self._times: dict[tuple[str, str], deque[float]] = {}
        self._marks: dict[tuple[str, str], deque[float]] = {}
        # (product type, symbol) -> ((count, oldest, newest) of the samples, their volatility)
        self._memo: dict[tuple[str, str], tuple[tuple[int, float, float], float | None]] = {}

    def add(self, product_type: str, symbol: str, at: datetime, mark: Decimal) -> bool:
        """Record one mark; False when it was dropped (within `resolution` of the last one kept, or older)."""
        key = (product_type.upper(), symbol)
        t, value = _seconds(at), _mark(key, mark)
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque(maxlen=self.max_samples)
            self._marks[key] = deque(maxlen=self.max_samples)
        if times and t < times[-1] + self.resolution.total_seconds():
            return False
        times.append(t)
        self._marks[key].append(value)
        self._trim(key, t)
        return True

    def add_many(self, product_type: str, symbol: str, samples: Iterable[Sample]) -> None:
        """Merge many marks (in any order) with those already held, as if they had arrived one by one in time
        order: for seeding a symbol from stored marks after a restart."""
        key = (product_type.upper(), symbol)
        self._memo.pop(key, None)  # a merge can change the samples between the oldest and the newest
        merged = [(_seconds(at), _mark(key, mark)) for at, mark in samples]
        merged += zip(self._times.get(key, ()), self._marks.get(key, ()), strict=True)
        merged.sort()
        self._times.pop(key, None)
        self._marks.pop(key, None)
        step = self.resolution.total_seconds()
        times: deque[float] = deque(maxlen=self.max_samples)
        marks: deque[float] = deque(maxlen=self.max_samples)
        for t, value in merged:
            if not times or t >= times[-1] + step:
                times.append(t)
                marks.append(value)
        if times:
            self._times[key], self._marks[key] = times, marks
            self._trim(key, times[-1])

    def samples(self, product_type: str, symbol: str) -> list[tuple[float, float]]:
        """(seconds since the epoch, mark) oldest first."""
        key = (product_type.upper(), symbol)
        return list(zip(self._times.get(key, ()), self._marks.get(key, ()), strict=True))

    def volatility(
        self, product_type: str, symbol: str, now: datetime, *, window: timedelta | None = None
    ) -> float | None:
        """realized_volatility of the marks within `window` (the whole history by default) before `now`."""
        key = (product_type.upper(), symbol)
        times = self._times.get(key)
        if not times:
            return None
        since = _seconds(now) - (window or self.window).total_seconds()
        skip = 0  # samples too old for the window (a few: the history is trimmed to it on every add)
        for t in times:
            if t >= since:
                break
            skip += 1
        if skip == len(times):
            return None
        # Samples are only appended at the newest end and dropped at the oldest (add_many, which rebuilds them,
        # forgets the figure), so the same count, oldest and newest used are the same samples.
        stamp = (len(times) - skip, times[skip], times[-1])
        memo = self._memo.get(key)
        if memo is not None and memo[0] == stamp:
            return memo[1]
        points = list(itertools.islice(zip(times, self._marks[key], strict=True), skip, None))
        value = _volatility(points, MIN_SAMPLES, MIN_SPAN)
        self._memo[key] = (stamp, value)
        return value

    def symbols(self) -> list[tuple[str, str]]:
        return sorted(self._times)

    def forget_before(self, now: datetime) -> None:
        """Drop marks older than the window before `now`, and symbols left with none (no longer fed)."""
        for key in list(self._times):
            self._trim(key, _seconds(now))
            if not self._times[key]:
                del self._times[key], self._marks[key]
                self._memo.pop(key, None)

    def _trim(self, key: tuple[str, str], newest: float) -> None:
        oldest = newest - self.window.total_seconds()
        times, marks = self._times[key], self._marks[key]
        while times and times[0] < oldest:
            times.popleft()
            marks.popleft()


def _seconds(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"sample time {at} has no time zone: marks are timed in UTC")
    return at.timestamp()


def _mark(key: tuple[str, str], mark: Decimal) -> float:
    value = float(mark)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key[0]} {key[1]}: a mark must be a positive number, got {mark}")
    return value
