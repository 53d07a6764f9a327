"""One full read of an account: what its products need, in the endpoint family of its mode."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import TypeVar

from monitor import errors
from monitor.clock import Clock
from monitor.domain import AccountMode, AccountSnapshot
from monitor.exchange.bitget.client import BitgetClient
from monitor.exchange.bitget.endpoints import SPOT

T = TypeVar("T")


async def read_snapshot(client: BitgetClient, products: tuple[str, ...], clock: Clock) -> AccountSnapshot:
    """Read every configured product of one account into one snapshot.

    Raises the first ExchangeError met. A classic/unified mismatch (the account was switched on Bitget since
    its mode was learned) re-detects the mode and reads again once.
    """
    before = client.requests
    try:
        snapshot = await _read(client, products, clock)
    except errors.AccountModeMismatch:
        client.mode = None
        snapshot = await _read(client, products, clock)
    return replace(snapshot, requests=client.requests - before)


async def _read(client: BitgetClient, products: tuple[str, ...], clock: Clock) -> AccountSnapshot:
    mode = await client.account_mode()
    futures_types = tuple(p for p in products if p != SPOT)
    if mode is AccountMode.UNIFIED:
        unified, positions = await asyncio.gather(
            client.unified_account(), _joined(client.unified_positions(p) for p in futures_types)
        )
        return AccountSnapshot(
            account=client.account,
            taken_at=clock.now(),
            mode=mode,
            unified=unified,
            positions=positions,
            products=products,
        )
    spot, balances, futures, positions = await asyncio.gather(
        client.spot_assets() if SPOT in products else _nothing(()),
        client.account_balances() if SPOT in products else _nothing({}),
        _joined(client.futures_accounts(p) for p in futures_types),
        _joined(client.positions(p) for p in futures_types),
    )
    return AccountSnapshot(
        account=client.account,
        taken_at=clock.now(),
        mode=mode,
        spot=spot,
        spot_usdt=balances.get("spot"),
        futures=futures,
        positions=positions,
        products=products,
    )


async def _joined(reads: Iterable[Awaitable[tuple[T, ...]]]) -> tuple[T, ...]:
    return tuple(item for result in await asyncio.gather(*reads) for item in result)


async def _nothing(empty: T) -> T:
    return empty
