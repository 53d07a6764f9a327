"""Serving the app to clients that may be hostile: a deadline for each request head, idle connections closed,
a cap on open connections with a plain refusal past it, and accept errors logged at a bounded rate.

aiohttp's keep-alive timer starts when a connection opens and closes it if no complete request head has arrived
by then, so `keepalive_timeout` is also the header deadline (a slowloris client trickling a header is dropped
when it runs out). The cap counts connections from the moment they are accepted: aiohttp registers them a
little later, so a burst would slip past a cap that read its list.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds a connection has to send a whole request head; also how long it may idle
MAX_LINE = 8190  # bytes of a request line or header field
LINGER = 1.0  # seconds a refused connection stays open so the client reads the refusal before the close
LINGERING = 64  # refused connections held that long at once; past it they are closed at once
ACCEPT_LOG_INTERVAL = 60.0  # seconds between two log lines about failing accepts
REFUSAL_TEXT = "too many connections to the status page; try again shortly\n"


def make_runner(app: web.Application, *, header_timeout: float = HEADER_TIMEOUT) -> web.AppRunner:
    return web.AppRunner(
        app, access_log=None, keepalive_timeout=header_timeout, max_line_size=MAX_LINE, max_field_size=MAX_LINE
    )


class GuardedSite(web.BaseSite):
    """A TCP site that refuses connections past `limit()` (read at each accept, so a reload applies) with a
    503 and a short text, and keeps asyncio's accept errors (a full file table) to one log line a minute."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, limit: Callable[[], int]) -> None:
        super().__init__(runner)
        self.host, self.port, self.limit = host, port, limit
        self.open = 0  # connections accepted and not yet closed
        self.refused = 0  # since start
        self.lingering = 0
        self._accept_errors = AcceptErrors()

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._accept_errors.install(loop)
        try:
            self._server = await loop.create_server(self._protocol, self.host, self.port, backlog=self._backlog)
        except BaseException:
            self._accept_errors.remove()
            raise

    async def stop(self) -> None:
        self._accept_errors.remove()
        await super().stop()

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.open >= self.limit():
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("status page: %d connections open, the limit: refusing new ones (%d so far)",
                            self.open, self.refused)  # fmt: skip
            return _Refusal(self)
        server = self._runner.server
        assert server is not None
        self.open += 1
        return _Counted(server(), self)


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted while it is open."""

    def __init__(self, inner: Any, site: GuardedSite) -> None:
        self.inner = inner
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.open -= 1
        self.inner.connection_lost(exc)


class _Refusal(asyncio.Protocol):
    """Answers 503 without reading the request, then closes once the client has had the chance to read it."""

    def __init__(self, site: GuardedSite) -> None:
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = REFUSAL_TEXT.encode()
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        if self.site.lingering >= LINGERING:
            transport.close()
            return
        # Closing with the request still unread would reset the connection and could discard the answer:
        # end our side, discard what arrives, and close when the client does or after LINGER.
        self.site.lingering += 1
        transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        if self.transport is not None:
            self.transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.site.lingering -= 1


class AcceptErrors:
    """A loop exception handler that logs failing accepts (EMFILE and its kin, which asyncio reports at every
    retry) once per ACCEPT_LOG_INTERVAL with a count, and passes everything else on."""

    CODES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.count = 0  # since start
        self._unlogged = 0
        self._logged_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._previous = loop, loop.get_exception_handler()
        loop.set_exception_handler(self)

    def remove(self) -> None:
        if self._loop is not None and self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in self.CODES and "socket" in context):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.count += 1
        self._unlogged += 1
        now = loop.time()
        if self._logged_at is None or now - self._logged_at >= self.interval:
            log.error("status page cannot accept connections (%s): %d failed accepts since the last report; "
                      "lower the load or raise the open-files limit", exc.strerror, self._unlogged)  # fmt: skip
            self._logged_at, self._unlogged = now, 0
