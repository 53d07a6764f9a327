"""The equity chart: server-rendered SVG, no script and no external library.

Axes with ticks and labels (time below, USDT on the left), the low-high band of hourly samples, the drawdown
from the window's running peak shaded, the minimum, maximum and current value marked, and a <title> per point
that a browser shows on hover."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from markupsafe import Markup, escape

from monitor.numbers import local_time, money
from monitor.store.views import EquitySample

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 12, 26  # room for the value labels on the left and the times below
HOVER_POINTS = 120  # <title> targets: enough to point at, few enough to keep the page small
TICKS = 5


def downsample(samples: Sequence[EquitySample], points: int = WIDTH) -> list[EquitySample]:
    """At most `points` samples, one per time slice: its last equity, its lowest low and highest high (a day of
    5-second polls would otherwise be 17,000 points of SVG)."""
    if len(samples) <= points:
        return list(samples)
    start, end = samples[0].at.timestamp(), samples[-1].at.timestamp()
    width = (end - start) / points or 1.0
    slices: dict[int, list[EquitySample]] = {}
    for s in samples:
        slices.setdefault(min(points - 1, int((s.at.timestamp() - start) / width)), []).append(s)
    return [
        EquitySample(group[0].at, group[-1].equity, min(g.low for g in group), max(g.high for g in group),
                     group[-1].unrealized_pnl, group[-1].worst_liquidation_distance_pct)
        for _, group in sorted(slices.items())
    ]  # fmt: skip


def nice_step(span: float, ticks: int = TICKS) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` ticks over `span`."""
    raw = span / max(1, ticks)
    power = 10 ** int(f"{raw:e}".split("e")[1])
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


TIME_STEPS = (
    [timedelta(seconds=s) for s in (5, 10, 30)]
    + [timedelta(minutes=m) for m in (1, 2, 5, 15, 30, 60, 120, 180, 360, 720)]
    + [timedelta(days=d) for d in (1, 2, 7, 14, 30, 61, 91)]
)


