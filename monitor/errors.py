"""The one error tree of the monitor.

    MonitorError
    ├── ConfigError                 the accounts file or a secret is wrong; names file, line, key and fix
    ├── StorageError                the database could not do what was asked (raised by monitor.store only)
    │   ├── StorageUnavailable      away, locked, hanging or not migrated: retrying later can succeed
    │   └── DataRefused             the data itself is refused (a constraint, a value): retrying cannot
    └── ExchangeError               anything that went wrong talking to Bitget; names account, endpoint, code
        ├── retryable: RateLimited, ExchangeUnavailable, RequestTimeout, ConnectionFailed,
        │              TimestampExpired, MalformedResponse
        └── permanent: AuthenticationError, IpNotAllowed, PermissionDenied, WrongEnvironment,
                       AccountModeMismatch, ApiDecommissioned, RequestRejected, UnexpectedResponse

Lower-level errors (aiohttp, json, decimal) are translated into this tree at the client boundary with
`raise ... from exc`; SQLAlchemy's and the drivers' errors into StorageError at the store boundary (nothing
outside monitor.store sees them). No message ever contains a secret: errors are built from names, codes and Bitget's
own `msg`, never from request headers.
"""

from __future__ import annotations

import re
from typing import ClassVar


class MonitorError(Exception):
    retryable: ClassVar[bool] = False


class ConfigError(MonitorError):
    """A problem in the accounts file, located as precisely as the file allows."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        text = where + (f"{self.key}: " if self.key else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class StorageError(MonitorError):
    """The database failed a request. `str()` is the driver's own text (`reason()` gives its first line)."""

    def __init__(self, message: str) -> None:
        self.message = message.strip()
        super().__init__(self.message)


class StorageUnavailable(StorageError):
    """The database is unreachable, locked, hanging or not migrated: the same request can succeed later."""

    retryable = True


class DataRefused(StorageError):
    """The database refuses the data itself (a constraint, a value its column rejects): retrying the same data
    fails forever."""


class ExchangeError(MonitorError):
    """An error talking to Bitget for one account and endpoint."""

    fix: ClassVar[str] = "see the message from Bitget"

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        endpoint: str | None = None,
        http_status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message
        self.account = account
        self.endpoint = endpoint
        self.http_status = http_status
        self.code = code
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}" if self.http_status else ""
        detail = f"Bitget {self.code}" + (f" ({status})" if status else "") if self.code else status
        parts = [p for p in (self.account, self.endpoint, detail) if p]
        return ": ".join([*parts, self.message])


# -- retryable ---------------------------------------------------------------------------------------------


class RateLimited(ExchangeError):
    retryable = True
    fix = "too many requests; the monitor backs off and retries"


class ExchangeUnavailable(ExchangeError):
    retryable = True
    fix = "Bitget is having trouble (often during its Tue-Thu releases); retried with backoff"


class RequestTimeout(ExchangeError):
    retryable = True
    fix = "Bitget did not answer in time; retried. Raise request_timeout if it persists"


class ConnectionFailed(ExchangeError):
    retryable = True
    fix = "cannot connect to bitget_url; check the network, DNS or proxy"


class TimestampExpired(ExchangeError):
    retryable = True
    fix = "this machine's clock is more than 30 s off Bitget's; the offset is re-measured. Run NTP"


class MalformedResponse(ExchangeError):
    """The body is not Bitget JSON at all (truncated, an HTML error page): usually passing."""

    retryable = True
    fix = "Bitget sent a broken response; retried. Report it if it persists"


# -- permanent ---------------------------------------------------------------------------------------------


class AuthenticationError(ExchangeError):
    fix = "check api_key, api_secret and passphrase for this account"


class IpNotAllowed(ExchangeError):
    fix = "the key is bound to other IP addresses; add this host's public IP to the key on Bitget"


class PermissionDenied(ExchangeError):
    fix = "give the key read permission on Bitget (read-only is all the monitor needs)"


class WrongEnvironment(ExchangeError):
    fix = "demo/live mismatch: set demo = true for a demo-trading key, false for a live key"


class AccountModeMismatch(ExchangeError):
    fix = "classic/unified account mismatch; the monitor switches endpoint family by itself"


class ApiDecommissioned(ExchangeError):
    fix = "a v1 endpoint was used; v1 was switched off on 2025-11-28"


class RequestRejected(ExchangeError):
    fix = "Bitget rejected the request; see its message"


class UnexpectedResponse(ExchangeError):
    """Well-formed Bitget JSON with a field the monitor cannot read: it will not fix itself by retrying."""

    fix = "Bitget's response format changed or holds an unexpected value; report it with the message"


def reason(exc: BaseException) -> str:
    """One line saying why, for a log line or a page: the first line of the error's text, or its class name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def error_text(account: str, code: str | None, message: str | None) -> str:
    """An account's error for people, each part once: "Bitget error 40012 on /api/v2/...: Passphrase error".

    The stored text is the error as raised ("sim-003: /api/...: Bitget 40012 (HTTP 400): Passphrase error"): the
    account is the subject of whatever shows it and the code is said once, up front."""
    code, text = code or "", (message or "").removeprefix(f"{account}: ")
    endpoint = ""
    if text.startswith("/"):
        endpoint, _, text = text.partition(": ")
    text = re.sub(rf"^Bitget {re.escape(code)}(?: \(HTTP \d+\))?(?:: |$)", "", text)
    text = re.sub(r"^HTTP (\d+): (?=.*\bHTTP \1\b)", "", text)  # "HTTP 502: HTTP 502 without a Bitget body"
    head = (f"Bitget error {code}" if code.isdigit() else code) + (f" on {endpoint}" if endpoint else "")
    return ": ".join(part for part in (head, text) if part)
