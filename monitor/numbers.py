"""The one way numbers are written for people, on the page and in alert messages alike: money with thousands
separators and two decimals, prices at the symbol's precision, sizes and coin amounts with the digits they have,
chances as percentages, moments in the reader's time zone. A missing value is an en dash."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

MISSING = "–"
STABLE = ("USDT", "USDC", "USD")  # coins counted as money
SIGNIFICANT = 5  # digits a price keeps at least when rounded to a mark's places


def money(value: Decimal | float | None, *, sign: bool = False) -> str:
    """USDT values: thousands separators and two decimals (half-even), never "-0.00"; `sign`: "+12.34", "+0.00"."""
    return _fixed(value, ",.2f", sign)


def percent(value: Decimal | float | None, *, sign: bool = False) -> str:
    """A percentage with two decimals: "4.31%", with `sign` "+0.25%"."""
    text = _fixed(value, ".2f", sign)
    return text if value is None else f"{text}%"


def _fixed(value: Decimal | float | None, spec: str, sign: bool) -> str:
    if value is None:
        return MISSING
    text = format(value, ("+" if sign else "") + spec)
    if text.lstrip("+-").strip("0.,") == "":  # zero once rounded: no "-0.00"
        text = ("+" if sign else "") + text.lstrip("+-")
    return text


def trimmed(value: Decimal) -> str:
    """All the digits the value has, no trailing zeros, no exponent, thousands separated."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price(value: Decimal | None, like: Decimal | None = None) -> str:
    """A price at the symbol's precision: the places of `like` (the mark price, which Bitget gives at the tick
    size) when known, else the value's own; trailing zeros trimmed. A liquidation price of 56069.06270548 beside a
    mark of 60000.1 is "56,069.1".

    A round mark ("100", "60000") hides the tick size in the zeros it lost, so a price at a mark's places keeps at
    least SIGNIFICANT digits: 90.90909091 beside a mark of 100 is "90.909", not "91"."""
    if value is None:
        return MISSING
    if like is not None and like.is_finite() and value.is_finite() and value:
        places = max(0, -like.normalize().as_tuple().exponent, SIGNIFICANT - 1 - value.adjusted())  # type: ignore[operator]
        value = round(value, places)
    return trimmed(value)


def size(value: Decimal | None) -> str:
    return MISSING if value is None else trimmed(value)


def amount(value: Decimal | None, coin: str) -> str:
    """A balance or a PnL: USD stablecoins as money, other coins (BTC of an inverse position) with their digits."""
    if coin.upper() in STABLE:
        return money(value)
    return size(value)


def chance(probability: float | None) -> str:
    """A probability (0 to 1) as a percentage a trader reads at a glance: "<0.1%", "3.4%", ">99.9%", "100%"."""
    if probability is None:
        return MISSING
    if probability <= 0:
        return "0%"
    if probability >= 1:
        return "100%"
    if probability < 0.001:
        return "<0.1%"
    if probability > 0.999:
        return ">99.9%"
    return f"{probability * 100:.1f}%"


def duration(value: timedelta) -> str:
    """timedelta -> "0m", "45m", "3h 05m", "2d 4h"."""
    minutes = int(value.total_seconds() // 60)
    if value > timedelta(0) and minutes == 0:
        return "<1m"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def counted(count: int, noun: str) -> str:
    """3 positions, 1 position, 0 positions: a count with its (regular) noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def local_time(at: datetime, zone: tzinfo, *, seconds: bool = False, label: bool = True) -> str:
    """An aware moment on the clock of `zone`: "2026-11-27 15:24 CET" ("UTC" in UTC; a zone without an
    abbreviation shows its offset, "+04"). `label=False` leaves the zone out, for a text that names it once."""
    local = at.astimezone(zone)
    text = f"{local:%Y-%m-%d %H:%M:%S}" if seconds else f"{local:%Y-%m-%d %H:%M}"
    if not label:
        return text
    return f"{text} {'UTC' if str(zone) == 'UTC' else local.strftime('%Z')}"