def _time_ticks(start: datetime, end: datetime, zone: tzinfo) -> list[datetime]:
    span = end - start
    step = next((s for s in TIME_STEPS if span / s <= 6), TIME_STEPS[-1])
    local = start.astimezone(zone)
    if step < timedelta(minutes=1):
        first = local.replace(microsecond=0)
        while first < local or first.second % int(step.total_seconds()):
            first += timedelta(seconds=1)
    elif step < timedelta(days=1):
        minutes = int(step.total_seconds() // 60)
        first = local.replace(second=0, microsecond=0, minute=0)
        while first < local or (minutes < 60 and first.minute % minutes):
            first += timedelta(minutes=1) if minutes < 60 else timedelta(hours=1)
        while minutes >= 60 and first.hour % (minutes // 60):
            first += timedelta(hours=1)
    else:
        first = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    ticks, t = [], first
    while t <= end:
        ticks.append(t)
        t += step
    return ticks


def equity_svg(samples: Sequence[EquitySample], zone: tzinfo = UTC, label: str = "Equity") -> Markup:
    """Equity over time with axes, its band, the drawdown from the window's peak, min/max/current marked."""
    if len(samples) < 2:
        return Markup('<p class="muted">Not enough history for a chart yet.</p>')
    samples = downsample(samples)
    start, end = samples[0].at, samples[-1].at
    t0, t1 = start.timestamp(), end.timestamp()
    low, high = float(min(s.low for s in samples)), float(max(s.high for s in samples))
    step = nice_step((high - low) or abs(high) * 0.01 or 1.0)
    floor, ceil = (low // step) * step, -((-high) // step) * step
    if ceil - floor < step:
        ceil = floor + step
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at.timestamp() - t0) / ((t1 - t0) or 1.0) * plot_w

    def y(value: float | Decimal) -> float:
        return TOP + (1 - (float(value) - floor) / (ceil - floor)) * plot_h

    parts: list[str] = []
    # value axis: gridlines and labels
    tick = floor
    while tick <= ceil + step / 2:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class="axis" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f"{escape(money(tick))}</text>")  # fmt: skip
        tick += step
    # time axis
    for moment in _time_ticks(start, end, zone):
        span = end - start
        fmt = "%H:%M:%S" if span <= timedelta(minutes=10) else ("%H:%M" if span <= timedelta(days=2) else "%m-%d")
        edge = "end" if x(moment) > WIDTH - RIGHT - 30 else "middle"  # a label at the right edge stays inside
        parts.append(f'<line class="grid" x1="{x(moment):.1f}" x2="{x(moment):.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                     f'<text class="axis" x="{x(moment):.1f}" y="{HEIGHT - 8}" text-anchor="{edge}">'
                     f"{escape(moment.astimezone(zone).strftime(fmt))}</text>")  # fmt: skip
    base = TOP + plot_h
    parts.append(f'<line class="axisline" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{base}"/>'
                 f'<line class="axisline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')  # fmt: skip
    # drawdown from the running peak of the window: the area between the peak so far and the equity
    peak, top_line, bottom_line = Decimal("-Infinity"), [], []
    for s in samples:
        peak = max(peak, s.equity)
        top_line.append(f"{x(s.at):.1f},{y(peak):.1f}")
        bottom_line.append(f"{x(s.at):.1f},{y(s.equity):.1f}")
    parts.append(f'<polygon class="drawdown" points="{" ".join(top_line + bottom_line[::-1])}"/>')
    band = [f"{x(s.at):.1f},{y(s.high):.1f}" for s in samples] + [
        f"{x(s.at):.1f},{y(s.low):.1f}" for s in reversed(samples)
    ]
    parts.append(f'<polygon class="band" points="{" ".join(band)}"/>')
    parts.append(f'<polyline class="line" points="{" ".join(bottom_line)}"/>')
    # min, max and current value
    lowest = min(samples, key=lambda s: s.equity)
    highest = max(samples, key=lambda s: s.equity)
    last = samples[-1]
    marks = [("current", last, "now")]  # the current value wins where min or max is the same point
    if lowest.equity != highest.equity:  # a flat line has no minimum or maximum worth a label
        marks += [(c, s, c) for c, s in (("min", lowest), ("max", highest)) if s is not last]
    for cls, s, text in marks:
        anchor = "end" if x(s.at) > WIDTH - 140 else "start"
        dx = -6 if anchor == "end" else 6
        dy = 14 if cls == "min" and y(s.equity) + 14 < base - 2 else -6  # below the min, unless on the time axis
        parts.append(f'<circle class="mark {cls}" cx="{x(s.at):.1f}" cy="{y(s.equity):.1f}" r="3.5">'
                     f"<title>{escape(f'{text} {money(s.equity)} USDT at {local_time(s.at, zone)}')}</title></circle>"
                     f'<text class="marklabel {cls}" x="{x(s.at) + dx:.1f}" y="{y(s.equity) + dy:.1f}" '
                     f'text-anchor="{anchor}">{escape(f"{text} {money(s.equity)}")}</text>')  # fmt: skip
    # hover: a thin invisible column per point (at most HOVER_POINTS) whose <title> the browser shows
    every = max(1, -(-len(samples) // HOVER_POINTS))
    column = max(2.0, plot_w / min(len(samples), HOVER_POINTS))
    for s in samples[::every]:
        title = escape(f"{local_time(s.at, zone)}: {money(s.equity)} USDT")
        parts.append(f'<rect class="hover" x="{x(s.at) - column / 2:.1f}" y="{TOP}" width="{column:.1f}" '
                     f'height="{plot_h}"><title>{title}</title></rect>')  # fmt: skip
    aria = (
        f"{label} from {local_time(start, zone)} to {local_time(end, zone)}, between {money(lowest.equity)} and "
        f"{money(highest.equity)} USDT, now {money(last.equity)}"
    )
    return Markup(  # noqa: S704 (every interpolated text is escaped; the rest are numbers)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(aria)}">'
        + "".join(parts)
        + "</svg>"
        + f'<p class="chart-scale">{escape(label)} now <strong>{escape(money(last.equity))}</strong> USDT · '
        f"min {escape(money(lowest.equity))} · max {escape(money(highest.equity))} · "
        f"drawdown from the window's peak shaded</p>"
    )


def portfolio(
    series: Sequence[Sequence[EquitySample]], bucket: timedelta = timedelta(minutes=15)
) -> list[EquitySample]:
    """The accounts' equity summed per time bucket, each account carrying its last value forward (an account
    that was not read in a bucket still counts with what it had). Each sum is placed at the last read it holds,
    the moment it was true (not at the bucket's start, which can be before the first read)."""
    buckets: dict[int, dict[int, Decimal]] = {}
    latest: dict[int, datetime] = {}
    size = bucket.total_seconds()
    for index, samples in enumerate(series):
        for s in samples:
            key = int(s.at.timestamp() // size)
            buckets.setdefault(key, {})[index] = s.equity
            latest[key] = max(latest.get(key, s.at), s.at)
    last: dict[int, Decimal] = {}
    out: list[EquitySample] = []
    for key in sorted(buckets):
        last.update(buckets[key])
        total = sum(last.values(), Decimal(0))
        out.append(EquitySample(latest[key], total, total, total, Decimal(0), None))
    return out
