"""The alert decisions, as pure functions: from (the current alerts, an account's view or every view, the rules,
the silences, the drawdown peaks, now) to the changes. No clock, no database, no I/O: the engine (monitor.alerts
.engine) loads, ticks, calls these and hands the changes on.

- `judge_account` / `judge_portfolio`: each observation steps its alert through the lifecycle; alerts no longer
  observed resolve, or wait for a verdict when their position disappeared (closed or liquidated?).
- `notify`: who hears about what, with a named reason for every alert, heard or not (as Alertmanager's
  notification pipeline names why it stayed quiet: silenced, inhibited, nothing new).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from monitor.alerts import departures
from monitor.alerts.lifecycle import absorbed, liquidated, notified, notify_reason, step, vanish
from monitor.alerts.model import ACTIVE, Alert, Item, Reason, Silence, State, Transition
from monitor.alerts.silences import silenced
from monitor.domain import AccountSnapshot
from monitor.rules.evaluate import evaluate_account, evaluate_portfolio
from monitor.rules.model import DATA_TYPES, Rule, RuleType, Severity
from monitor.rules.view import NONE, AccountView, Current

Change = tuple[Alert, Transition | None]


class Quiet(StrEnum):
    """Why an alert in an evaluation is not announced."""

    SILENCED = "silenced"  # a silence matches it: tracked, announced when the silence ends if still firing
    INHIBITED = "inhibited"  # its account is unreachable: data alerts say nothing new
    NOTHING_NEW = "nothing new"  # already told, no repeat due
    NO_RULE = "no rule"  # its rule left the configuration
    ACKNOWLEDGED = "acknowledged"  # someone acknowledged it at this severity: no repeats


@dataclass
class Decision:
    """What one evaluation changes."""

    changes: dict[str, Change] = field(default_factory=dict)  # new states, each with its transition
    moved: dict[str, Alert] = field(default_factory=dict)  # the value moved, the state did not (written later)
    closing: dict[str, Alert] = field(default_factory=dict)  # per-position alerts whose position is gone
    held: set[str] = field(default_factory=set)  # keys kept as they are (no data to judge, a verdict awaited)
    keys: set[str] = field(default_factory=set)  # every key the evaluation speaks for (to settle)


@dataclass
class Notice:
    """Who hears what: the items of the messages to compose, the alerts marked as told (or as held back by a
    silence), and a reason for every alert looked at."""

    items: list[Item] = field(default_factory=list)
    marked: dict[str, Alert] = field(default_factory=dict)
    reasons: dict[str, Reason | Quiet] = field(default_factory=dict)


def judge_account(
    view: AccountView, rules: Mapping[str, Rule], alerts: Mapping[str, Alert], keys: Iterable[str], now: datetime,
    current: Current = NONE, peaks: Mapping[str, Decimal] = NONE, awaiting: Collection[str] = (),
) -> Decision:  # fmt: skip
    """One account: `alerts` are the engine's, `keys` this account's among them, `current` the active ones'
    severities, `peaks` its drawdown peaks at `now`, `awaiting` alerts whose verdict (closed or liquidated) is
    being read."""
    decision = Decision()
    evaluation = evaluate_account(rules.values(), view, now, current, peaks)
    seen = set()
    for obs in evaluation.observations:
        seen.add(obs.key)
        if obs.held:
            decision.held.add(obs.key)
            continue
        before = alerts.get(obs.key)
        new, transition = step(before, obs, now)
        if new is None:
            continue
        if transition is not None:
            decision.changes[obs.key] = (new, transition)
        elif before is not None:
            decision.moved[obs.key] = new
    keys = set(keys)
    for key in keys:
        alert = alerts[key]
        rule = rules.get(alert.rule)
        if key in seen or alert.state not in ACTIVE or rule is None:
            continue
        if rule.name in evaluation.held or key in awaiting:
            decision.held.add(key)
            continue
        if not rule.selects(view.name, view.tags):
            reason = "the rule no longer selects this account"
        elif rule.per_position:  # its position is gone: closed or liquidated? Judged with the mark first
            decision.closing[key] = alert
            decision.held.add(key)
            continue
        else:
            reason = "no longer reported"
        decision.changes[key] = vanish(alert, now, reason)
    decision.keys = (keys | decision.changes.keys()) - decision.held
    return decision


def judge_portfolio(
    views: list[AccountView], rules: Mapping[str, Rule], alerts: Mapping[str, Alert], now: datetime,
    peaks: Mapping[str, Decimal], current: Current = NONE,
) -> Decision:  # fmt: skip
    """The portfolio rules over every view; `peaks` by rule name, at `now`."""
    decision = Decision()
    for rule in rules.values():
        if not rule.portfolio:
            continue
        obs = evaluate_portfolio(rule, views, peaks.get(rule.name), current)
        if obs is None or obs.held:  # some account has no fresh data, or no peak yet: hold
            continue
        before = alerts.get(obs.key)
        new, transition = step(before, obs, now)
        if new is None:
            continue
        decision.keys.add(obs.key)
        if transition is not None:
            decision.changes[obs.key] = (new, transition)
        elif before is not None:
            decision.moved[obs.key] = new
    return decision


def notify(
    changes: Mapping[str, Change], keys: Iterable[str], alerts: Mapping[str, Alert], rules: Mapping[str, Rule],
    silences: list[Silence], now: datetime,
) -> Notice:  # fmt: skip
    """Who hears about these alerts now (their changed versions over the current ones), and why."""
    looked = {**{k: alerts[k] for k in keys if k in alerts}, **{k: a for k, (a, _) in changes.items()}}
    inhibited = {a.account for a in looked.values() if a.state is State.FIRING
                 and (r := rules.get(a.rule)) is not None and r.type is RuleType.UNREACHABLE}  # fmt: skip
    notice = Notice()
    for key, alert in looked.items():
        rule = rules.get(alert.rule)
        if rule is None:
            notice.reasons[key] = Quiet.NO_RULE
            continue
        if alert.account in inhibited and rule.type in DATA_TYPES:
            notice.reasons[key] = Quiet.INHIBITED
            continue
        if silenced(alert, silences, now):  # tracked, quiet; announced again when the silence ends
            notice.reasons[key] = Quiet.SILENCED
            if alert.state is State.FIRING and alert.silenced_since is None:
                notice.marked[key] = replace(alert, silenced_since=now)
            continue
        reason = notify_reason(alert, rule, now)
        if reason is Reason.REPEAT and alert.acknowledged:
            notice.reasons[key] = Quiet.ACKNOWLEDGED
            continue
        if reason is None:
            notice.reasons[key] = Quiet.NOTHING_NEW
            continue
        notice.reasons[key] = reason
        notice.items.append(Item(alert, reason, str(rule.type), changes.get(key, (alert, None))[1]))
        notice.marked[key] = notified(alert, now)
    return notice


def conclude(
    account: str, plan: list[departures.Departure], marks: Mapping[str, departures.MarkTable | str],
    alerts: Mapping[str, Alert], latest: AccountSnapshot | None, watched: bool, critical: Decimal | None,
    now: datetime, unavailable: str = "",
) -> dict[str, Change]:  # fmt: skip
    """Positions that disappeared, judged once their marks were read (`marks` by product type, or why not):
    each one's alerts resolve as closed, or the position's liquidation is one event: one alert of it (`_carrier`)
    ends as liquidated and the others end quietly with it (`absorbed`); a position liquidated without an active
    alert is announced by a liquidation-distance rule that speaks for it. Nothing is judged of a position
    back in the `latest` read, or of an account this process no longer `watched`."""
    changes: dict[str, Change] = {}
    back = departures.subjects(latest.positions) if latest is not None else set()
    for d in plan:
        if d.subject in back or not watched:  # reopened meanwhile, or no longer this process's to judge
            continue
        mark, why = None, unavailable
        source = marks.get(d.last.product_type, unavailable)
        if isinstance(source, str):
            why = source
        else:
            try:
                mark = source.mark(d.last.symbol)
            except KeyError as exc:
                why = str(exc.args[0]) if exc.args else "no mark"
        verdict = departures.judge(d.last, mark, critical, why)
        active = [a for k in d.alerts if (a := alerts.get(k)) is not None and a.state in ACTIVE]
        if not verdict.liquidated:
            changes.update((a.key, vanish(a, now, verdict.reason)) for a in active)
            continue
        carrier = _carrier(active, d.speakers)
        if carrier is None:  # no alert of it was active: a liquidation rule announces it
            if not d.speakers:
                continue
            key = departures.alert_key(d.speakers[0], account, d.subject)
            carrier = alerts.get(key) or Alert(key, d.speakers[0], account, d.subject, State.INACTIVE, now)
        details = departures.details_after(d.last, mark)
        changes[carrier.key] = _liquidated(carrier, verdict, details, now)
        ended = f"ended by the liquidation of its position ({carrier.rule})"
        changes.update((a.key, absorbed(a, now, ended)) for a in active if a is not carrier)
    return changes


def _carrier(active: list[Alert], speakers: tuple[str, ...]) -> Alert | None:
    """The one alert of a liquidated position that carries the liquidation: a liquidation rule's, else the worst
    (by its worst severity, then its current one; the key breaks ties)."""
    for rule in speakers:
        found = next((a for a in active if a.rule == rule), None)
        if found is not None:
            return found
    return max(sorted(active, key=lambda a: a.key), key=_badness, default=None)  # max: the first of the worst


def _badness(a: Alert) -> tuple[int, int]:
    return (a.worst_severity.rank if a.worst_severity else -1, a.severity.rank if a.severity else -1)


def _liquidated(alert: Alert, verdict: departures.Verdict, details: dict[str, str], now: datetime) -> Change:
    return liquidated(alert, now, summary=verdict.summary, reason=verdict.reason, value=verdict.value,
                      details=details)  # fmt: skip


class ActiveSeverities(Mapping[str, Severity]):
    """The severity of each active alert, by key, read from the engine's alerts as they are (no copy per
    evaluation)."""

    def __init__(self, alerts: dict[str, Alert]) -> None:
        self._alerts = alerts

    def get(self, key: str, default: Any = None) -> Any:  # the rules' one call: a hit or a miss, never a raise
        alert = self._alerts.get(key)
        if alert is None or alert.state not in ACTIVE or alert.severity is None:
            return default
        return alert.severity

    def __getitem__(self, key: str) -> Severity:
        found: Severity | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (k for k, a in self._alerts.items() if a.state in ACTIVE and a.severity is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)
