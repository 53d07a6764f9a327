"""The status server against hostile clients, over real sockets on loopback: slow headers, too many
connections, token guessing, malformed credentials, rebinding host names and a full file table."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.readmodel import ServiceReader
from monitor.service import Service
from web.app import create_app
from web.signin import LIMIT
from web.site import AcceptErrors, GuardedSite, make_runner

TOKEN = "guard-token-7"


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """What the server sent before it closed. A close with our bytes still unread in its buffer reaches us as a
    reset (the kernel's answer to closing on unread data), and a reset is a close too."""
    received = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


class Served:
    def __init__(self, site: GuardedSite, port: int) -> None:
        self.site = site
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def raw(self, request: bytes, timeout: float = 10.0) -> bytes:
        """Send bytes as they are and read the whole answer (the server closes)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    """The monitor's own site (as `run` starts it) for a service that polls nothing during the test."""
    cleanups: list[Any] = []

    async def start(web: str = "", *, header_timeout: float = 10.0, limit: int = 64) -> Served:
        path = tmp_path / "accounts.toml"
        path.write_text(f'[monitor]\ndatabase_url = "sqlite:///{tmp_path}/m.db"\nbitget_url = "http://127.0.0.1:9"\n'
                        f'[web]\n{web}\n[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\n'
                        'passphrase = "p"\n')  # fmt: skip
        service = Service(path, load_config(path, env={}), SystemClock())
        context = service.started()
        await context.__aenter__()
        cleanups.append(lambda: context.__aexit__(None, None, None))
        runner = make_runner(create_app(ServiceReader(service)), header_timeout=header_timeout)
        await runner.setup()
        cleanups.append(runner.cleanup)
        site = GuardedSite(runner, "127.0.0.1", 0, limit=lambda: limit)
        await site.start()
        return Served(site, runner.addresses[0][1])

    yield start
    for cleanup in reversed(cleanups):
        await cleanup()


async def test_a_client_that_trickles_its_header_is_dropped_after_the_header_timeout(serve: Any) -> None:
    served = await serve(header_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while True:  # a header line every 0.2 s, never the blank line that ends the head
            await asyncio.sleep(0.2)
            writer.write(b"X-Slow: 1\r\n")

    slow = asyncio.create_task(trickle())
    try:
        answer = await until_closed(reader, 30)
    finally:
        slow.cancel()
        writer.close()
    assert answer == b""  # closed, no answer
    assert loop.time() - started >= 0.9  # by the deadline, not at once for some other reason
    async with aiohttp.ClientSession() as session:
        async with session.get(served.url + "/healthz") as response:
            assert response.status == 200
        async with session.get(served.url + "/static/style.css") as response:  # sendfile through the counting
            assert response.status == 200 and len(await response.read()) > 100


async def test_a_client_that_connects_and_says_nothing_is_dropped(serve: Any) -> None:
    served = await serve(header_timeout=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        assert await asyncio.wait_for(reader.read(), 30) == b""
    finally:
        writer.close()
    assert served.site.open == 0


async def test_past_the_connection_cap_new_clients_get_a_503_and_healthz_answers_once_idle_ones_time_out(
    serve: Any, caplog: Any
) -> None:
    served = await serve(header_timeout=2.0, limit=4)
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(4)]
    try:
        async with asyncio.timeout(10):
            while served.site.open < 4:
                await asyncio.sleep(0.01)
        answer = await served.raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer
        assert served.site.refused == 1 and "refusing new ones" in caplog.text
        # The idle ones are dropped at the header deadline; a normal client gets through afterwards.
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                try:
                    async with session.get(served.url + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        assert [await asyncio.wait_for(reader.read(), 10) for reader, _ in idle] == [b""] * 4
    finally:
        for _, writer in idle:
            writer.close()


async def test_failed_sign_ins_from_one_address_are_limited_with_a_429_and_logged(serve: Any, caplog: Any) -> None:
    served = await serve(f'token = "{TOKEN}"')
    async with aiohttp.ClientSession() as session:
        login = served.url + "/login"
        async with session.post(login, data={"token": TOKEN}, allow_redirects=False) as signed_in:
            assert signed_in.status == 303
            cookie = {"Cookie": f"bm_session={signed_in.cookies['bm_session'].value}"}
        for _ in range(LIMIT - 1):
            async with session.post(login, data={"token": "guess"}, allow_redirects=False) as response:
                assert response.status == 401
        bearer = {"Authorization": "Bearer guess"}
        async with session.get(served.url + "/api/v1/status", headers=bearer) as response:
            assert response.status == 401  # the limit-th failure, a bearer token this time
        for attempt in ({"token": "guess"}, {"token": TOKEN}):  # refused unchecked: a right guess looks the same
            async with session.post(login, data=attempt, allow_redirects=False) as response:
                assert response.status == 429 and int(response.headers["Retry-After"]) > 0
        async with session.get(served.url + "/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 429
        async with session.get(served.url + "/api/v1/status", headers=cookie) as response:
            assert response.status == 200  # a signed cookie cannot be guessed: people already in stay in
        async with session.get(served.url + "/healthz") as response:
            assert response.status == 200
    failures = [r for r in caplog.records if "failed sign-in from 127.0.0.1" in r.getMessage()]
    assert len(failures) == LIMIT and "refused" in failures[-1].getMessage()
    assert TOKEN not in caplog.text and "guess" not in caplog.text


async def test_a_login_body_past_the_limit_is_refused(serve: Any) -> None:
    served = await serve(f'token = "{TOKEN}"')
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + "/login", data={"token": "x" * 200_000}) as response,
    ):
        assert response.status == 413


async def test_a_login_form_that_never_finishes_arriving_gets_a_408(serve: Any) -> None:
    served = await serve(f'token = "{TOKEN}"')
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: 1000\r\n\r\ntoken=gue")  # and nothing more  # fmt: skip
        status = await asyncio.wait_for(reader.readline(), 60)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 408 "), status


@pytest.mark.parametrize(
    "header",
    [
        b"Cookie: bm_session=\xc2\xb2.abc",  # a digit to str.isdigit(), not to int()
        b"Cookie: bm_session=" + b"9" * 5000 + b".x",  # past int()'s digit limit
        b"Cookie: bm_session=\xff\xfe",  # not UTF-8
        b'Cookie: bm_session="\\x"; =;=',
        b"Authorization: Bearer \xff\xfe",
    ],
)
async def test_a_malformed_cookie_or_authorization_header_is_a_401_not_a_500(serve: Any, header: bytes) -> None:
    served = await serve(f'token = "{TOKEN}"')
    head = b"Host: 127.0.0.1\r\nConnection: close\r\n" + header + b"\r\n\r\n"
    api = await served.raw(b"GET /api/v1/status HTTP/1.1\r\n" + head)
    assert api.startswith(b"HTTP/1.1 401 "), api[:200]
    page = await served.raw(b"GET / HTTP/1.1\r\n" + head)
    assert page.startswith(b"HTTP/1.1 303 "), page[:200]  # to the login form
    assert b"Traceback" not in api + page


async def test_with_a_token_set_the_server_still_answers_only_to_its_own_names(serve: Any) -> None:
    """A rebinding page (its own domain pointed at 127.0.0.1) must not get to guess tokens from a browser."""
    served = await serve(f'token = "{TOKEN}"\npublic_url = "https://monitor.example.org/"')
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:

        async def status(host: str, path: str = "/api/v1/status", method: str = "GET", **kw: Any) -> int:
            async with session.request(method, served.url + path, headers={"Host": host, **kw.pop("headers", {})},
                                       allow_redirects=False, **kw) as response:  # fmt: skip
                return response.status

        assert await status("attacker.example", headers=bearer) == 421
        assert await status("monitor.attacker.example.", headers=bearer) == 421
        assert await status("attacker.example:8080", "/login", "POST", data={"token": "guess"}) == 421
        assert await status("attacker.example", "/healthz") == 200
        hosts = ("127.0.0.1:8080", "localhost", "monitor.example.org", "192.168.1.20:8080", "[::1]:8080", "monitor")
        for host in hosts:  # its own names, addresses, and names without a dot (Prometheus in a container network)
            assert await status(host, headers=bearer) == 200, host
        assert await status("192.168.1.20") == 401


async def test_accept_errors_are_logged_once_a_minute_with_a_count(caplog: Any) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    errors = AcceptErrors()
    errors.install(loop)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(5000):  # what asyncio reports while the file table is full
                loop.call_exception_handler({"message": "socket.accept() out of system resource", "socket": None,
                                             "exception": OSError(errno.EMFILE, "Too many open files")})  # fmt: skip
        lines = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
        assert len(lines) == 1 and errors.count == 5000
    finally:
        errors.remove()
    assert loop.get_exception_handler() is previous
