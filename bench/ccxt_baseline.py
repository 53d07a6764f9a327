"""The baseline the monitor's cost is measured against: ccxt's async bitget client doing the same four raw
private fetches (spot assets, account balances, the USDT-futures account and its positions) for every account,
against the simulator, on one shared aiohttp session."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import ccxt.async_support

from monitor.config import Config

CONCURRENT = 200  # accounts read at once (the simulator answers everyone in time)

Fetch = Callable[[Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def ccxt_accounts(config: Config, url: str, *, rate_limit: bool) -> AsyncIterator[tuple[list[Any], Fetch]]:
    """(one ccxt bitget client per account, a function fetching one client's four endpoints). `rate_limit`:
    ccxt's own limiter (a leaky bucket that polls every millisecond while a request waits: CPU of its own)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        exchanges = []
        for a in config.accounts:
            exchange = ccxt.async_support.bitget({"apiKey": a.api_key.reveal(), "secret": a.api_secret.reveal(),
                                                  "password": a.passphrase.reveal(), "session": session,
                                                  "timeout": 120_000, "enableRateLimit": rate_limit})  # fmt: skip
            exchange.urls["api"] = {name: url for name in exchange.urls["api"]}
            exchanges.append(exchange)
        gate = asyncio.Semaphore(CONCURRENT)

        async def fetch(e: Any) -> None:
            futures = {"productType": "USDT-FUTURES"}
            async with gate:
                await asyncio.gather(
                    e.privateSpotGetV2SpotAccountAssets(),
                    e.privateSpotGetV2AccountAllAccountBalance(),
                    e.privateMixGetV2MixAccountAccounts(futures),
                    e.privateMixGetV2MixPositionAllPosition(futures),
                )

        try:
            yield exchanges, fetch
        finally:
            for e in exchanges:
                e.session = None  # shared: closed with the `async with` above, not by each exchange
            await asyncio.gather(*(e.close() for e in exchanges))  # each waits a quarter second: all at once


async def cpu_per_cycle(exchanges: list[Any], fetch: Fetch, cycles: int) -> list[float]:
    """Process CPU seconds of each of `cycles` cycles fetching every account at once, after one warm-up cycle."""
    await asyncio.gather(*(fetch(e) for e in exchanges))  # warm-up
    spent = []
    for _ in range(cycles):
        cpu = time.process_time()
        await asyncio.gather(*(fetch(e) for e in exchanges))
        spent.append(time.process_time() - cpu)
    return spent
