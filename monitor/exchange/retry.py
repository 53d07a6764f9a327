"""Retrying retryable exchange errors with exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from monitor.errors import ExchangeError

log = logging.getLogger(__name__)

T = TypeVar("T")


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    base: float = 0.5,
    cap: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying errors marked retryable up to `attempts` times in all; permanent errors and the
    last failure propagate unchanged."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ExchangeError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            # "Equal jitter": at least half the backoff, so a retry after a 429 lands outside the window.
            backoff = min(cap, base * 2 ** (attempt - 1))
            delay = backoff / 2 + random.uniform(0, backoff / 2)
            log.debug("%s; retry %d/%d in %.2fs", exc, attempt, attempts - 1, delay)
            await sleep(delay)
    raise AssertionError("unreachable")
