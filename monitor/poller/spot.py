"""Spot balances of classic accounts: read every `spot_poll_interval`, valued at the market feed's spot prices.

Spot coins are no collateral for a classic account's futures, and their amounts change only when the trader
trades, deposits or transfers, so they are read far less often than the futures account and positions (which
every read still fetches). Their USDT value comes from the public spot tickers the market feed reads for every
account at once (`SpotPrice`), not from Bitget's per-account valuation (`all-account-balance`, a signed request
limited to 1/s per account). A read of a spot + USDT-futures classic account then costs two signed requests
(futures account, positions), plus the spot balances once per `spot_poll_interval`.

The spot balances are read sooner, at once, when a read finds the futures wallet (equity less unrealized PnL)
changed: a transfer between spot and futures is the usual cause, and it moves the spot balances too (often with
a trade beside it). Funding, fees and closed positions move the wallet as well: a few extra reads a day.

Quick reads (the risk cadence, confirming reads) never wait for spot: they take the balances as last read and
leave a moved wallet to the next routine read. A routine read whose spot request fails keeps the balances as
last read (and reads them again next time) rather than losing the futures account and positions just read.

Coins the feed does not price (no COINUSDT pair, or no fresh spot tickers) are valued by Bitget's
`all-account-balance`, read along with the spot balances; the part of its value those coins make up is kept
until the next spot read. Without any feed (`once`, `check`) that is every read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from monitor.domain import AccountMode, AccountSnapshot, FuturesAccount, SpotAsset
from monitor.errors import ExchangeError
from monitor.exchange.bitget.client import BitgetClient
from monitor.exchange.retry import with_retries

log = logging.getLogger(__name__)

SpotPrice = Callable[[str], Decimal | None]  # coin -> USDT per coin, None when not fresh (MarketFeed.spot_price)
WALLET_TOLERANCE = Decimal("0.000001")  # Bitget reports to 8 places: rounding moves equity less PnL below this
_ZERO = Decimal(0)
_Q = Decimal("0.00000001")  # Bitget reports amounts to 8 places


@dataclass(slots=True)
class SpotBook:
    """One classic account's spot balances as last read, and what decides when to read them again."""

    assets: tuple[SpotAsset, ...] | None = None  # None: never read
    read_at: float | None = None  # monotonic time of that read
    unpriced: tuple[frozenset[str], Decimal] | None = None  # coins the feed did not price, their USDT value
    wallets: dict[tuple[str, str], Decimal] | None = None  # (product type, coin) -> equity less PnL, last read

    def due(self, now: float, interval: float) -> bool:
        return self.read_at is None or now - self.read_at >= interval

    def moved(self, futures: Iterable[FuturesAccount]) -> bool:
        """Whether the futures wallet changed since the last read (a transfer, with or without a trade)."""
        if self.wallets is None:
            return False
        now = _wallets(futures)
        return now.keys() != self.wallets.keys() or any(
            abs(v - self.wallets[k]) > WALLET_TOLERANCE for k, v in now.items()
        )

    def take(self, assets: tuple[SpotAsset, ...], now: float) -> None:
        self.assets, self.read_at, self.unpriced = assets, now, None


def value(assets: Iterable[SpotAsset], price: SpotPrice | None) -> tuple[Decimal, frozenset[str]]:
    """(the USDT value of the coins `price` knows, the coins held that it does not)."""
    total, unknown = _ZERO, set()
    for asset in assets:
        amount = asset.total
        if not amount:
            continue
        usdt = price(asset.coin) if price is not None else None
        if usdt is None:
            unknown.add(asset.coin)
        else:
            total += amount * usdt
    return total.quantize(_Q), frozenset(unknown)


async def complete(
    book: SpotBook,
    client: BitgetClient,
    snapshot: AccountSnapshot,
    *,
    was_read: bool,
    price: SpotPrice | None,
    now: float,
    attempts: int,
    quick: bool = False,
    due: bool = False,
) -> AccountSnapshot:
    """A classic snapshot with spot in its products, made whole: the spot balances (read now if they were not
    and the wallet moved, else as last read) and their USDT value. `was_read`: the snapshot carries a fresh spot
    read. `due`: spot_poll_interval has passed since the last spot read. `quick`: a risk or confirming read,
    which makes no request for spot once the balances are known. Raises ExchangeError only while the balances
    were never read."""
    if snapshot.mode is AccountMode.UNIFIED:
        return snapshot
    if was_read:
        book.take(snapshot.spot, now)
    elif book.assets is None or due or book.moved(snapshot.futures):
        if quick and book.assets is not None:
            book.read_at = None  # the next routine read reads them
        else:
            await _read_assets(book, client, now, attempts)
    book.wallets = _wallets(snapshot.futures)
    assert book.assets is not None
    priced, unknown = value(book.assets, price)
    if not unknown:
        spot_usdt = priced
    elif book.unpriced is not None and (book.unpriced[0] == unknown or quick):
        spot_usdt = priced + book.unpriced[1]
    elif quick:  # no value yet for the coins the feed does not price: the next routine read asks Bitget
        book.read_at = None
        spot_usdt = priced
    else:
        spot_usdt = await _value_unpriced(book, client, priced, unknown, attempts)
    return replace(snapshot, spot=book.assets, spot_usdt=spot_usdt)


async def _read_assets(book: SpotBook, client: BitgetClient, now: float, attempts: int) -> None:
    try:
        book.take(await with_retries(client.spot_assets, attempts=attempts), now)
    except ExchangeError as exc:
        if book.assets is None:
            raise
        book.read_at = None  # tried again at the next read
        log.warning("%s: spot balances not read (%s): valued as last read", client.account, exc)


async def _value_unpriced(
    book: SpotBook, client: BitgetClient, priced: Decimal, unknown: frozenset[str], attempts: int
) -> Decimal:
    """The spot value with Bitget's own valuation of the coins the feed does not price. Bitget's answer without
    a spot figure, or no answer, keeps the value those coins had (none yet: only the priced ones count)."""
    try:
        balances = await with_retries(client.account_balances, attempts=attempts)
    except ExchangeError as exc:
        log.warning("%s: spot valuation not read (%s): coins without a spot price valued as last read", client.account,
                    exc)  # fmt: skip
        balances = {}
    if "spot" not in balances:
        return priced + (book.unpriced[1] if book.unpriced is not None else _ZERO)
    book.unpriced = (unknown, max(_ZERO, balances["spot"] - priced))
    return balances["spot"]


def _wallets(futures: Iterable[FuturesAccount]) -> dict[tuple[str, str], Decimal]:
    return {(f.product_type, f.margin_coin): f.equity - f.unrealized_pnl for f in futures}
