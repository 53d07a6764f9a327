"""Load and validate the accounts file: all of it, or nothing (every error is a ConfigError). What each section
means is here, the accounts' in accounts.py; how a value is read, substituted and located is in reader.py."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config import schema, values
from monitor.config.accounts import AccountsReader
from monitor.config.model import (
    AccountConfig,
    AlertSettings,
    ChannelConfig,
    Config,
    MarketSettings,
    MonitorSettings,
    ReportConfig,
    StorageSettings,
    WebSettings,
)
from monitor.config.reader import KeyPath
from monitor.errors import ConfigError
from monitor.rules.model import DEFAULT_RULES, Rule, RuleError, build_rule
from monitor.secret import Secret


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, credentials: bool = True
) -> Config:
    """Read, substitute ${VAR}s from `env` (default: the process environment) and validate the file.

    `credentials=False`, for commands that only read the database (`report`): the accounts' keys, the channels'
    URLs and the page's token are not read (their variables and secret files need not exist) and come back
    empty; such a Config can neither read an account nor send a message. The rest is read and checked as usual.
    """
    return _Loader(Path(path), os.environ if env is None else env, credentials=credentials).load()


def database_url(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> str:
    """The database URL alone: MONITOR_DATABASE_URL, else [monitor] of the file, else the default.

    For `db` commands run by operators who migrate separately: the accounts' secrets need not be present.
    """
    loader = _Loader(Path(path or "accounts.toml"), os.environ if env is None else env)
    raw = loader.read() if path is not None and Path(path).exists() else {}
    return loader.monitor(loader.table(raw, "monitor")).database_url.reveal()


class _Loader(AccountsReader):
    def load(self) -> Config:
        raw = self.read()
        self.reject_unknown(raw, schema.SECTIONS, ())
        return self.build(raw)

    def build(self, raw: dict[str, Any]) -> Config:
        """Every section, validated: the whole file or a ConfigError."""
        monitor = self.monitor(self.table(raw, "monitor"))
        storage = StorageSettings(**self.values("storage", self.table(raw, "storage"), ("storage",), None))
        market = MarketSettings(**self.values("market", self.table(raw, "market"), ("market",), None))
        alerts = self.values("alerts", self.table(raw, "alerts"), ("alerts",), None)
        web_values = self.values("web", self.table(raw, "web"), ("web",), None)
        token = web_values.pop("token")
        web = WebSettings(token=Secret(token) if token else None, **web_values)
        channels = self.channels(self.table(raw, "channels"))
        accounts = self.accounts(raw.get("accounts"))
        rules = self.rules(raw.get("rules"))
        self.check_routes(channels, accounts, rules, raw)
        reports = self.reports(raw.get("reports"), channels)
        templates = (self.path.parent / alerts["templates"]).resolve() if alerts["templates"] else None
        if templates is not None:
            self.check_templates(templates)
        return Config(
            path=self.path,
            monitor=monitor,
            storage=storage,
            market=market,
            accounts=accounts,
            channels=channels,
            rules=rules,
            alerts=AlertSettings(templates=templates, max_items=alerts["max_items"]),
            web=web,
            reports=reports,
            warnings=tuple(self.warnings),
        )

    # -- sections ----------------------------------------------------------------------------------------

    def monitor(self, table: dict[str, Any]) -> MonitorSettings:
        override = self.env.get("MONITOR_DATABASE_URL")
        if override:  # the file's value is not even substituted: its variables need not be set
            table = {k: v for k, v in table.items() if k != "database_url"}
        v = self.values("monitor", table, ("monitor",), None)
        database_url = override or v["database_url"]
        return MonitorSettings(database_url=Secret(database_url), **{k: v for k, v in v.items() if k != "database_url"})

    def channels(self, table: dict[str, Any]) -> dict[str, ChannelConfig]:
        """`NAME = ["apprise://..."]`, or a `[channels.NAME]` table with urls and delivery options."""
        from monitor.alerts.delivery import valid  # imported here: apprise takes a moment to load

        result = {}
        for name, value in table.items():
            at: KeyPath = ("channels", name)
            if len(name) > values.NAME_LIMIT:
                raise self.error(at, f"a channel name must be at most {values.NAME_LIMIT} characters")
            if isinstance(value, dict):
                v = self.values("channel", value, at, None)
            elif isinstance(value, str | list) and value and all(isinstance(u, str) for u in value):
                try:
                    v = self.values("channel", {"urls": value}, at, None)
                except ConfigError as exc:  # the file says `NAME = [...]`: no `urls` key to name
                    raise self.error(at, exc.message, hint=exc.hint) from None
            else:
                raise self.error(
                    at,
                    "expected a list of apprise URLs",
                    hint='e.g. ops = ["tgram://${TELEGRAM_BOT_TOKEN}/${TELEGRAM_CHAT_ID}"]',
                )
            for index, url in enumerate(v["urls"] or ()):  # None: credentials not read
                if not valid(url):  # the URL is a secret: name its place, not its text
                    if empty := self.empty_variables(value.get("urls") if isinstance(value, dict) else value):
                        raise self.empty_error((*at, "urls") if isinstance(value, dict) else at, empty, None)
                    raise self.error(
                        (*at, "urls") if isinstance(value, dict) else at,
                        f"URL number {index + 1} of channel {name!r} is not a valid apprise URL (not shown: it "
                        "may carry a token)",
                        hint="see https://github.com/caronc/apprise/wiki for the URL of each service",
                    )
            # apprise URLs carry tokens and passwords: they are secrets from here on.
            result[name] = ChannelConfig(
                name, tuple(Secret(u) for u in v["urls"] or ()), **{k: val for k, val in v.items() if k != "urls"}
            )
        return result

    def rules(self, raw: Any) -> tuple[Rule, ...]:
        if raw is None:
            return DEFAULT_RULES
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw) or not raw:
            raise self.error(("rules",), "expected [[rules]] tables", hint="see accounts.example.toml")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for index, table in enumerate(raw):
            at: KeyPath = ("rules", index)
            v = self.values("rules", table, at, None)
            self.unique("rule", v["name"], seen, index, at)
            try:
                rules.append(build_rule(v, set(table)))
            except RuleError as exc:
                raise self.error((*at, exc.key), str(exc), hint=exc.hint) from None
        return tuple(rules)

    def reports(self, raw: Any, channels: dict[str, ChannelConfig]) -> tuple[ReportConfig, ...]:
        """[[reports]]: unique names, channels that exist (none listed: every channel)."""
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise self.error(("reports",), "expected [[reports]] tables", hint="see accounts.example.toml")
        reports: list[ReportConfig] = []
        seen: dict[str, int] = {}
        for index, table in enumerate(raw):
            at: KeyPath = ("reports", index)
            v = self.values("reports", table, at, None)
            self.unique("report", v["name"], seen, index, at)
            for name in v["channels"]:
                if name not in channels:
                    known = ", ".join(channels) or "none are defined"
                    raise self.error((*at, "channels"), f"unknown channel {name!r}",
                                     hint=f"channels: {known}; add it under [channels]")  # fmt: skip
            if not channels:
                self.warnings.append(
                    f"report {v['name']!r} has no channel to go to (no [channels] defined); only "
                    "`bitget-monitor report` shows it"
                )
            reports.append(ReportConfig(**{**v, "channels": v["channels"] or tuple(channels)}))
        return tuple(reports)

    def check_templates(self, folder: Path) -> None:
        import jinja2

        from monitor.alerts.messages import check_templates
        from monitor.reports.render import check_report_templates

        if not folder.is_dir():
            raise self.error(("alerts", "templates"), f"{folder} is not a folder",
                             hint="point it at a folder with title.j2, short.j2, long.j2 or summary.j2")  # fmt: skip
        try:
            check_templates(folder)
            check_report_templates(folder)
        except jinja2.TemplateSyntaxError as exc:
            raise self.error(("alerts", "templates"), f"{exc.filename}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise self.error(("alerts", "templates"), f"template error: {exc}") from None

    def check_routes(
        self,
        channels: dict[str, ChannelConfig],
        accounts: tuple[AccountConfig, ...],
        rules: tuple[Rule, ...],
        raw: dict[str, Any],
    ) -> None:
        """Every channel a rule or an account names exists."""
        owners: list[tuple[KeyPath, tuple[str, ...]]] = [
            (("rules", i, "channels"), r.channels) for i, r in enumerate(rules) if "rules" in raw
        ]
        owners += [(("accounts", i, "channels"), a.channels) for i, a in enumerate(accounts)]
        for at, names in owners:
            for name in names:
                if name not in channels:
                    known = ", ".join(channels) or "none are defined"
                    hint = f"channels: {known}; add it under [channels]"
                    raise self.error(at, f"unknown channel {name!r}", hint=hint)
