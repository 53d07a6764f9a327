"""The equity chart: server-rendered SVG, no script and no external library."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from monitor.store.views import EquitySample

WIDTH, HEIGHT, PAD = 640, 180, 4


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


def equity_svg(samples: Sequence[EquitySample]) -> Markup:
    """A line of equity over time with its low-high band (hourly samples), labelled with min and max."""
    if len(samples) < 2:
        return Markup('<p class="muted">Not enough history for a chart yet.</p>')
    samples = downsample(samples)
    start, end = samples[0].at.timestamp(), samples[-1].at.timestamp()
    low, high = min(s.low for s in samples), max(s.high for s in samples)
    span_t = (end - start) or 1.0
    span_v = float(high - low) or 1.0

    def xy(at: float, value: float) -> str:
        x = PAD + (at - start) / span_t * (WIDTH - 2 * PAD)
        y = PAD + (1 - (value - float(low)) / span_v) * (HEIGHT - 2 * PAD)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(s.at.timestamp(), float(s.equity)) for s in samples)
    band = " ".join(xy(s.at.timestamp(), float(s.high)) for s in samples)
    band += " " + " ".join(xy(s.at.timestamp(), float(s.low)) for s in reversed(samples))
    label = (
        f"Equity from {samples[0].at:%Y-%m-%d %H:%M} to {samples[-1].at:%Y-%m-%d %H:%M} UTC, "
        f"between {low:,.2f} and {high:,.2f} USDT"
    )
    return Markup(  # noqa: S704 (every interpolated text is escaped; the rest are numbers)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">'
        f'<polygon class="band" points="{band}"/><polyline class="line" points="{line}"/></svg>'
        f'<p class="chart-scale"><span>{escape(f"{low:,.2f}")}</span> – <span>{escape(f"{high:,.2f}")}</span> USDT'
        f" · {escape(f'{samples[0].at:%Y-%m-%d %H:%M}')} → {escape(f'{samples[-1].at:%Y-%m-%d %H:%M}')} UTC</p>"
    )
