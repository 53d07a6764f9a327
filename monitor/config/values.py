"""Parsers for the value types of the accounts file. Each raises ValueError with a message a user can act on."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.config.model import ReportSchedule
from monitor.exchange.bitget.endpoints import FUTURES_PRODUCT_TYPES, SPOT

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")  # no unit: seconds, as a TOML number is
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=3660)


def duration(value: Any) -> timedelta:
    """ "500ms", "30s", "5m", "2h", "1d" or a number of seconds (90 or "90", as the command line gives it); must be
    positive."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "30s", "5m" or a number of seconds, got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f'expected a duration like "500ms", "30s", "5m", "2h" or a number of seconds, got {value!r}')
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"a duration must be at most {MAX_DURATION.days} days, got {value!r}")
    return timedelta(seconds=seconds)


def duration_or_zero(value: Any) -> timedelta:
    """A duration that may also be zero ("0s", 0)."""
    if value in (0, "0", "0s", "0m") and not isinstance(value, bool):
        return timedelta(0)
    return duration(value)


def anything(value: Any) -> Any:
    """Checked later by whoever knows the context (rule levels depend on the rule's type)."""
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a whole number above 0, got {value!r}")
    return value


def budget(value: Any) -> tuple[int, float]:
    """ "6000/min" -> (6000 requests, 60 s)."""
    from monitor.exchange.bitget.ratelimit import parse_budget

    return parse_budget(text(value))


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def nonempty_text(value: Any) -> str:
    result = text(value).strip()
    if not result:
        raise ValueError("must not be empty")
    return result


NAME_LIMIT = 100  # account, rule and channel names: they make up alert keys and database columns


def name(value: Any) -> str:
    result = nonempty_text(value)
    if len(result) > NAME_LIMIT:
        raise ValueError(f"a name must be at most {NAME_LIMIT} characters, this one has {len(result)}")
    if result in (".", ".."):
        raise ValueError(f"{result!r} cannot name anything (it is a path step in the page's links)")
    return result


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'expected a list of strings like ["a", "b"], got {value!r}')
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def nonempty_text_list(value: Any) -> tuple[str, ...]:
    result = text_list(value)
    if not result:
        raise ValueError("expected at least one entry")
    return result


def severity(value: Any) -> str:
    result = text(value).strip().lower()
    if result not in ("warning", "critical"):
        raise ValueError(f'expected "warning" or "critical", got {value!r}')
    return result


_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def quiet_hours(value: Any) -> tuple[time, time]:
    """ "22:00-07:00" -> (22:00, 07:00); the window may wrap past midnight."""
    parts = text(value).split("-")
    clocks = [_CLOCK.match(p) for p in parts]
    if len(parts) != 2 or not all(clocks):
        raise ValueError(f'expected a window like "22:00-07:00", got {value!r}')
    start, end = (time(int(m.group(1)), int(m.group(2))) for m in clocks if m)
    if start == end:
        raise ValueError(f"the window {value!r} is empty: start and end are the same")
    return start, end


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SCHEDULE_HINT = 'expected "hourly", "daily 08:00" or "weekly mon 08:00"'


def schedule(value: Any) -> ReportSchedule:
    """ "hourly", "daily HH:MM" or "weekly DAY HH:MM" (DAY: mon..sun, or the whole English name)."""
    words = text(value).lower().split()
    if words == ["hourly"]:
        return ReportSchedule("hourly", text="hourly")
    kind = words[0] if words else ""
    if kind not in ("daily", "weekly") or len(words) != (2 if kind == "daily" else 3):
        raise ValueError(f"{_SCHEDULE_HINT}, got {value!r}")
    weekday = 0
    if kind == "weekly":
        day = words[1][:3]
        if words[1] not in _WEEKDAYS and words[1] not in _FULL_DAYS:
            raise ValueError(f"unknown day {words[1]!r} in {value!r}; use mon, tue, wed, thu, fri, sat or sun")
        weekday = _WEEKDAYS.index(day)
    clock = _CLOCK.match(words[-1])
    if clock is None:
        raise ValueError(f"expected a time of day like 08:00 in {value!r} ({_SCHEDULE_HINT})")
    at = time(int(clock.group(1)), int(clock.group(2)))
    shown = f"daily {at:%H:%M}" if kind == "daily" else f"weekly {_WEEKDAYS[weekday]} {at:%H:%M}"
    return ReportSchedule(kind, at, weekday, shown)


def timezone(value: Any) -> ZoneInfo:
    name = nonempty_text(value)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'unknown time zone {name!r}; use an IANA name like "Europe/Berlin" or "UTC"') from None


def listen(value: Any) -> tuple[str, int]:
    """ "127.0.0.1:8080" or "[::1]:8080" -> (host, port)."""
    host, _, port = nonempty_text(value).rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f'expected host:port like "127.0.0.1:8080" (port 0: any free port), got {value!r}')
    return host, int(port)


def fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, like 0.8, got {value!r}")
    return float(value)


def http_url(value: Any) -> str:
    url = nonempty_text(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f'expected an http(s) URL like "https://api.bitget.com", got {value!r}')
    return url


_PRODUCTS = {p.lower(): p for p in (SPOT, *FUTURES_PRODUCT_TYPES)}
_V1_TYPES = {"umcbl", "dmcbl", "cmcbl", "sumcbl", "sdmcbl", "scmcbl"}


def products(value: Any) -> tuple[str, ...]:
    names = text_list(value)
    if not names:
        raise ValueError('list at least one product, e.g. ["spot", "USDT-FUTURES"]')
    result = []
    for name in names:
        key = name.lower()
        if key in _V1_TYPES:
            raise ValueError(
                f"{name!r} is a v1 product type, switched off by Bitget on 2025-11-28; use "
                '"USDT-FUTURES", "COIN-FUTURES" or "USDC-FUTURES"'
            )
        if key.startswith("s") and key[1:] in _PRODUCTS:
            raise ValueError(
                f"{name!r} (demo coins) was delisted in August 2025; use {_PRODUCTS[key[1:]]!r} with demo = true"
            )
        if key not in _PRODUCTS:
            raise ValueError(f"unknown product {name!r}; choose from {', '.join(_PRODUCTS.values())}")
        result.append(_PRODUCTS[key])
    return tuple(dict.fromkeys(result))
