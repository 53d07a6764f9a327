"""Reports as messages (Jinja2: a title, a short form for chat, a long form for email) and on the terminal.

Templates are looked up like the alerts' (monitor.alerts.messages.environment): the user's `[alerts] templates`
folder first, then the built-in alert templates, then the built-in report templates here. Their names start
with `report_`, so a user overrides one by putting a file of that name in the folder.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from monitor.alerts.messages import CHAT_LIMIT, TITLE_LIMIT, environment, render
from monitor.alerts.model import Rendered
from monitor.config.model import Config, ReportConfig
from monitor.numbers import MISSING, duration, local_time, money, percent
from monitor.reports.content import AccountReport, Change, Report, build_report, report_json
from monitor.store.reports import period_data
from monitor.store.repository import Store

BUILTIN = Path(__file__).resolve().parent / "templates"
REPORT_TEMPLATES = ("report_title.j2", "report_short.j2", "report_long.j2")
SHORT_ACCOUNTS = 15  # accounts listed in the chat form at most (fewer when they do not fit), worst first
UTC = ZoneInfo("UTC")


def report_environment(templates: Path | None) -> jinja2.Environment:
    """The alerts' environment (the user's folder first), with the built-in report templates after it."""
    env = environment(templates)
    assert env.loader is not None
    env.loader = jinja2.ChoiceLoader([env.loader, jinja2.FileSystemLoader(BUILTIN)])
    return env


def check_report_templates(folder: Path) -> None:
    """Compile the user's report templates; raises jinja2.TemplateError (with the file and line) when broken."""
    env = report_environment(folder)
    for name in REPORT_TEMPLATES:
        if (folder / name).exists():
            env.get_template(name)


class ReportMessages:
    def __init__(self, templates: Path | None, public_url: str | None = None) -> None:
        self.env = report_environment(templates)
        self.builtin = report_environment(None) if templates is not None else self.env
        self.public_url = public_url.rstrip("/") if public_url else None

    def render(self, report: Report, tz: ZoneInfo = UTC) -> Rendered:
        """The title, the chat form (worst accounts first, as many as fit under CHAT_LIMIT, then "and N more")
        and the email form (every account)."""
        base = _context(report, tz, self.public_url)
        title = " ".join(self._template("report_title.j2", base).split())[:TITLE_LIMIT]
        accounts = base["all_accounts"]
        shown = min(len(accounts), SHORT_ACCOUNTS)
        while True:
            short = self._template("report_short.j2", {**base, "accounts": accounts[:shown],
                                                       "more": len(accounts) - shown})  # fmt: skip
            if len(short) <= CHAT_LIMIT or shown == 0:
                break
            shown -= 1
        if len(short) > CHAT_LIMIT:  # a user's template too long even without accounts
            short = short[: CHAT_LIMIT - 1] + "…"
        long = self._template("report_long.j2", {**base, "accounts": accounts, "more": 0})
        return Rendered(title, short, long)

    def _template(self, name: str, context: dict[str, Any]) -> str:
        return render(self.env, self.builtin, name, context)


def gather(config: Config, store: Store, start: datetime, end: datetime, report: ReportConfig | None = None) -> Report:
    """The report over [start, end] of the accounts `report` selects (None: every account of the file)."""
    if report is None:
        names = [a.name for a in config.accounts]
        title, everyone = "Report", True
    else:
        names = [a.name for a in config.accounts if report.selects(a.name, a.tags)]
        title, everyone = report.name, report.accounts == ("*",) and not report.tags
    data = period_data(store.engine, names, start, end)
    # Portfolio rules' alerts belong to no account: counted only when the report covers every account.
    return build_report(title, start, end, data.accounts, portfolio=data.portfolio if everyone else (0, 0))


def render_report(
    config: Config,
    store: Store,
    now: datetime,
    *,
    since: timedelta = timedelta(hours=24),
    report: str | None = None,
    as_json: bool = False,
) -> str:
    """What `bitget-monitor report [--since 24h] [--json] [NAME]` prints: the long form over the last `since`
    (of the accounts a named [[reports]] covers, in its time zone; else every account, in UTC), or JSON with
    decimals as strings. Raises KeyError naming the known reports for an unknown one."""
    chosen = None
    if report is not None:
        chosen = next((r for r in config.reports if r.name == report), None)
        if chosen is None:
            known = ", ".join(r.name for r in config.reports) or "none are defined"
            raise KeyError(f"no report named {report!r} (reports: {known})")
    model = gather(config, store, now - since, now, chosen)
    if as_json:
        return json.dumps(report_json(model), indent=2)
    messages = ReportMessages(config.alerts.templates, config.web.public_url)
    rendered = messages.render(model, chosen.timezone if chosen else UTC)
    return f"{rendered.title}\n\n{rendered.body_long}\n"


def _context(report: Report, tz: ZoneInfo, public_url: str | None) -> dict[str, Any]:
    change = report.change
    return {
        "name": report.name,
        "start": _when(report.start, tz),
        "end": _when(report.end, tz),
        "timezone": str(tz),
        "total": {
            "accounts": len(report.accounts),
            "equity": money(report.equity),
            "change": money(change.absolute, sign=True) if change else MISSING,
            "change_pct": percent(change.pct, sign=True) if change else MISSING,
            "since": _since(change, tz)
            or (f" ({report.mixed_starts} of the accounts since their first read)" if report.mixed_starts else ""),
            "unrealized_pnl": money(report.unrealized_pnl, sign=True),
            "lowest_distance": percent(report.lowest_distance_pct),
            "alerts_fired": report.alerts_fired,
            "alerts_resolved": report.alerts_resolved,
            "liquidations": report.liquidations,
            "unreachable_accounts": report.unreachable_accounts,
        },
        "all_accounts": [_account(a, tz) for a in report.accounts],
        "link": public_url,
        "report": report,  # the model itself, for templates that want more
    }


def _account(a: AccountReport, tz: ZoneInfo) -> dict[str, Any]:
    d = a.data
    return {
        "name": d.account,
        "no_data": a.no_data,
        "as_of": _when(d.as_of, tz) if d.as_of else MISSING,
        "equity": money(d.equity),
        "change": money(a.change.absolute, sign=True) if a.change else MISSING,
        "change_pct": percent(a.change.pct, sign=True) if a.change else MISSING,
        "since": _since(a.change, tz),
        "unrealized_pnl": money(d.unrealized_pnl, sign=True),
        "lowest_equity": money(d.lowest_equity),
        "drawdown": percent(d.deepest_drawdown_pct),
        "distance": percent(d.worst_distance_pct),
        "lowest_distance": percent(d.lowest_distance_pct),
        "has_positions": d.worst_distance_pct is not None or d.lowest_distance_pct is not None,
        "alerts_fired": d.alerts_fired,
        "alerts_resolved": d.alerts_resolved,
        "liquidations": d.liquidations,
        "unreachable": duration(d.unreachable) if d.unreachable else None,
    }


def _since(change: Change | None, tz: ZoneInfo) -> str:
    """ " since first read 2026-11-27 14:24" when the change counts from a first reading inside the period."""
    return f" since first read {_when(change.since, tz)}" if change and change.since else ""


def _when(at: datetime, tz: ZoneInfo) -> str:
    return local_time(at, tz, label=False)  # the report names its time zone once, beside the period
