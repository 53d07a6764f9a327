"""Load and validate the accounts file: all of it, or nothing (every error is a ConfigError)."""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
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
from monitor.errors import ConfigError
from monitor.exchange.bitget.signing import is_pem, signer_for
from monitor.rules.model import DEFAULT_RULES, Rule, RuleError, build_rule
from monitor.secret import Secret

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEYS = ("api_key", "api_secret", "passphrase")
# The largest secret file read: an RSA-4096 PEM is about 3.3 KB; anything far larger is the wrong file.
SECRET_FILE_LIMIT = 64 * 1024
KeyPath = tuple[str | int, ...]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute ${VAR}s from `env` (default: the process environment) and validate the file."""
    return _Loader(Path(path), os.environ if env is None else env).load()


def database_url(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> str:
    """The database URL alone: MONITOR_DATABASE_URL, else [monitor] of the file, else the default.

    For `db` commands run by operators who migrate separately: the accounts' secrets need not be present.
    """
    loader = _Loader(Path(path or "accounts.toml"), os.environ if env is None else env)
    raw = loader.read() if path is not None and Path(path).exists() else {}
    return loader.monitor(loader.table(raw, "monitor")).database_url.reveal()


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Loader:
    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.source = ""
        self.warnings: list[str] = []

    def error(self, key: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=str(self.path), line=locate(self.source, key), key=format_path(key) or None, hint=hint
        )

    def load(self) -> Config:
        raw = self.read()
        self.reject_unknown(raw, schema.SECTIONS, ())
        return self.build(raw)

    def read(self) -> dict[str, Any]:
        try:
            self.source = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                "file not found", file=str(self.path), hint="copy accounts.example.toml and fill it in"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file: {exc}", file=str(self.path)) from None
        try:
            return tomllib.loads(self.source)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            raise ConfigError(
                f"not valid TOML: {exc}", file=str(self.path), line=int(m.group(1)) if m else None
            ) from None

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

    def table(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise self.error((name,), "expected a table", hint=f"write it as [{name}]")
        return value

    def reject_unknown(self, table: Mapping[str, Any], known: tuple[str, ...], at: KeyPath) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise self.error((*at, key), "unknown key", hint=hint)

    def substitute(self, value: str, key: KeyPath, account: str | None) -> str:
        def replace(m: re.Match[str]) -> str:
            var = m.group(1)
            if var not in self.env:
                owner = f' for account "{account}"' if account else ""
                raise self.error(
                    key,
                    f"environment variable {var} is not set{owner}",
                    hint=f"export {var}, or put the value in a file",
                )
            return self.env[var]

        return _VAR.sub(replace, value)

    def empty_variables(self, raw: Any) -> list[str]:
        """The ${VAR}s in a raw value (a string or a list of them) that are set but empty."""
        texts = raw if isinstance(raw, list) else [raw]
        found = (_VAR.findall(t) for t in texts if isinstance(t, str))
        return list(dict.fromkeys(v for names in found for v in names if v in self.env and not self.env[v].strip()))

    def empty_error(self, key: KeyPath, names: list[str], account: str | None) -> ConfigError:
        owner = f' for account "{account}"' if account else ""
        listed = ", ".join(names)
        return self.error(
            key,
            f"environment variable{'s' if len(names) > 1 else ''} {listed} {'are' if len(names) > 1 else 'is'} "
            f"set but empty{owner}",
            hint=f"export {names[0]} with its value, or put the value in a file",
        )

    def values(self, section: str, table: Mapping[str, Any], at: KeyPath, account: str | None) -> dict[str, Any]:
        """Every declared key of a section: substituted, parsed, defaulted; required ones enforced."""
        settings = schema.section(section)
        self.reject_unknown(table, tuple(settings), at)
        out: dict[str, Any] = {}
        for key, setting in settings.items():
            if key not in table:
                if setting.default is None:
                    if not setting.optional:
                        raise self.error(at, f"missing required key {key!r}", hint=setting.doc)
                    out[key] = None
                    continue
                raw = setting.default
            else:
                raw = table[key]
                if isinstance(raw, str):
                    raw = self.substitute(raw, (*at, key), account)
                elif isinstance(raw, list):
                    raw = [self.substitute(v, (*at, key), account) if isinstance(v, str) else v for v in raw]
            try:
                out[key] = setting.parse(raw)
            except ValueError as exc:
                if empty := self.empty_variables(table.get(key)):
                    raise self.empty_error((*at, key), empty, account) from None
                strings = isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(r, str) for r in raw))
                if setting.secret and strings:  # quoted, yet empty
                    raise self.error((*at, key), "must not be empty") from None
                if setting.secret:  # the message may quote the value
                    raise self.error(
                        (*at, key),
                        "expected a non-empty string (the value is a secret, not shown)",
                        hint='quote it: key = "..."',
                    ) from None
                raise self.error((*at, key), str(exc)) from None
        return out

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
            for index, url in enumerate(v["urls"]):
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
                name, tuple(Secret(u) for u in v["urls"]), **{k: val for k, val in v.items() if k != "urls"}
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
            if v["name"] in seen:
                raise self.error(
                    (*at, "name"),
                    f"duplicate rule name {v['name']!r}",
                    hint=f"rules[{seen[v['name']]}] already uses it; names must be unique",
                )
            seen[v["name"]] = index
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
            if v["name"] in seen:
                raise self.error(
                    (*at, "name"),
                    f"duplicate report name {v['name']!r}",
                    hint=f"reports[{seen[v['name']]}] already uses it; names must be unique",
                )
            seen[v["name"]] = index
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
            if name in seen:
                raise self.error(
                    (*at, "name"),
                    f"duplicate account name {name!r}",
                    hint=f"accounts[{seen[name]}] already uses it; names must be unique",
                )
            seen[name] = index
            secret, secret_file = self.secret(table, v, at, name)
            if any(isinstance(table.get(k), str) and not _VAR.search(table[k]) for k in _SECRET_KEYS):
                literal.append(name)
            try:
                key_type = signer_for(secret).kind
            except ValueError as exc:
                field = "api_secret_file" if secret_file else "api_secret"
                raise self.error((*at, field), str(exc)) from None
            accounts.append(
                AccountConfig(
                    name=name,
                    api_key=Secret(v["api_key"]),
                    api_secret=secret,
                    passphrase=Secret(v["passphrase"]),
                    demo=v["demo"],
                    products=v["products"],
                    tags=v["tags"],
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

    def check_readable(self, file: Path, what: str) -> None:
        mode = file.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            self.warnings.append(f"{what} {file} is readable by other users; chmod 600 {file}")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((what for test, what in kinds if test(mode)), "a special file")


def locate(source: str, path: KeyPath) -> int | None:
    """The 1-based line of a key in TOML text, else of the table it belongs in, if findable.

    Follows `[table]`, `[table.sub]` and `[[array]]` headers and dotted keys (`channels.ops = [...]`); keys
    inside inline tables are found through the line of the key that holds the inline table.
    """
    if not path:
        return None
    target = tuple(path)
    table: tuple[str | int, ...] = ()
    counts: dict[str, int] = {}
    headers: dict[tuple[str | int, ...], int] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if m := re.match(r"^\[\[\s*([\w\-]+)\s*\]\]", stripped):
            counts[m.group(1)] = counts.get(m.group(1), -1) + 1
            table = (m.group(1), counts[m.group(1)])
        elif m := re.match(r'^\[\s*([\w\-."\s]+?)\s*\]', stripped):
            table = _dotted(m.group(1))
        elif m := re.match(r'^((?:"[^"]*"|[\w\-]+)(?:\s*\.\s*(?:"[^"]*"|[\w\-]+))*)\s*=', stripped):
            if (*table, *_dotted(m.group(1))) == target:
                return number
            continue
        else:
            continue
        headers.setdefault(table, number)
    found = headers.get(target) or headers.get(target[:-1])
    if found is None and len(target) > 1:  # inside an inline table: the line of the key holding it
        return locate(source, target[:-1])
    return found


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in key.split("."))
