"""The aiohttp application: pages, the JSON API, health, metrics, authentication and security headers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

from monitor.config.model import WebSettings
from monitor.poller.state import FRESH
from web import actions, api, pages
from web.api import json_response
from web.keys import SIGN_INS, SOURCE, TEMPLATES
from web.metrics import render_metrics
from web.signin import FailedSignIns
from web.status import StatusReader

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_AGE = 30 * 86400  # seconds a sign-in lasts
COOKIE = "bm_session"
MAX_BODY = 64 * 1024  # bytes: the only bodies this server reads are the login form and the action forms
BODY_TIMEOUT = 10.0  # seconds a client has to send that body
OPEN_PATHS = ("/healthz", "/login", "/static/", "/favicon.ico")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(source: StatusReader) -> web.Application:
    """The app reads its settings from the service on every request, so a reload (a new token) applies at
    once; only `listen` needs a restart."""
    app = web.Application(middlewares=[security_headers, check_host, authenticate], client_max_size=MAX_BODY)
    app[SOURCE] = source
    app[SIGN_INS] = FailedSignIns(source.clock)
    app[TEMPLATES] = pages.environment(HERE / "templates")
    app.router.add_get("/", pages.overview)
    app.router.add_get("/accounts/{name}", pages.account)
    app.router.add_get("/alerts", pages.alerts)
    app[actions.CSRF_KEY] = secrets.token_bytes(32)
    app.router.add_post("/actions/silence", actions.silence)
    app.router.add_post("/actions/silences/{id}/remove", actions.remove_silence)
    app.router.add_post("/actions/acknowledge", actions.acknowledge)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/accounts/{name}", api.account)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", HERE / "static", append_version=True, name="static")
    app.router.add_get("/favicon.ico", favicon)  # asked for by browsers whatever a page declares (/metrics, JSON)
    app[TEMPLATES].globals["static"] = lambda path: str(app.router["static"].url_for(filename=path))
    return app


async def favicon(request: web.Request) -> web.FileResponse:
    """The page's icon (an SVG, which browsers take at this address too): without it, browsers log a 404 in the
    console on every page, and on answers that declare no icon (/metrics, the API)."""
    return web.FileResponse(HERE / "static" / "favicon.svg")


def settings_of(request: web.Request) -> WebSettings:
    return request.app[SOURCE].web_settings()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- middlewares -----------------------------------------------------------------------------------------------


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _headers(request, exc)
        raise
    except Exception:  # a bug or the database: a plain 500 that still carries the headers
        log.exception("%s %s failed", request.method, request.path)
        response = web.Response(status=500, text="internal error (logged)")
    _headers(request, response)
    return response


@web.middleware
async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only the names this server is meant to be reached by: loopback, IP addresses, names without a dot (a
    container's or a machine's on the local network), the `listen` host and the `public_url` host. A page
    elsewhere cannot point its own domain at 127.0.0.1 (DNS rebinding) and use the browser to read the accounts
    (no token) or to guess the token (with one)."""
    settings = settings_of(request)
    if request.path == "/healthz":
        return await handler(request)
    host = request.url.host or ""
    allowed = {settings.listen[0]}
    if settings.public_url:
        allowed.add(urlsplit(settings.public_url).hostname or "")
    if is_loopback(host) or is_address(host) or "." not in host.rstrip(".") or host in allowed:
        return await handler(request)
    hint = (
        "set [web] public_url to the address people use" if settings.token else "set [web] token to serve other names"
    )
    raise web.HTTPMisdirectedRequest(text=f"this server does not answer to {host[:100]!r}; {hint}")


