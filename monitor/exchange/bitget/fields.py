"""Typed, range-checked access to the fields of one JSON object of a Bitget answer.

Numbers become Decimal (never float) and are range-checked before any arithmetic: a real answer never holds
a number above 1e20, more than 30 decimal places, a time outside 2010-2100, NaN or Infinity. Strings are
cleaned (clean.py) as they are read. A strict read raises BadField (the answer's shape changed: permanent)
or its subclass BadValue (a value no real answer holds: a passing fault, retried). A lenient read (`loose*`)
turns either into None and notes the field in `skipped`. Nothing here spends time on a huge number.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.clock import from_epoch_ms
from monitor.domain import FIRST_TIME_MS, LAST_TIME_MS, MAX_AMOUNT, MIN_EXPONENT
from monitor.exchange.bitget import clean as limits
from monitor.exchange.bitget.clean import clean

_ZERO = Decimal(0)
_MISSING = object()

# What a real answer can hold (domain.py). Beyond it a value is not data: Decimal happily carries 1e999999999,
# and turning that into an int (a timestamp) or formatting it (a database column) takes minutes and gigabytes.
MAX_MAGNITUDE, MIN_EXPONENT, FIRST_MS, LAST_MS = MAX_AMOUNT, MIN_EXPONENT, FIRST_TIME_MS, LAST_TIME_MS
MAX_NUMBER_CHARS = 64  # a number written as text longer than this is not one a real answer holds
MAX_LIST = 100  # permissions and IP addresses of a key


class BadField(ValueError):
    """A field that does not parse; turned into UnexpectedResponse with the endpoint by the caller."""


class BadValue(BadField):
    """A value no real answer holds (out of range, not finite, impossible): a malformed, retryable answer."""


@dataclass(frozen=True)
class Skipped:
    """A lenient field that could not be read and was left unknown."""

    field: str  # the JSON name, the same in every row: one log line per account, endpoint and field
    problem: str  # where and what, e.g. `data[0].totalFee: not a number: '111,1'`


class Fields:
    """Typed access to one JSON object, with the path used in error messages."""

    __slots__ = ("_obj", "_skipped", "_where")

    def __init__(self, obj: Any, where: str, skipped: list[Skipped] | None = None) -> None:
        if not isinstance(obj, Mapping):
            raise BadField(f"{where}: expected an object, got {show(obj)}")
        self._obj = obj
        self._where = where
        self._skipped = skipped

    def _name(self, names: tuple[str, ...]) -> str:
        """The spelling this object uses, for messages: the first of `names` present, else the first."""
        return next((name for name in names if name in self._obj), names[0])

    def _raw(self, names: tuple[str, ...]) -> Any:
        for name in names:
            if name in self._obj:
                return self._obj[name]
        return _MISSING

    # -- strict --------------------------------------------------------------------------------------------

    def opt(self, *names: str, floor: Decimal | None = None) -> Decimal | None:
        """A decimal, or None when absent, "" or null. Below `floor` it is impossible (BadValue)."""
        value = self._raw(names)
        if value is _MISSING or value is None or value == "":
            return None
        result = self._decimal(names, value)
        if floor is not None and result < floor:
            raise BadValue(f"{self._where}.{self._name(names)}: impossible value {show(value)}")
        return result

    def num(self, *names: str, default: Decimal | None = None, floor: Decimal | None = None) -> Decimal:
        """A decimal that must be there; `default` stands in for absent, "" or null when given."""
        value = self.opt(*names, floor=floor)
        if value is not None:
            return value
        if default is not None:
            return default
        raise BadField(f"{self._where}.{self._name(names)}: missing")

    def text(self, *names: str, default: str | None = None, limit: int = limits.TEXT) -> str:
        """A string (or a JSON integer), cleaned and clipped to `limit`."""
        value = self._raw(names)
        if value is _MISSING or value is None or value == "":
            if default is not None:
                return default
            raise BadField(f"{self._where}.{self._name(names)}: missing")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise BadField(f"{self._where}.{self._name(names)}: expected text, got {show(value)}")
        return clean(value if isinstance(value, str) else str(value), limit)

    def items(self, name: str) -> list[Fields]:
        """A list of objects under `name`; absent or null is an empty list."""
        raw = self._raw((name,))
        return items_of(None if raw is _MISSING else raw, f"{self._where}.{name}", self._skipped)

    def ms(self, *names: str) -> int | None:
        """Bitget's millisecond timestamps ("1702575043747" or a number), 2010-2100 only; None when absent."""
        value = self.opt(*names)
        if value is None:
            return None
        if not FIRST_MS <= value < LAST_MS:  # compared as a Decimal: never int() of a huge exponent
            raise BadValue(
                f"{self._where}.{self._name(names)}: not a millisecond time between 2010 and 2100: {show(value)}"
            )
        return int(value)

    def time(self, *names: str) -> datetime | None:
        """A millisecond timestamp (see `ms`) as UTC."""
        value = self.ms(*names)
        return None if value is None else from_epoch_ms(value)

    # -- lenient: unknown (None) instead of a failed read ----------------------------------------------------

    def loose(self, *names: str) -> Decimal | None:
        try:
            return self.opt(*names)
        except BadField as exc:
            self._skip(names, exc)
            return None

    def loose_time(self, *names: str) -> datetime | None:
        try:
            return self.time(*names)
        except BadField as exc:
            self._skip(names, exc)
            return None

    def loose_text(self, *names: str) -> str | None:
        try:
            return self.text(*names, default="") or None
        except BadField as exc:
            self._skip(names, exc)
            return None

    def _skip(self, names: tuple[str, ...], exc: BadField) -> None:
        """A lenient field left unknown: noted in `skipped`."""
        if self._skipped is not None:
            self._skipped.append(Skipped(self._name(names), str(exc)))

    def _decimal(self, names: tuple[str, ...], value: Any) -> Decimal:
        """`value` (of the field `names` spell) as a checked Decimal; the name is looked up for errors only."""
        if isinstance(value, str):  # Bitget's usual way: first
            digits = value.strip()
            if len(digits) > MAX_NUMBER_CHARS:
                raise BadValue(f"{self._where}.{self._name(names)}: a number of {len(digits)} characters: "
                               f"{show(value)}")  # fmt: skip
            try:
                result = Decimal(digits)
            except InvalidOperation:
                raise BadField(f"{self._where}.{self._name(names)}: not a number: {show(value)}") from None
            return self._checked(names, value, result)
        name = self._name(names)
        if isinstance(value, bool):
            raise BadField(f"{self._where}.{name}: expected a number, got {show(value)}")
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, float):
            result = Decimal(repr(value))
        else:
            raise BadField(f"{self._where}.{name}: expected a number, got {show(value)}")
        return self._checked(names, value, result)

    def _checked(self, names: tuple[str, ...], value: Any, result: Decimal) -> Decimal:
        if not result.is_finite():
            raise BadValue(f"{self._where}.{self._name(names)}: not a finite number: {show(value)}")
        if not result:
            return _ZERO  # "0E-999999999" is zero; formatted as written it would be a million characters
        exponent = result.as_tuple().exponent
        assert isinstance(exponent, int)  # finite
        if result.copy_abs() >= MAX_MAGNITUDE or exponent < MIN_EXPONENT:  # exact and cheap, whatever the size
            raise BadValue(f"{self._where}.{self._name(names)}: out of range: {show(value)}")
        return result


_repr = reprlib.Repr()
_repr.maxstring = 50
_repr.maxother = 50


def show(value: Any) -> str:
    """A short, escaped rendering of a value for an error message, whatever its size."""
    text = _repr.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def items_of(data: Any, where: str, skipped: list[Skipped] | None = None) -> list[Fields]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise BadField(f"{where}: expected a list, got {show(data)}")
    return [Fields(item, f"{where}[{i}]", skipped) for i, item in enumerate(data)]
