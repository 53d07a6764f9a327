"""The pages: the numbers rendered for people (the same for programs: web.api)."""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from monitor.alerts.model import ACTIVE, Alert, State
from monitor.domain import AccountSnapshot
from monitor.numbers import amount, chance, local_time, money, percent, price, size
from monitor.poller.state import ACCOUNT_STATUSES, INVALID_SNAPSHOT, Reading
from web.actions import csrf_token, set_csrf_cookie
from web.chart import equity_svg
from web.keys import SOURCE, TEMPLATES
from web.risk import DAY, HOUR
from web.status import RANGES, AccountRow, StatusReader, tag_totals, totals

log = logging.getLogger(__name__)
PAGE_SIZE = 100
ALERTS_SHOWN = 50  # on the overview; the alerts page has them all
LIQUIDATIONS_SHOWN = timedelta(hours=24)  # liquidations this recent head the alerts tables
SORTS = ("status", "name", "equity", "upnl", "distance", "margin", "age")


def environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(HOUR=HOUR, DAY=DAY)  # the horizons of the odds of liquidation shown
    env.filters.update(money=money, pct=percent, ratio=ratio, age=age, when=when, segment=segment, price=price,
                       size=size, amount=amount, chance=chance, brief=brief)  # fmt: skip
    return env


def render(request: web.Request, name: str, context: dict[str, Any]) -> web.Response:
    source = request.app[SOURCE]
    defaults = {"refresh": False, "now": source.clock.now(), "path": request.path, "back": request.path_qs,
                "actions": False,
                "tz": source.web_settings().timezone}  # fmt: skip
    defaults["feed_stale"] = stale_feed(source)
    reload = source.health().config
    defaults["config_error"] = reload if reload is not None and reload.error is not None else None
    csrf, new_cookie = csrf_token(request)
    defaults["csrf"] = csrf
    page = request.app[TEMPLATES].get_template(name).render({**defaults, **context})
    response = web.Response(text=page, content_type="text/html")
    if new_cookie is not None:
        set_csrf_cookie(request, response, new_cookie)
    return response


def stale_feed(source: StatusReader) -> dict[str, Any] | None:
    """What the header says while the mark feed is stale: which product types, since when and why, and how old
    the account reads are whose marks the page then shows (None while the feed is fresh, or without one)."""
    stale = [f for f in source.health().feed if f.stale]
    if not stale:
        return None
    ages = [r.age for r in source.rows() if r.feed_stale and r.age is not None]
    return {"sources": stale, "oldest_read": max(ages, default=None)}


# -- formatting --------------------------------------------------------------------------------------------


def segment(name: str) -> str:
    """A name as one path segment of a link (a "/" in it must not make two)."""
    return quote(name, safe="")


