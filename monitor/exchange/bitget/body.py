"""Answers read within a size cap (`max_response_size`): never more of a body in memory than that, however it
is sent (a declared length, none, a false one, compressed)."""

from __future__ import annotations

from typing import Any

import aiohttp

MAX_RESPONSE_SIZE = 4 * 1024 * 1024  # bytes; Bitget's largest real answers are a few hundred kB
_CHUNK = 64 * 1024
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


class TooLarge(Exception):
    """A body past the cap; its argument says how large (the client makes it a MalformedResponse)."""


def parse_size(value: Any) -> int:
    """A number of bytes: 4194304, "4MB", "512kB" (units of 1024), at least 1 kB."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a size such as "4MB", got {value!r}')
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("kmgb")
    unit = text[len(number) :]
    if not number.isdigit() or len(number) > 12 or unit not in _SIZE_UNITS:
        raise ValueError(f'expected a size such as "4MB", "512kB" or a number of bytes, got {value!r}')
    size = int(number) * _SIZE_UNITS[unit]
    if size < 1024:
        raise ValueError(f"expected at least 1kB, got {value!r}")
    return size


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or TooLarge past `limit` bytes.

    The declared length is checked first; a body sent without one (or lying about it, or compressed) is
    counted as it arrives and dropped with its connection at the cap.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        response.close()  # unread: the connection goes, not into the pool
        raise TooLarge(f"{declared} bytes declared")
    if declared is not None and "content-encoding" not in response.headers:  # exactly that many bytes come
        return await response.read()
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()  # the rest is never read: the connection goes, not into the pool
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
