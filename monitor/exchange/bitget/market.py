"""Public mark prices: one unsigned `tickers` request returns the mark of every symbol of a futures product type.

Bitget judges liquidation against the mark price (not the last trade), and the mark is the same for every
account, so it is read once per product type, not per account. The request carries no key, but it counts against
the per-IP budget (and its own per-IP limit of 20 a second) like every other request: it waits for the shared
IpBudget. Unified accounts' symbols are served by the same v2 endpoint.

A read that is already in flight, or answered, after a given moment is shared: many positions that disappear at
once cost one request.

The spot tickers (`read_spot`) give the USDT price of every spot coin the same way: one unsigned request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from yarl import URL

from monitor import errors
from monitor.clock import Clock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.codes import CODES, SUCCESS, classify
from monitor.exchange.bitget.ratelimit import IpBudget
from monitor.exchange.bitget.window import ROUTINE, release

MAX_BODY = 4 * 1024 * 1024  # every USDT-futures symbol is a few hundred kB; more is not a tickers answer
MAX_PRICE = Decimal("1e12")  # no contract trades near this; a bigger mark is a broken value, not a price


@dataclass(frozen=True, slots=True)
class SpotPrices:
    """The USDT price of spot coins (last trade of COINUSDT), as one spot tickers answer gave them."""

    asked_at: datetime  # before the request went out
    prices: Mapping[str, Decimal]  # coin -> USDT per coin; USDT itself is not listed (it is 1)
    unreadable: Mapping[str, str] = field(default_factory=dict)  # coin -> why its price cannot be used


@dataclass(frozen=True, slots=True)
class Marks:
    """The mark prices of one product type, as one answer gave them."""

    product_type: str
    asked_at: datetime  # before the request went out: every mark here is at least this recent
    prices: Mapping[str, Decimal]  # symbol -> mark price
    unreadable: Mapping[str, str] = field(default_factory=dict)  # symbol -> why its mark cannot be used

    def mark(self, symbol: str) -> Decimal:
        """A symbol's mark; KeyError (with the reason) when the answer has none that can be used."""
        if symbol in self.prices:
            return self.prices[symbol]
        raise KeyError(self.unreadable.get(symbol, f"no ticker for {symbol} in {self.product_type}"))


class MarkPrices:
    """Reads the public marks of futures product types, through the shared per-IP budget."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        budget: IpBudget | None,
        clock: Clock,
        *,
        timeout: float = 10.0,
        max_body: int = MAX_BODY,
        priority: int = ROUTINE,
    ) -> None:
        self.session = session
        self.budget = budget  # None: send at will (tests of the parsing only)
        self.priority = priority  # its level in the per-IP budget's queues (the market feed: FEED, first)
        self.clock = clock
        self.max_body = max_body
        self.configure(base_url, timeout)
        self.requests = 0
        self._latest: dict[str, Marks] = {}
        self._in_flight: dict[str, tuple[datetime, asyncio.Task[Marks]]] = {}

    def configure(self, base_url: str, timeout: float) -> None:
        """Take a reloaded `bitget_url` and `request_timeout`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def latest(self, product_type: str) -> Marks | None:
        """The most recently asked answer read for a product type, if any."""
        return self._latest.get(product_type.upper())

    async def read(self, product_type: str, since: datetime | None = None) -> Marks:
        """The marks of a product type, asked no earlier than `since` (default: now). Raises ExchangeError
        (naming the endpoint and the product type) when they cannot be read, ValueError for a product type
        that is not a futures one."""
        product_type = product_type.upper()
        if product_type not in ep.FUTURES_PRODUCT_TYPES:
            raise ValueError(f"{product_type!r} is not a futures product type ({', '.join(ep.FUTURES_PRODUCT_TYPES)})")
        since = since or self.clock.now()
        latest = self._latest.get(product_type)
        if latest is not None and latest.asked_at >= since:
            return latest
        flight = self._in_flight.get(product_type)
        if flight is None or flight[0] < since:
            task = asyncio.create_task(self._fetch(product_type, self.clock.now()), name=f"marks {product_type}")
            task.add_done_callback(_retrieved)  # nobody may be left waiting for a failed read
            flight = self._in_flight[product_type] = (self.clock.now(), task)
        # Shielded: one caller giving up (its own timeout) must not cancel the read for the others.
        return await asyncio.shield(flight[1])

    async def read_spot(self) -> SpotPrices:
        """The USDT price of every spot coin with a COINUSDT pair, asked now. Raises ExchangeError naming the
        endpoint when they cannot be read."""
        asked_at = self.clock.now()
        status, body = await self._get(ep.SPOT_TICKERS, ep.SPOT_TICKERS.path)
        prices, unreadable = parse_spot_tickers(status, body)
        return SpotPrices(asked_at, prices, unreadable)

    async def _fetch(self, product_type: str, asked_at: datetime) -> Marks:
        try:
            status, body = await self._get(ep.TICKERS, f"{ep.TICKERS.path}?productType={product_type}")
            prices, unreadable = parse_tickers(status, body, product_type)
            marks = Marks(product_type, asked_at, prices, unreadable)
            latest = self._latest.get(product_type)
            if latest is None or latest.asked_at <= asked_at:
                self._latest[product_type] = marks
            return marks
        finally:
            if self._in_flight.get(product_type, (None, None))[1] is asyncio.current_task():
                del self._in_flight[product_type]

    async def _get(self, endpoint: ep.Endpoint, where: str) -> tuple[int, bytes]:
        """One unsigned GET through the budget: (HTTP status, body). Transport failures become ExchangeErrors."""
        held = await self.budget.acquire(endpoint, priority=self.priority) if self.budget is not None else []
        try:
            self.requests += 1
            url = URL(self.base_url + where, encoded=True)
            async with self.session.get(url, headers={"locale": "en-US"}, timeout=self.timeout) as response:
                return response.status, await _capped(response, self.max_body, where)
        except TimeoutError as exc:
            raise errors.RequestTimeout("no answer within the request timeout", endpoint=where) from exc
        except aiohttp.ClientPayloadError as exc:
            raise errors.MalformedResponse(f"truncated response body ({exc})", endpoint=where) from exc
        except aiohttp.ClientResponseError as exc:
            raise errors.MalformedResponse(f"broken HTTP response ({exc.message})", endpoint=where) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise errors.ConnectionFailed(f"connection failed: {exc}", endpoint=where) from exc
        finally:
            release(held)