def brief(error: str | None, limit: int = 80) -> str:
    """An error in a few words for a banner (the log, /readyz and /metrics have all of it): without the endpoint
    it names and the answer's body it quotes."""
    text = re.sub(r"^/\S*: ", "", error or "")
    text = re.split(r": ['\"<]", text, maxsplit=1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ratio(value: Decimal | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@jinja2.pass_context
def when(context: Any, moment: datetime | None) -> str:
    """A moment in the page's time zone (UTC unless [web] timezone says otherwise), with its age."""
    if moment is None:
        return "–"
    zone = context.get("tz") or UTC
    now = context.get("now")
    text = local_time(moment, zone, seconds=True)
    if isinstance(now, datetime):
        seconds = (now - moment).total_seconds()
        text += f" ({age(seconds)} ago)" if seconds >= 0 else f" (in {age(-seconds)})"
    return text


# -- overview ---------------------------------------------------------------------------------------------------


def _sort_key(sort: str) -> Any:
    big = Decimal("1e30")
    keys = {
        "status": lambda r: (
            ACCOUNT_STATUSES.index(r.status),
            r.worst_distance if r.worst_distance is not None else big,
        ),
        "name": lambda r: r.name,
        "equity": lambda r: r.equity if r.equity is not None else -big,
        "upnl": lambda r: r.upnl if r.upnl is not None else big,
        "distance": lambda r: r.worst_distance if r.worst_distance is not None else big,
        "margin": lambda r: -(r.margin_ratio if r.margin_ratio is not None else -big),
        "age": lambda r: -(r.age if r.age is not None else float("inf")),
    }
    return keys[sort]


def select(rows: list[AccountRow], query: Any) -> tuple[list[AccountRow], dict[str, Any]]:
    """Filter (tag, status, name), sort and paginate as the query asks."""
    tag, status, text = query.get("tag", ""), query.get("status", ""), query.get("q", "").strip().lower()
    sort = query.get("sort", "status") if query.get("sort") in SORTS else "status"
    reverse = query.get("dir") == "desc"
    chosen = [
        r
        for r in rows
        if (not tag or tag in r.tags)
        and (not status or status in (r.status, r.health))
        and (not text or text in r.name.lower())
    ]
    chosen.sort(key=_sort_key(sort), reverse=reverse)
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    try:
        page = min(max(1, int(query.get("page", "1"))), pages)
    except ValueError:
        page = 1
    state = {
        "tag": tag,
        "status": status,
        "q": text,
        "sort": sort,
        "dir": "desc" if reverse else "asc",
        "page": page,
        "pages": pages,
        "matched": len(chosen),
    }
    return chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], state


def link(state: dict[str, Any], **changes: Any) -> str:
    params = {k: v for k, v in {**state, **changes}.items() if k in ("tag", "status", "q", "sort", "dir", "page")}
    params = {k: v for k, v in params.items() if v not in ("", None, 1, "asc", "status") or k in changes}
    return "/?" + urlencode(params) if params else "/"


async def overview(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    rows = source.rows()
    shown, state = select(rows, request.query)
    health = source.health()
    alerts = listed(source.alerts(include_resolved=True), source.clock.now(), ended=False)
    span = request.query.get("range", "24h")
    span = span if span in RANGES else "24h"
    try:  # the live part of the page does not need the database
        chart: Any = equity_svg(await source.portfolio_equity(RANGES[span]), source.web_settings().timezone,
                                "Portfolio equity")  # fmt: skip
    except Exception:
        log.exception("portfolio history not read")
        chart = None
    context = {
        "title": "Overview",
        "portfolio": chart,
        "range": span,
        "ranges": list(RANGES),
        "refresh": True,
        "totals": totals(rows),
        "tags": tag_totals(rows),
        "alerts": alerts[:ALERTS_SHOWN],
        "more_alerts": max(0, len(alerts) - ALERTS_SHOWN),
        "sharing": health.sharing,
        "silenced": source.silenced,
        "rows": shown,
        "state": state,
        "link": lambda **c: link(state, **c),
        "statuses": ACCOUNT_STATUSES,
        "all_tags": sorted({t for r in rows for t in r.tags}),
        "behind": health.behind,
        "lease_mode": health.lease_mode,
    }
    return render(request, "overview.html.j2", context)


# -- account -----------------------------------------------------------------------------------------------------


def find_account(request: web.Request, *, api: bool = False) -> tuple[StatusReader, AccountRow]:
    source = request.app[SOURCE]
    found = source.account_row(request.match_info["name"])
    if found is None:
        if api:
            raise web.HTTPNotFound(text=json.dumps({"error": "no such account"}), content_type="application/json")
        raise web.HTTPNotFound(text="no such account (or another process polls it)")
    return source, found


async def account(request: web.Request) -> web.Response:
    source, found = find_account(request)
    state = source.reading(found.name)
    assert state is not None
    span = request.query.get("range", "24h")
    span = span if span in RANGES else "24h"
    try:  # the live part of the page does not need the database
        chart: Any = equity_svg(await source.equity(found.name, RANGES[span]), source.web_settings().timezone)
        outbox: Any = await source.outbox(found.name, limit=20)
        silences: Any = [s for s in await source.silences() if fnmatch.fnmatchcase(found.name, s.account)]
    except Exception:
        log.exception("%s: history not read", found.name)
        chart = outbox = None
        silences = []
    snapshot = usable_snapshot(state, found)
    context = {
        "title": found.name,
        "refresh": True,
        "row": found,
        "snapshot": snapshot,
        "positions": sorted(
            snapshot.positions,
            key=lambda p: (p.liquidation_distance_pct is None, p.liquidation_distance_pct or 0),
        )
        if snapshot
        else [],
        "safety": source.position_safety(found.name),
        "odds": source.position_odds(found.name),
        "chart": chart,
        "range": span,
        "ranges": list(RANGES),
        "alerts": source.alerts(found.name, include_resolved=True),
        "silenced": source.silenced,
        "silences": silences,
        "outbox": outbox,
    }
    return render(request, "account.html.j2", context)


def usable_snapshot(state: Reading, found: AccountRow) -> AccountSnapshot | None:
    """The snapshot to show in detail: none when its numbers could not even be summed up for the row."""
    return None if found.error_code == INVALID_SNAPSHOT else state.snapshot


# -- alerts ------------------------------------------------------------------------------------------------------


def listed(alerts: list[Alert], now: datetime, *, ended: bool) -> list[Alert]:
    """An alerts table's rows (`alerts` in alert_order), worst first: the liquidations of the last
    LIQUIDATIONS_SHOWN on top (newest first), then the firing and pending alerts, then, when `ended`, the older
    liquidations and the resolutions."""
    since = now - LIQUIDATIONS_SHOWN
    recent = {a.key: a.resolved_at for a in alerts
              if a.state is State.LIQUIDATED and a.resolved_at is not None and a.resolved_at >= since}  # fmt: skip
    top = sorted((a for a in alerts if a.key in recent), key=lambda a: recent[a.key], reverse=True)
    return top + [a for a in alerts if a.key not in recent and (ended or a.state in ACTIVE)]


async def alerts(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    context = {
        "title": "Alerts",
        "refresh": True,
        "alerts": listed(source.alerts(include_resolved=True), source.clock.now(), ended=True),
        "silenced": source.silenced,
        "silences": await source.silences(),
        "failing": await source.outbox(failing=True, limit=100),
        "outbox": await source.outbox(limit=100),
        "counts": await source.outbox_counts(),
    }
    return render(request, "alerts.html.j2", context)
