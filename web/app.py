"""The aiohttp application: pages, the JSON API, health, metrics, authentication and security headers."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

from monitor.config.model import WebSettings
from web import pages
from web.keys import SOURCE, TEMPLATES
from web.metrics import render_metrics
from web.pages import json_response
from web.status import StatusSource

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_AGE = 30 * 86400  # seconds a sign-in lasts
COOKIE = "bm_session"
OPEN_PATHS = ("/healthz", "/login", "/static/")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(source: StatusSource) -> web.Application:
    """The app reads its settings from the service on every request, so a reload (a new token) applies at
    once; only `listen` needs a restart."""
    app = web.Application(middlewares=[security_headers, check_host, authenticate])
    app[SOURCE] = source
    app[TEMPLATES] = pages.environment(HERE / "templates")
    app.router.add_get("/", pages.overview)
    app.router.add_get("/accounts/{name}", pages.account)
    app.router.add_get("/alerts", pages.alerts)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/api/v1/status", pages.api_status)
    app.router.add_get("/api/v1/accounts/{name}", pages.api_account)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", HERE / "static", append_version=True, name="static")
    app[TEMPLATES].globals["static"] = lambda path: str(app.router["static"].url_for(filename=path))
    return app


def settings_of(request: web.Request) -> WebSettings:
    return request.app[SOURCE].service.config.web


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
    """Without a token, only the names this server is meant to be reached by: a page elsewhere cannot point
    its own domain at 127.0.0.1 (DNS rebinding) and read the accounts through the browser."""
    settings = settings_of(request)
    if settings.token is not None or request.path == "/healthz":
        return await handler(request)
    host = request.url.host or ""
    allowed = {settings.listen[0]}
    if settings.public_url:
        allowed.add(urlsplit(settings.public_url).hostname or "")
    if is_loopback(host) or host in allowed:
        return await handler(request)
    raise web.HTTPMisdirectedRequest(text=f"this server does not answer to {host!r}; set [web] token to serve "
                                     "other names")  # fmt: skip


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
    issued, _, _ = cookie.partition(".")
    if not issued.isdigit() or not 0 <= now - int(issued) <= SESSION_AGE:
        return False
    return hmac.compare_digest(cookie.encode(), session_value(token, int(issued)).encode())


def authorized(request: web.Request, settings: WebSettings) -> bool:
    if settings.token is None:
        return True
    token = settings.token.reveal()
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    now = request.app[SOURCE].clock.now().timestamp()
    return valid_session(request.cookies.get(COOKIE, ""), token, now)


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
    form = await request.post()
    target = _next(str(form.get("next", "/")))
    given = str(form.get("token", ""))
    if not hmac.compare_digest(given.encode(), settings.token.reveal().encode()):
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
    """Ready: the database answers, the poller runs, and enough accounts have fresh data."""
    source = request.app[SOURCE]
    service = source.service
    rows = source.rows()
    fresh = sum(r.status in ("ok", "failing") for r in rows)
    share = fresh / len(rows) if rows else 0.0  # polling nothing (yet) is not ready
    checks = {
        "database": service.storage_ready.is_set() and service.writer.healthy and await source.database_ok(),
        "poller": service.poller is not None and service.poller.running,
        "fresh_accounts": share >= settings_of(request).ready_fresh_share,
        "outbox_written": service.sender.memory.waiting == 0,  # else messages wait in memory
    }
    body = {"ready": all(checks.values()), "checks": checks, "fresh_share": round(share, 4), "accounts": len(rows),
            "messages_in_memory": service.sender.memory.waiting}  # fmt: skip
    return json_response(body, status=200 if body["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    text, content_type = await render_metrics(request.app[SOURCE])
    return web.Response(body=text, headers={"Content-Type": content_type})
