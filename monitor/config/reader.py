"""Reading the accounts file's values: TOML with line numbers in every error, ${VAR} substitution from the
environment, each section's declared keys parsed and defaulted (the schema), unknown keys refused with a hint."""

from __future__ import annotations

import difflib
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config import schema
from monitor.errors import ConfigError

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# The keys and passwords (section, key) that `credentials=False` leaves unread. The database URL is read: the
# commands that skip credentials are those that only read the database.
CREDENTIALS = frozenset({("accounts", "api_key"), ("accounts", "api_secret"), ("accounts", "api_secret_file"),
                         ("accounts", "passphrase"), ("channel", "urls"), ("web", "token")})  # fmt: skip


class Reader:
    """The file and the environment it is read with; the warnings gathered on the way. With `credentials`
    False, the CREDENTIALS keys are neither substituted nor checked: they come back as None."""

    def __init__(self, path: Path, env: Mapping[str, str], *, credentials: bool = True) -> None:
        self.path = path
        self.env = env
        self.credentials = credentials
        self.source = ""
        self.warnings: list[str] = []

    def error(self, key: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=str(self.path), line=locate(self.source, key), key=format_path(key) or None, hint=hint
        )

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

        return VAR.sub(replace, value)

    def empty_variables(self, raw: Any) -> list[str]:
        """The ${VAR}s in a raw value (a string or a list of them) that are set but empty."""
        texts = raw if isinstance(raw, list) else [raw]
        found = (VAR.findall(t) for t in texts if isinstance(t, str))
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
            if not self.credentials and (section, key) in CREDENTIALS:
                out[key] = None
                continue
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

    def check_readable(self, file: Path, what: str) -> None:
        mode = file.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            self.warnings.append(f"{what} {file} is readable by other users; chmod 600 {file}")

    def unique(self, kind: str, name: str, seen: dict[str, int], index: int, at: KeyPath) -> None:
        """Names of accounts, rules and reports are unique within their kind: `seen` maps each to its index."""
        if name in seen:
            raise self.error((*at, "name"), f"duplicate {kind} name {name!r}",
                             hint=f"{kind}s[{seen[name]}] already uses it; names must be unique")  # fmt: skip
        seen[name] = index


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
