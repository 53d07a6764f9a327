"""One full read of an account: what its products need, in the endpoint family of its mode."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from monitor import errors
from monitor.clock import Clock
from monitor.domain import AccountMode, AccountSnapshot
from monitor.exchange.bitget.client import BitgetClient
from monitor.exchange.bitget.endpoints import SPOT

T = TypeVar("T")


async def read_snapshot(
    client: BitgetClient, products: tuple[str, ...], clock: Clock, *, spot: bool = True, valued: bool = True
) -> AccountSnapshot:
    """Read every configured product of one account into one snapshot.

    Classic accounts: `spot` False leaves the spot balances out (the poller reads them less often than the
    futures, `monitor.poller.spot`); `valued` False leaves out Bitget's USDT valuation of them
    (`all-account-balance`, 1/s per account), for a caller that values the coins at the spot tickers itself.
    Unified accounts read their assets, spot coins included, in one request whatever these say.

    Raises the first ExchangeError met. A classic/unified mismatch (the account was switched on Bitget since
    its mode was learned) re-detects the mode and reads again once.
    """
    before = client.requests
    try:
        snapshot = await _read(client, products, clock, spot, valued)
    except errors.AccountModeMismatch:
        client.mode = None
        snapshot = await _read(client, products, clock, spot, valued)
    return replace(snapshot, requests=client.requests - before)


async def _read(
    client: BitgetClient, products: tuple[str, ...], clock: Clock, spot_wanted: bool, valued: bool
) -> AccountSnapshot:
    mode = await client.account_mode()
    futures_types = tuple(p for p in products if p != SPOT)
    spot_wanted = spot_wanted and SPOT in products
    # A TaskGroup cancels the other reads as soon as one fails, so none outlives the poll.
    try:
        async with asyncio.TaskGroup() as group:
            if mode is AccountMode.UNIFIED:
                unified = group.create_task(client.unified_account())
                positions = group.create_task(_joined(client.unified_positions(p) for p in futures_types))
            else:
                spot = group.create_task(client.spot_assets()) if spot_wanted else None
                balances = group.create_task(client.account_balances()) if spot_wanted and valued else None
                futures = group.create_task(_joined(client.futures_accounts(p) for p in futures_types))
                positions = group.create_task(_joined(client.positions(p) for p in futures_types))
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    snapshot = AccountSnapshot(account=client.account, taken_at=clock.now(), mode=mode, products=products)
    if mode is AccountMode.UNIFIED:
        return replace(snapshot, unified=unified.result(), positions=positions.result())
    return replace(
        snapshot,
        spot=spot.result() if spot is not None else (),
        spot_usdt=balances.result().get("spot") if balances is not None else None,
        futures=futures.result(),
        positions=positions.result(),
    )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _joined(reads: Iterable[Coroutine[Any, Any, tuple[T, ...]]]) -> tuple[T, ...]:
    """The reads' items in order, read concurrently (a single read, the usual case, in this task: no other)."""
    reads = list(reads)
    if len(reads) == 1:
        return await reads[0]
    tasks: list[asyncio.Task[tuple[T, ...]]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(read) for read in reads]
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    return tuple(item for task in tasks for item in task.result())
