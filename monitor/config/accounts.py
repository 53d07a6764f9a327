"""The [[accounts]] section: each account's keys, its secret inline or from a file read with care, and a
warning for secrets written into the accounts file itself."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.config.model import AccountConfig
from monitor.config.reader import VAR, KeyPath, Reader
from monitor.exchange.bitget.signing import is_pem, signer_for
from monitor.secret import Secret

_SECRET_KEYS = ("api_key", "api_secret", "passphrase")
# The largest secret file read: an RSA-4096 PEM is about 3.3 KB; anything far larger is the wrong file.
SECRET_FILE_LIMIT = 64 * 1024


class AccountsReader(Reader):
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
