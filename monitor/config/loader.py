"""Load and validate the accounts file: all of it, or nothing (every error is a ConfigError). What each section
means is here; how a value is read, substituted and located is in reader.py."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config import schema, values
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
from monitor.config.reader import VAR, KeyPath, Reader
from monitor.errors import ConfigError
from monitor.exchange.bitget.signing import is_pem, signer_for
from monitor.rules.model import DEFAULT_RULES, Rule, RuleError, build_rule
from monitor.secret import Secret

_SECRET_KEYS = ("api_key", "api_secret", "passphrase")
# The largest secret file read: an RSA-4096 PEM is about 3.3 KB; anything far larger is the wrong file.
SECRET_FILE_LIMIT = 64 * 1024


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


class _Loader(Reader):
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

    # -- helpers -----------------------------------------------------------------------------------------
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

    def accounts(self, raw: Any) -> tuple[AccountConfig, ...]:
        if raw is None:
            raise self.error((), "no accounts configured", hint="add an [[accounts]] table; see accounts.example.toml")
        if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
            raise self.error(("accounts",), "expected [[accounts]] tables")
        accounts: list[AccountConfig] = []
        seen: dict[str, int] = {}
        literal: list[str] = []
        for index, table in enumerate(raw):
            at: KeyPath = ("accounts", index)
            name = table.get("name") if isinstance(table.get("name"), str) else None
            v = self.values("accounts", table, at, name)
            name = v["name"]
            self.unique("account", name, seen, index, at)
            if self.credentials:
                secret, secret_file = self.secret(table, v, at, name)
                try:
                    key_type = signer_for(secret).kind
                except ValueError as exc:
                    field = "api_secret_file" if secret_file else "api_secret"
                    raise self.error((*at, field), str(exc)) from None
            else:
                secret, secret_file, key_type = Secret(""), None, ""
            if any(isinstance(table.get(k), str) and not VAR.search(table[k]) for k in _SECRET_KEYS):
                literal.append(name)
            accounts.append(
                AccountConfig(
                    name=name,
                    api_key=Secret(v["api_key"] or ""),
                    api_secret=secret,
                    passphrase=Secret(v["passphrase"] or ""),
                    demo=v["demo"],
                    products=v["products"],
                    tags=v["tags"] if not v["demo"] or "demo" in v["tags"] else (*v["tags"], "demo"),
                    key_type=key_type,
                    secret_file=secret_file,
                    channels=v["channels"],
                )
            )
        if literal:
            shown = ", ".join(literal[:3]) + (f" and {len(literal) - 3} more" if len(literal) > 3 else "")
            self.warnings.append(
                f"{self.path} holds literal secrets for {len(literal)} account(s) ({shown}); "
                'prefer "${VAR}" from the environment or api_secret_file'
            )
            self.check_readable(self.path, "the accounts file (with literal secrets)")
        return tuple(accounts)

    def secret(self, table: Mapping[str, Any], v: dict[str, Any], at: KeyPath, name: str) -> tuple[Secret, Path | None]:
        inline, file_name = v["api_secret"], v["api_secret_file"]
        if (inline is None) == (file_name is None):
            raise self.error(at, f"account {name!r} needs exactly one of api_secret and api_secret_file")
        if inline is not None:
            return Secret(inline), None
        file = (self.path.parent / file_name).resolve()
        try:
            content = self.read_secret_file(file, (*at, "api_secret_file"), name).decode("utf-8")
        except OSError as exc:
            raise self.error(
                (*at, "api_secret_file"),
                f"cannot read {file}: {exc.strerror}",
                hint="check the path (relative to the accounts file) and its permissions",
            ) from None
        except UnicodeDecodeError:
            raise self.error(
                (*at, "api_secret_file"),
                f"{file} is not text",
                hint="it must hold the secret or a PEM key, not a binary (DER) key",
            ) from None
        self.check_readable(file, f"account {name!r}: the secrets file")
        secret = Secret(content if is_pem(Secret(content)) else content.strip())
        if not secret:
            raise self.error((*at, "api_secret_file"), f"{file} is empty")
        return secret, file

    def read_secret_file(self, file: Path, key: KeyPath, account: str) -> bytes:
        """The bytes of a regular file of at most SECRET_FILE_LIMIT bytes. A FIFO would block until something
        writes to it and /dev/zero never ends, so the file is opened without blocking and checked before any
        read; the read is bounded in case the file grows meanwhile."""
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise self.error(
                    key,
                    f"account {account!r}: {file} is {_file_kind(mode)}, not a regular file",
                    hint="point api_secret_file at a file that holds the secret or the PEM key",
                )
            with os.fdopen(fd, "rb", closefd=False) as stream:
                content = stream.read(SECRET_FILE_LIMIT + 1)
        finally:
            os.close(fd)
        if len(content) > SECRET_FILE_LIMIT:
            raise self.error(
                key,
                f"account {account!r}: {file} is larger than any key can be (over {SECRET_FILE_LIMIT // 1024} KiB)",
                hint="point api_secret_file at the file that holds the secret or the PEM key",
            )
        return content


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((what for test, what in kinds if test(mode)), "a special file")
