"""Poll outcomes for people (a table) and for programs (JSON with decimals as strings)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from monitor.alerts.model import Alert
from monitor.config.model import Config
from monitor.domain import PollOutcome, Position
from monitor.errors import error_text
from monitor.rules.evaluate import evaluate_account
from monitor.rules.view import AccountView


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def position_json(p: Position) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "product_type": p.product_type,
        "side": p.side.value,
        "size": _dec(p.size),
        "mark_price": _dec(p.mark_price),
        "liquidation_price": _dec(p.liquidation_price),
        "liquidation_distance_pct": _dec(p.liquidation_distance_pct),
        "unrealized_pnl": _dec(p.unrealized_pnl),
        "margin_mode": p.margin_mode.value,
    }


def outcomes_json(outcomes: list[PollOutcome], alerts: list[dict[str, Any]] | None = None) -> str:
    accounts = []
    for o in outcomes:
        s = o.snapshot
        accounts.append({
            "name": o.account,
            "ok": o.ok,
            "error": None if o.ok else {"code": o.error_code, "message": o.error_message},
            "equity_usdt": _dec(s.equity_usdt) if s else None,
            "unrealized_pnl_usdt": _dec(s.unrealized_pnl_usdt) if s else None,
            "positions": [position_json(p) for p in s.positions] if s else [],
        })  # fmt: skip
    return json.dumps({"accounts": accounts, "alerts": alerts or []}, indent=2)


def outcome_alerts(config: Config, outcomes: list[PollOutcome]) -> list[dict[str, Any]]:
    """What the rules say about one cycle's reads, without a lifecycle (`for`, repeats and drawdown peaks need
    history): every breaching observation, worst first. A failed read counts as unreadable."""
    found = []
    for o in outcomes:
        account = config.account(o.account)
        view = AccountView(o.account, account.tags, o.snapshot, o.finished_at if o.ok else None, True,
                           o.started_at, config.monitor.poll_interval, permanent_error=not o.ok,
                           error_code=o.error_code, error_message=o.error_message, key=o.key)  # fmt: skip
        evaluation = evaluate_account(config.rules, view, o.finished_at)  # no alert state, no peaks
        found += [obs for obs in evaluation.observations if obs.severity is not None]
    found.sort(key=lambda obs: (-obs.severity.rank if obs.severity else 0, obs.key))
    return [
        {"rule": obs.rule.name, "type": str(obs.rule.type), "account": obs.account, "subject": obs.subject,
         "severity": str(obs.severity), "value": _dec(obs.value), "summary": obs.summary}
        for obs in found
    ]  # fmt: skip


def alerts_json(config: Config, alerts: list[Alert]) -> list[dict[str, Any]]:
    """Alerts after a `once` cycle judged through the lifecycle: pending, firing, and resolved by this cycle."""
    types = {r.name: str(r.type) for r in config.rules}
    return [
        {"rule": a.rule, "type": types.get(a.rule, ""), "account": a.account, "subject": a.subject,
         "severity": None if a.severity is None else str(a.severity), "value": _dec(a.value), "summary": a.summary,
         "state": str(a.state)}
        for a in alerts
    ]  # fmt: skip


def _columns(rows: Sequence[tuple[str, ...]], numeric: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def outcomes_table(outcomes: list[PollOutcome], alerts: list[dict[str, Any]] | None = None) -> str:
    rows = [("ACCOUNT", "STATUS", "EQUITY USDT", "UPNL USDT", "POSITIONS", "WORST LIQ %")]
    # An account read fine but at risk is not "ok": its status is its worst alert that still stands.
    standing = [a for a in alerts or () if a.get("state") != "resolved" and a["severity"]]
    for o in outcomes:
        s = o.snapshot
        if s is None:
            rows.append((o.account, f"FAILED ({o.error_code})", "-", "-", "-", "-"))
            continue
        severities = {a["severity"] for a in standing if a["account"] == o.account}
        status = next((level for level in ("critical", "warning") if level in severities), "ok")
        worst = s.worst_liquidation_distance_pct
        rows.append((o.account, status, f"{s.equity_usdt:,.2f}", f"{s.unrealized_pnl_usdt:,.2f}",
                     str(len(s.positions)), f"{worst:.2f}" if worst is not None else "-"))  # fmt: skip
    lines = _columns(rows, {2, 3, 4, 5})
    lines += [f"{o.account}: {error_text(o.account, o.error_code, o.error_message)}" for o in outcomes if not o.ok]
    if alerts:  # the same alerts as --json, one line each
        found = [(a.get("state", "breached").upper(), (a["severity"] or "-").upper(), a["account"] or "portfolio",
                  a["rule"], a["summary"]) for a in alerts]  # fmt: skip
        lines += ["", *_columns([("STATE", "SEVERITY", "ACCOUNT", "RULE", "SUMMARY"), *found], set())]
    else:
        lines += ["", "no alerts"]
    return "\n".join(lines)
