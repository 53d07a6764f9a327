"""Acting from the page: silence an alert or an account, remove a silence, acknowledge a firing alert.

Who may act: with a token, whoever is signed in (the authenticate middleware has let the request through); without
one, only clients on loopback. Every form carries a CSRF token in a hidden field, checked on POST: a SameSite
cookie alone does not stop a page on a sibling site, or an old browser, from posting. With a token the CSRF token
is derived from the sign-in cookie (it changes with every sign-in); without one it is a random value kept in its
own cookie (double submit). Actions are written to the database through the store, as the CLI's are."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web

from monitor.config.values import duration
from web.keys import SOURCE

CSRF_COOKIE = "bm_csrf"
CSRF_FIELD = "csrf"
SESSION_COOKIE = "bm_session"  # web.app.COOKIE: the sign-in
BODY_TIMEOUT = 10.0
LONGEST = timedelta(days=30)  # a silence from the page; longer ones are a deliberate act for the CLI
CSRF_KEY: web.AppKey[bytes] = web.AppKey("csrf_key", bytes)  # per process: signs the CSRF tokens of the no-token mode


def csrf_token(request: web.Request) -> tuple[str, str | None]:
    """The request's CSRF token, and a new cookie value to set when the browser has none yet (no-token mode)."""
    settings = request.app[SOURCE].web_settings()
    if settings.token is not None:
        session = request.cookies.get(SESSION_COOKIE, "")
        return _mac(settings.token.reveal().encode(), session), None
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if _well_formed(cookie):
        return _mac(request.app[CSRF_KEY], cookie), None
    cookie = secrets.token_urlsafe(24)
    return _mac(request.app[CSRF_KEY], cookie), cookie


def _mac(key: bytes, value: str) -> str:
    return hmac.new(key, f"bitget-monitor csrf {value}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _well_formed(cookie: str) -> bool:
    return 16 <= len(cookie) <= 64 and cookie.isascii() and all(c.isalnum() or c in "-_" for c in cookie)


def set_csrf_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="Strict", path="/",
                        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https")  # fmt: skip


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form, after checking who acts and the CSRF token."""
    settings = request.app[SOURCE].web_settings()
    if settings.token is None and not _loopback(request):
        raise web.HTTPForbidden(text="without a [web] token only this machine (loopback) may act from the page\n")
    try:
        form = await asyncio.wait_for(request.post(), BODY_TIMEOUT)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the form took too long to arrive\n") from None
    expected, fresh = csrf_token(request)
    given = str(form.get(CSRF_FIELD, ""))
    if fresh is not None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong: reload the page and try again\n")
    return {k: str(v) for k, v in form.items()}


def who(request: web.Request) -> str:
    signed = request.app[SOURCE].web_settings().token is not None
    return f"{'signed-in user' if signed else 'loopback user'} at {request.remote or 'unknown'}"


def _back(request: web.Request, form: dict[str, str]) -> web.HTTPSeeOther:
    """Back to the page the form was on (only a path on this server)."""
    target = form.get("back", "/")
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc or "\\" in target:
        target = "/"
    return web.HTTPSeeOther(target)


async def silence(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    account = form.get("account", "").strip()
    reason = form.get("reason", "").strip()
    if not account:
        raise web.HTTPBadRequest(text="silence: the account is missing\n")
    if not reason:
        raise web.HTTPBadRequest(text="silence: say why (the reason is shown with the silence)\n")
    try:
        length = duration(form.get("duration", ""))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"silence: duration: {exc}\n") from None
    if not timedelta(0) < length <= LONGEST:
        raise web.HTTPBadRequest(text="silence: the duration must be more than 0 and at most 30 days\n")
    rule = form.get("rule", "").strip() or None
    symbol = form.get("symbol", "").strip() or None
    await request.app[SOURCE].add_silence(account, rule, symbol, length, f"{reason[:300]} ({who(request)})")
    raise _back(request, form)


async def remove_silence(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    try:
        id_ = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such silence\n") from None
    if not await request.app[SOURCE].remove_silence(id_):
        raise web.HTTPNotFound(text=f"no active silence {id_}\n")
    raise _back(request, form)


async def acknowledge(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if await request.app[SOURCE].acknowledge(form.get("key", ""), who(request)) is None:
        raise web.HTTPConflict(text="that alert is not firing (any more): nothing to acknowledge\n")
    raise _back(request, form)
