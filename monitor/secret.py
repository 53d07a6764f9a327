"""A wrapper that keeps credentials out of every accidental output path.

`str`, `repr`, `format`, logging, exception messages, pickling and JSON encoding all see a mask; only an
explicit `reveal()` gives the value, and only the signer and the apprise sender call it.
"""

from __future__ import annotations

from typing import NoReturn

MASK = "***"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    # Immutable, so copies may share it (dataclasses.asdict and replace deep-copy their fields).
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self
