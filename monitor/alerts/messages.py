"""Messages from Jinja2 templates: a title, a short form for chat and a long form for email.

Users can put their own `title.j2`, `short.j2`, `long.j2` or `summary.j2` in a folder (`[alerts] templates`);
those are found before the built-in ones in monitor/alerts/templates.
"""

from __future__ import annotations

import logging
from datetime import UTC, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from monitor.alerts.model import (
    Item,
    Reason,
    Rendered,
)
from monitor.config.model import Config
from monitor.numbers import MISSING, amount, local_time, price, size
from monitor.rules.evaluate import away, num

log = logging.getLogger(__name__)
BUILTIN = Path(__file__).resolve().parent / "templates"
TEMPLATES = ("title.j2", "short.j2", "long.j2", "summary.j2")
CHAT_LIMIT = 3500  # Telegram takes 4096 characters; leave room for apprise's own framing
TITLE_LIMIT = 250


def environment(templates: Path | None) -> jinja2.Environment:
    """The user's folder first (when given), then the built-in templates."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(BUILTIN)]
    if templates is not None:
        loaders.insert(0, jinja2.FileSystemLoader(templates))
    # Plain text out, for chat and email bodies: HTML escaping would garble it. (The page escapes with its
    # own environment.)
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=False,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["away"] = _away
    return env


def _away(distance: object) -> str:
    """A position's stored distance ("2.25", "-0.09", "-": none) for people: `{{ details.distance | away }}`."""
    try:
        return away(Decimal(str(distance).replace(",", "")))
    except InvalidOperation:
        return "no liquidation price"


def check_templates(folder: Path) -> None:
    """Compile the user's templates; raises jinja2.TemplateError (with the file and line) when one is broken."""
    env = environment(folder)
    for name in TEMPLATES:
        if (folder / name).exists():
            env.get_template(name)


class Messages:
    def __init__(self, templates: Path | None, public_url: str | None, max_items: int = 10) -> None:
        self.env = environment(templates)
        self.builtin = environment(None) if templates is not None else self.env
        self.public_url = public_url.rstrip("/") if public_url else None
        self.max_items = max_items

    def link(self, account: str | None) -> str | None:
        if self.public_url is None:
            return None
        return f"{self.public_url}/accounts/{quote(account, safe='')}" if account else self.public_url

    def render(self, account: str | None, tags: tuple[str, ...], items: list[Item], zone: tzinfo = UTC) -> Rendered:
        """One account's message: every item, worst first, capped at max_items with "and N more"; times on the
        clock of `zone` (the channel's)."""
        items = sorted(items, key=lambda i: i.rank)
        shown = [_context(i, zone) for i in items[: self.max_items]]
        context = {
            "account": account or "portfolio",
            "tags": tags,
            "items": shown,
            "more": len(items) - len(shown),
            "count": len(items),
            "link": self.link(account),
        }
        return self._rendered(context)

    def summary(self, window: str, items: list[Item], zone: tzinfo = UTC) -> Rendered:
        """What was held during a channel's quiet hours and is still true, as one message (times in `zone`)."""
        items = sorted(items, key=lambda i: i.rank)
        shown = [_context(i, zone) for i in items[: self.max_items]]
        context = {
            "account": "quiet hours summary",
            "window": window,
            "items": shown,
            "more": len(items) - len(shown),
            "count": len(items),
            "link": self.link(None),
            "tags": (),
        }
        body = self._template("summary.j2", context)
        return Rendered(self._title(context), _clip(body, CHAT_LIMIT), body)

    def _rendered(self, context: dict[str, Any]) -> Rendered:
        return Rendered(
            self._title(context),
            _clip(self._template("short.j2", context), CHAT_LIMIT),
            self._template("long.j2", context),
        )

    def _title(self, context: dict[str, Any]) -> str:
        return _clip(" ".join(self._template("title.j2", context).split()), TITLE_LIMIT)

    def _template(self, name: str, context: dict[str, Any]) -> str:
        return render(self.env, self.builtin, name, context)

    def test(self) -> Rendered:
        text = "A test message from bitget-monitor: this channel works."
        return Rendered(
            "bitget-monitor test message",
            text,
            text + (f"\n\nStatus page: {self.public_url}" if self.public_url else ""),
        )


def _context(item: Item, zone: tzinfo) -> dict[str, Any]:
    a = item.alert
    resolved = item.reason is Reason.RESOLVED
    ended = resolved or item.reason is Reason.LIQUIDATED
    since = a.resolved_at if ended else (a.firing_since or a.pending_since)
    label = "RESOLVED" if resolved else "LIQUIDATED" if item.reason is Reason.LIQUIDATED else a.severity or ""
    return {
        "label": label.upper(),
        "account": a.account or "portfolio",
        "rule": a.rule,
        "type": item.rule_type,
        "state": str(a.state),
        "reason": str(item.reason),
        "severity": str(a.severity) if a.severity else None,
        "summary": a.summary,
        "since": local_time(since, zone) if since else MISSING,
        "details": _shown(a.details),
        "value": num(round(a.value, 4)) if a.value is not None else None,
    }


def _shown(details: dict[str, str]) -> dict[str, str]:
    """An alert's stored details as a message writes them: prices at the mark's places, sizes trimmed, a PnL as
    money in its coin (the page's one number format). Values that are not decimals stay as they are."""

    def exact(key: str) -> Decimal | None:
        try:
            return Decimal(details[key])
        except (KeyError, InvalidOperation):
            return None

    shown = dict(details)
    mark = exact("mark")
    for key in ("mark", "mark_now", "liquidation"):
        if (value := exact(key)) is not None:
            shown[key] = price(value, mark)
    if (value := exact("size")) is not None:
        shown["size"] = size(value)
    if (value := exact("upnl")) is not None:
        shown["upnl"] = amount(value, details.get("coin", ""))
    return shown


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def messages_for(config: Config) -> Messages:
    """The messages of a configuration: its templates, the page's public address, the items per message."""
    return Messages(config.alerts.templates, config.web.public_url, config.alerts.max_items)


def render(env: jinja2.Environment, builtin: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render with the user's template (env); if it fails at run time, say so and use the built-in one (a
    message or a report must not be lost to a template)."""
    try:
        return env.get_template(name).render(context).strip()
    except Exception:
        if builtin is env:
            raise
        log.exception("template %s failed; the built-in one is used", name)
        return builtin.get_template(name).render(context).strip()