async def _capped(response: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The body, refused once it grows past `limit` bytes (a proxy's endless page must not fill memory)."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise errors.MalformedResponse(f"response body larger than {limit} bytes", endpoint=where,
                                           http_status=response.status)  # fmt: skip
        chunks.append(chunk)
    return b"".join(chunks)


def parse_tickers(status: int, body: bytes, product_type: str) -> tuple[dict[str, Decimal], dict[str, str]]:
    """Bitget's tickers answer into (symbol -> mark price, symbol -> why its mark is unreadable).

    The envelope and the list are strict: anything else raises an ExchangeError naming the endpoint. Each row's
    `markPrice` must be a positive finite decimal; a row whose mark is not is left out and its symbol listed
    with the reason, so one odd symbol never hides the marks of the others, and a broken mark is never used.
    """
    return _parse_rows(status, body, f"{ep.TICKERS.path}?productType={product_type}", "markPrice")


def parse_spot_tickers(status: int, body: bytes) -> tuple[dict[str, Decimal], dict[str, str]]:
    """Bitget's spot tickers answer into (coin -> USDT price, coin -> why its price is unreadable), from the
    `lastPr` of each COINUSDT pair; pairs quoted in anything else are left out. Strict as `parse_tickers`."""
    prices, unreadable = _parse_rows(status, body, ep.SPOT_TICKERS.path, "lastPr")

    def coin(symbol: str) -> str | None:
        base = symbol.upper().removesuffix("USDT")
        return base if base and base != symbol.upper() else None

    return (
        {c: price for symbol, price in prices.items() if (c := coin(symbol))},
        {c: why for symbol, why in unreadable.items() if (c := coin(symbol))},
    )


def _parse_rows(status: int, body: bytes, where: str, price_field: str) -> tuple[dict[str, Decimal], dict[str, str]]:
    try:
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        snippet = " ".join(body[:80].decode("utf-8", errors="replace").split())
        if status == 429:
            raise errors.RateLimited("Too Many Requests", endpoint=where, http_status=status, code="429") from None
        kind = classify(None, status) if status >= 400 else errors.MalformedResponse
        raise kind(f"response is not Bitget JSON: {snippet!r}", endpoint=where, http_status=status) from None
    if not isinstance(document, dict) or "code" not in document:
        raise errors.MalformedResponse("the body is not Bitget's {code, msg, data} envelope", endpoint=where,
                                       http_status=status)  # fmt: skip
    code = str(document["code"])
    if code != SUCCESS or status >= 400:
        known = CODES.get(code)
        message = str(document.get("msg") or (known.msg if known else f"HTTP {status}"))
        raise classify(code, status)(message, endpoint=where, http_status=status, code=code)
    rows = document.get("data")
    if not isinstance(rows, list):
        raise errors.UnexpectedResponse(f"data: expected a list of tickers, got {_show(rows)}", endpoint=where)
    prices: dict[str, Decimal] = {}
    unreadable: dict[str, str] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise errors.UnexpectedResponse(f"data[{i}]: expected an object, got {_show(row)}", endpoint=where)
        symbol = row.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise errors.UnexpectedResponse(f"data[{i}].symbol: expected a symbol, got {_show(symbol)}",
                                            endpoint=where)  # fmt: skip
        try:
            price = _price(row.get(price_field))
        except ValueError as exc:
            unreadable[symbol] = f"{where}: data[{i}] ({symbol}).{price_field}: {exc}"
            prices.pop(symbol, None)
            continue
        if symbol in unreadable or prices.setdefault(symbol, price) != price:
            unreadable[symbol] = f"{where}: {symbol} is listed twice with different marks"
            prices.pop(symbol, None)
    return prices, unreadable


def _price(value: Any) -> Decimal:
    """A mark price: a decimal string or JSON number, finite, positive and below MAX_PRICE."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"expected a decimal, got {_show(value)}")
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"expected a decimal, got {_show(value)}") from None
    if not price.is_finite() or not 0 < price < MAX_PRICE:
        raise ValueError(f"not a usable price: {_show(value)}")
    return price


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _retrieved(task: asyncio.Task[Marks]) -> None:
    if not task.cancelled():
        task.exception()
