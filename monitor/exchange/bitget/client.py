"""An async Bitget client for one account, on a shared aiohttp session.

The session is a constructor argument (one per application); tests and the demo point `base_url` at the
simulator on loopback. Answers are read within a size cap (monitor.exchange.bitget.body); requests are signed
against the shared estimate of Bitget's clock (monitor.exchange.bitget.servertime). Every lower-level failure
leaves this module as a `monitor.errors.ExchangeError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from monitor import errors
from monitor.domain import (
    AccountMode,
    FuturesAccount,
    KeyInfo,
    Position,
    SpotAsset,
    UnifiedAccount,
)
from monitor.exchange.bitget import clean as limits
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget import parse
from monitor.exchange.bitget.body import MAX_RESPONSE_SIZE, TooLarge, read_bounded
from monitor.exchange.bitget.clean import clean
from monitor.exchange.bitget.codes import CODES, classify
from monitor.exchange.bitget.ratelimit import AccountBudget
from monitor.exchange.bitget.servertime import ServerClock
from monitor.exchange.bitget.signing import encode_query, prehash, signer_for
from monitor.exchange.bitget.window import release
from monitor.secret import Secret

log = logging.getLogger(__name__)

T = TypeVar("T")
Parser = Callable[[Any, list[parse.Skipped]], T]  # data and the list that collects lenient fields left unknown

REMAINING_HEADER = "x-mbx-used-remain-limit"
RATE_LIMIT_BACKOFF = 2.0  # seconds an account's endpoint rests after a 429


@functools.lru_cache(maxsize=256)
def _target(base_url: str, path: str, params: tuple[tuple[str, str], ...]) -> tuple[URL, str]:
    """(the URL to send, the query to sign) of a request. Every account asks the same few: each is made once
    for all of them."""
    signed_query, sent_query = encode_query(dict(params))
    return URL(base_url + path + (f"?{sent_query}" if sent_query else ""), encoded=True), signed_query


@dataclass(frozen=True)
class Credentials:
    api_key: Secret
    secret: Secret  # HMAC secret or PEM private key
    passphrase: Secret
    demo: bool = False


class BitgetClient:
    """One account's signed view of Bitget."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        account: str,
        credentials: Credentials,
        server_clock: ServerClock,
        *,
        timeout: float = 10.0,
        mode: AccountMode | None = None,
        budget: AccountBudget | None = None,
        lockout: float = 300.0,
        max_response_size: int = MAX_RESPONSE_SIZE,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.credentials = credentials
        self.server_clock = server_clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.mode = mode
        self.budget = budget  # client-side rate limits; None: send at will (check, tests)
        self.lockout = lockout
        self.max_response_size = max_response_size
        self._skipped_logged: set[tuple[str, str]] = set()  # (endpoint, field) of lenient fields left unknown
        self.requests = 0  # requests sent, for the poll record
        self.remaining: dict[str, int] = {}  # last x-mbx-used-remain-limit per endpoint path
        self._signer = signer_for(credentials.secret)
        self._headers = {"Content-Type": "application/json", "locale": "en-US"}  # every request's, unsigned

    def __repr__(self) -> str:
        return f"BitgetClient(account={self.account!r}, base_url={self.base_url!r})"

    @property
    def key_type(self) -> str:
        return self._signer.kind

    # -- transport ---------------------------------------------------------------------------------------

    async def request(self, endpoint: ep.Endpoint, params: Mapping[str, str] | None = None) -> Any:
        """GET an endpoint and return the envelope's `data`, or raise an ExchangeError."""
        signed_at = self.server_clock.clock.monotonic()
        try:
            return await self._request_once(endpoint, params or {})
        except errors.TimestampExpired:
            if not endpoint.signed:
                raise
            log.warning("%s: Bitget says our timestamp expired; re-measuring the clock offset", self.account)
            await self.sync_time(stale_before=signed_at)
            return await self._request_once(endpoint, params or {})

    async def sync_time(self, stale_before: float | None = None) -> int:
        """Measure the offset to Bitget's clock (shared with every account on this host)."""

        async def fetch() -> int:
            data = await self._request_once(ep.SERVER_TIME, {})
            return self._parsed(ep.SERVER_TIME, parse.server_time, data)

        return await self.server_clock.measure(fetch, stale_before)

    async def _request_once(self, endpoint: ep.Endpoint, params: Mapping[str, str], *, budgeted: bool = True) -> Any:
        url, signed_query = _target(self.base_url, endpoint.path, tuple(params.items()))
        # Slots held until the answer is read: Bitget counts the request somewhere in between.
        held = await self.budget.acquire(endpoint) if self.budget is not None and budgeted else []
        try:
            headers = self._headers
            if endpoint.signed:  # signed after any wait for the budget: the timestamp must be fresh when sent
                headers = self._auth_headers(endpoint.path, signed_query)
            self.requests += 1
            async with self.session.get(url, headers=headers, timeout=self.timeout) as response:
                status = response.status
                remaining = response.headers.get(REMAINING_HEADER)
                text = (await self._read_bounded(response, endpoint)).decode("utf-8", errors="replace")
        except errors.ExchangeError:
            raise
        except TimeoutError as exc:
            raise self._error(errors.RequestTimeout, "no answer within the request timeout", endpoint) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._error(errors.MalformedResponse, f"truncated response body ({exc})", endpoint) from exc
        except aiohttp.ClientResponseError as exc:
            raise self._error(errors.MalformedResponse, f"broken HTTP response ({exc.message})", endpoint) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(errors.ConnectionFailed, f"connection failed: {exc}", endpoint) from exc
        finally:
            release(held)
        if remaining is not None and remaining.isascii() and remaining.isdigit() and len(remaining) <= 9:
            self.remaining[endpoint.path] = int(remaining)  # bounded: int() of a long header raises
        try:
            return self._unwrap(endpoint, status, text)
        except errors.RateLimited:
            if self.budget is not None:
                self.budget.back_off(endpoint, RATE_LIMIT_BACKOFF)
                if self.budget.ip.note_rate_limited(self.account):
                    # A task of its own: the read that met the 429 is about to fail and be cancelled.
                    self.budget.ip.probe = asyncio.create_task(self._probe_lockout(), name="lock-out probe")
            raise

    async def _read_bounded(self, response: aiohttp.ClientResponse, endpoint: ep.Endpoint) -> bytes:
        """The body, or a MalformedResponse (retried) past `max_response_size` (monitor.exchange.bitget.body)."""
        try:
            return await read_bounded(response, self.max_response_size)
        except TooLarge as exc:
            message = f"response too large ({exc}; max_response_size is {self.max_response_size} bytes)"
            raise self._error(errors.MalformedResponse, message, endpoint, response.status) from None

    async def _probe_lockout(self) -> None:
        """Ask an endpoint limited by IP only: a 429 there means the whole IP is locked out."""
        assert self.budget is not None
        locked_out = False
        try:  # past the budget's queue: every queued request is waiting on this answer
            await self._request_once(ep.SERVER_TIME, {}, budgeted=False)
        except errors.RateLimited:
            locked_out = True
        except errors.ExchangeError:
            pass
        finally:
            self.budget.ip.probed(locked_out, self.lockout)

    def _auth_headers(self, path: str, signed_query: str) -> dict[str, str]:
        """Every header of a signed request (the unsigned ones too)."""
        timestamp = str(self.server_clock.timestamp_ms())
        message = prehash(timestamp, "GET", path, signed_query)
        headers = {
            **self._headers,
            "ACCESS-KEY": self.credentials.api_key.reveal(),
            "ACCESS-SIGN": self._signer.sign(message),
            "ACCESS-TIMESTAMP": timestamp,
            "ACCESS-PASSPHRASE": self.credentials.passphrase.reveal(),
        }
        if self.credentials.demo:
            headers["paptrading"] = "1"
        return headers

    def _unwrap(self, endpoint: ep.Endpoint, status: int, text: str) -> Any:
        try:
            code, msg, data = parse.envelope(parse.loads(text))
        except (ValueError, RecursionError, parse.BadField):
            snippet = clean(" ".join(text[:80].split()), 80)
            if status == 429:
                raise self._error(errors.RateLimited, "Too Many Requests", endpoint, status, "429") from None
            if status >= 400:  # a proxy's or firewall's page: judged by its status alone
                kind = classify(None, status)
                raise self._error(kind, f"HTTP {status} without a Bitget body: {snippet!r}", endpoint, status) from None
            raise self._error(
                errors.MalformedResponse, f"response is not Bitget JSON: {snippet!r}", endpoint, status
            ) from None
        if parse.is_success(code) and status < 400:
            return data
        known = CODES.get(code)
        message = msg or (known.msg if known else f"HTTP {status}")
        raise self._error(classify(code, status), message, endpoint, status, code)

    def _error(
        self,
        kind: type[errors.ExchangeError],
        message: str,
        endpoint: ep.Endpoint,
        status: int | None = None,
        code: str | None = None,
    ) -> errors.ExchangeError:
        # Every message may carry Bitget's words or a server's: cleaned here, once, whatever its source.
        text = clean(message, limits.MESSAGE)
        return kind(text, account=self.account, endpoint=endpoint.path, http_status=status, code=code)

    def _parsed(self, endpoint: ep.Endpoint, parser: Parser[T], data: Any) -> T:
        skipped: list[parse.Skipped] = []
        try:
            result = parser(data, skipped)
        except parse.BadField as exc:
            raise parse.unexpected(exc, account=self.account, endpoint=endpoint.path) from None
        for item in skipped:
            if (endpoint.path, item.field) not in self._skipped_logged:
                self._skipped_logged.add((endpoint.path, item.field))
                log.warning(
                    "%s: %s: %s is left unknown (the monitor does not need it to judge risk)",
                    self.account, endpoint.path, item.problem,
                )  # fmt: skip
        return result

    async def _get(self, endpoint: ep.Endpoint, parser: Parser[T], **params: str) -> T:
        return self._parsed(endpoint, parser, await self.request(endpoint, params))

    # -- reads -------------------------------------------------------------------------------------------

    async def key_info(self) -> KeyInfo:
        return await self._get(ep.ACCOUNT_INFO, parse.key_info)

    async def account_mode(self) -> AccountMode:
        """Classic or unified, asked once and remembered."""
        if self.mode is None:
            try:
                await self._get(ep.UNIFIED_SETTINGS, parse.unified_settings)
                self.mode = AccountMode.UNIFIED
            except errors.AccountModeMismatch:
                self.mode = AccountMode.CLASSIC
        return self.mode

    async def spot_assets(self) -> tuple[SpotAsset, ...]:
        return await self._get(ep.SPOT_ASSETS, parse.spot_assets)

    async def account_balances(self) -> dict[str, Decimal]:
        """USDT valuation per account type (spot, futures, funding, ...)."""
        return await self._get(ep.ALL_ACCOUNT_BALANCE, parse.account_balances)

    async def futures_accounts(self, product_type: str) -> tuple[FuturesAccount, ...]:
        return await self._get(
            ep.MIX_ACCOUNTS, lambda d, s: parse.futures_accounts(d, product_type, s), productType=product_type
        )

    async def positions(self, product_type: str) -> tuple[Position, ...]:
        return await self._get(
            ep.ALL_POSITIONS, lambda d, s: parse.positions(d, product_type, s), productType=product_type
        )

    async def unified_account(self) -> UnifiedAccount:
        return await self._get(ep.UNIFIED_ASSETS, parse.unified_account)

    async def unified_positions(self, category: str) -> tuple[Position, ...]:
        return await self._get(ep.UNIFIED_POSITIONS, parse.unified_positions, category=category)