def is_address(host: str) -> bool:
    """An IP address, which no other site can rebind (rebinding needs a name the attacker's DNS answers for)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


def session_value(token: str, issued: int) -> str:
    """What the login cookie holds: when it was issued, signed with the token (never the token itself). A new
    token voids every cookie; a cookie expires after SESSION_AGE whatever the browser does."""
    mac = hmac.new(token.encode(), f"bitget-monitor session {issued}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def valid_session(cookie: str, token: str, now: float) -> bool:
    """Whether the cookie is a sign-in that is still valid; anything malformed is simply not one."""
    issued, _, _ = cookie.partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) <= 12) or not 0 <= now - int(issued) <= SESSION_AGE:
        return False
    return hmac.compare_digest(_bytes(cookie), session_value(token, int(issued)).encode())


def _bytes(text: str) -> bytes:
    """Header text as bytes: aiohttp keeps undecodable bytes as surrogates, which a plain encode() refuses."""
    return text.encode("utf-8", "surrogateescape")


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def too_many(request: web.Request) -> web.HTTPTooManyRequests | None:
    """A 429 for an address that failed to sign in too often, or None."""
    wait = request.app[SIGN_INS].retry_after(_client(request))
    if wait is None:
        return None
    return web.HTTPTooManyRequests(text="too many failed sign-ins from this address; try again later\n",
                                   headers={"Retry-After": str(int(wait) + 1)})  # fmt: skip


def authorized(request: web.Request, settings: WebSettings) -> bool:
    """Raises 429 when a bearer token comes from an address that failed too often (it is not checked)."""
    if settings.token is None:
        return True
    token = settings.token.reveal()
    now = request.app[SOURCE].clock.now().timestamp()
    if valid_session(request.cookies.get(COOKIE, ""), token, now):
        return True
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    refusal = too_many(request)
    if refusal is not None:
        raise refusal
    if hmac.compare_digest(_bytes(header[7:]), token.encode()):
        return True
    request.app[SIGN_INS].failed(_client(request), "bearer token")
    return False


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = settings_of(request)
    open_path = request.path.startswith(OPEN_PATHS) or (request.path == "/metrics" and settings.metrics_public)
    if open_path or authorized(request, settings):
        return await handler(request)
    if request.path.startswith("/api/") or request.path in ("/metrics", "/readyz"):
        raise web.HTTPUnauthorized(
            text='{"error": "unauthorized"}', content_type="application/json", headers={"WWW-Authenticate": "Bearer"}
        )
    raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")


# -- login ---------------------------------------------------------------------------------------------------


def _next(value: str | None) -> str:
    """Only a path on this server: never an open redirect (browsers drop tabs and newlines, read a backslash
    as a slash, and take "//host" as another site)."""
    if not value or not value.startswith("/") or any(c.isspace() or c in "\\" or ord(c) < 32 for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return "/"
    return value


async def login_form(request: web.Request) -> web.Response:
    if settings_of(request).token is None:
        raise web.HTTPNotFound(text="no login: this server has no token")
    context = {"title": "Sign in", "next": _next(request.query.get("next")), "failed": False}
    return pages.render(request, "login.html.j2", context)


async def login(request: web.Request) -> web.StreamResponse:
    settings = settings_of(request)
    if settings.token is None:
        raise web.HTTPNotFound(text="no login: this server has no token")
    refusal = too_many(request)
    if refusal is not None:
        raise refusal
    try:
        form = await asyncio.wait_for(request.post(), BODY_TIMEOUT)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the form took too long to arrive\n") from None
    target = _next(str(form.get("next", "/")))
    given = str(form.get("token", ""))
    if not hmac.compare_digest(_bytes(given), settings.token.reveal().encode()):
        request.app[SIGN_INS].failed(_client(request), "login form")
        response = pages.render(request, "login.html.j2", {"title": "Sign in", "next": target, "failed": True})
        response.set_status(401)
        return response
    response = web.HTTPSeeOther(target)
    issued = int(request.app[SOURCE].clock.now().timestamp())
    # Secure wherever the browser keeps it: HTTPS, or loopback (a secure context). Over plain HTTP elsewhere
    # a Secure cookie would be dropped and sign-in would loop; the README says to put HTTPS in front.
    secure = (
        request.secure or request.headers.get("X-Forwarded-Proto") == "https" or is_loopback(request.url.host or "")
    )
    response.set_cookie(COOKIE, session_value(settings.token.reveal(), issued), httponly=True, secure=secure,
                        samesite="Strict", max_age=SESSION_AGE)  # fmt: skip
    raise response


# -- machine interfaces ----------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the database answers, the poller runs, and enough accounts have fresh data. A rejected reload shows
    as the check `config` (false) and `config_error`, without failing readiness."""
    source = request.app[SOURCE]
    health = source.health()
    rows = source.rows()
    fresh = sum(r.health in FRESH for r in rows)
    share = fresh / len(rows) if rows else 0.0  # polling nothing (yet) is not ready
    checks = {
        "database": health.database_ready and await source.database_ok(),
        "poller": health.poller_running,
        "fresh_accounts": share >= settings_of(request).ready_fresh_share,
        "leases": health.lease_mode in ("single", "sharing"),  # not polling alone, not still claiming
        "outbox_written": health.messages_in_memory == 0,  # else messages wait in memory
        "market_feed": not any(f.stale for f in health.feed),  # else positions are judged on account reads' marks
    }
    ready = all(checks.values())
    # A rejected reload leaves the previous configuration polling and alerting as before: said here, it does not
    # make the process unready (a load balancer or orchestrator would only stop the page that shows the error).
    reload = health.config
    checks["config"] = reload is None or reload.error is None
    body = {"ready": ready, "checks": checks, "fresh_share": round(share, 4), "accounts": len(rows),
            "mode": health.lease_mode, "messages_in_memory": health.messages_in_memory}  # fmt: skip
    if reload is not None and reload.error is not None:
        body["config_error"] = {"file": reload.file, "error": reload.error, "since": reload.failed_since}
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    text, content_type = await render_metrics(request.app[SOURCE])
    return web.Response(body=text, headers={"Content-Type": content_type})
