"""The JSON API: the numbers of the pages, for programs (decimals as strings, times as ISO 8601)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from monitor.alerts.model import Alert
from monitor.domain import Position
from monitor.report import position_json
from monitor.rules.evaluate import position_subject
from web.keys import SOURCE
from web.pages import find_account, usable_snapshot
from web.status import AccountRow, tag_totals, totals


def row_json(r: AccountRow) -> dict[str, Any]:
    return asdict(r) | {"tags": list(r.tags)}


def alert_json(a: Alert, silenced: bool) -> dict[str, Any]:
    return {
        "rule": a.rule,
        "account": a.account,
        "subject": a.subject,
        "state": str(a.state),
        "severity": str(a.severity) if a.severity else None,
        "value": a.value,
        "summary": a.summary,
        "since": a.firing_since or a.pending_since,
        "resolved_at": a.resolved_at,
        "silenced": silenced,
    }


async def status(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    rows = source.rows()
    t = totals(rows)
    body = {
        "generated_at": source.clock.now(),
        "totals": {
            "equity_usdt": t.equity,
            "unrealized_pnl_usdt": t.upnl,
            "accounts": t.accounts,
            "by_status": t.by_status,
        },
        "tags": {
            tag: {"equity_usdt": x.equity, "unrealized_pnl_usdt": x.upnl, "accounts": x.accounts}
            for tag, x in tag_totals(rows).items()
        },
        "alerts": [alert_json(a, source.silenced(a)) for a in source.alerts()],
        "accounts": [row_json(r) for r in rows],
    }
    return json_response(body)


async def account(request: web.Request) -> web.Response:
    source, found = find_account(request, api=True)
    state = source.reading(found.name)
    assert state is not None
    snapshot = usable_snapshot(state, found)
    odds = source.position_odds(found.name) if snapshot else {}

    def position(p: Position) -> dict[str, Any]:
        found_odds = odds.get(position_subject(p))
        return position_json(p) | {"liquidation_odds": asdict(found_odds) if found_odds is not None else None}

    body = row_json(found) | {
        "positions": [position(p) for p in snapshot.positions] if snapshot else [],
        "alerts": [alert_json(a, source.silenced(a)) for a in source.alerts(found.name, include_resolved=True)],
    }
    return json_response(body)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> web.Response:
    """JSON with decimals as strings and times as ISO 8601."""
    return web.Response(text=json.dumps(body, default=_default), status=status, content_type="application/json")
