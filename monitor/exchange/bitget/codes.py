"""Bitget's error codes: what each says, its HTTP status, and the error class it becomes.

Shared by the client (to classify) and the simulator (to answer exactly as Bitget does).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor import errors


@dataclass(frozen=True)
class Code:
    code: str
    msg: str
    http_status: int
    error: type[errors.ExchangeError]
    fix: str | None = None  # overrides the error class's generic fix


SUCCESS = "00000"

CODES: dict[str, Code] = {
    c.code: c
    for c in (
        Code(
            "40006",
            "Invalid ACCESS_KEY",
            400,
            errors.AuthenticationError,
            "the ACCESS-KEY is missing or malformed: check api_key",
        ),
        Code(
            "40037",
            "Apikey does not exist",
            400,
            errors.AuthenticationError,
            "the key was deleted or mistyped: create a read-only key and update api_key",
        ),
        Code(
            "40009",
            "sign signature error",
            400,
            errors.AuthenticationError,
            "the signature is wrong: check api_secret (or the PEM file for an RSA key)",
        ),
        Code(
            "40012",
            "apikey/password is incorrect",
            400,
            errors.AuthenticationError,
            "wrong passphrase: set passphrase to the one chosen when the key was created",
        ),
        Code("40005", "Invalid ACCESS_TIMESTAMP", 400, errors.AuthenticationError, "the timestamp header is malformed"),
        Code("40008", "Request timestamp expired", 400, errors.TimestampExpired),
        Code("40018", "Invalid IP", 400, errors.IpNotAllowed),
        Code("40038", "The current request IP is not in the whitelist", 400, errors.IpNotAllowed),
        Code("40014", "Incorrect permissions, need read permissions", 400, errors.PermissionDenied),
        Code("40099", "exchange environment is incorrect", 400, errors.WrongEnvironment),
        Code(
            "40084",
            "You are in Classic Account mode, and the Unified Account API is not supported at this time",
            400,
            errors.AccountModeMismatch,
        ),
        Code(
            "40085",
            "You are in Unified Account mode, and the Classic Account API is not supported at this time",
            400,
            errors.AccountModeMismatch,
        ),
        Code(
            "30032",
            "The V1 API has been decommissioned. Please migrate to a newer version.",
            400,
            errors.ApiDecommissioned,
        ),
        Code(
            "40404",
            "Request URL NOT FOUND",
            404,
            errors.RequestRejected,
            "the endpoint does not exist: check bitget_url",
        ),
        Code("40015", "System abnormal, please try again later", 500, errors.ExchangeUnavailable),
        Code("40725", "service return an error", 400, errors.ExchangeUnavailable),
        Code("40808", "Parameter verification exception", 400, errors.ExchangeUnavailable),
        Code("45001", "Unknown error", 500, errors.ExchangeUnavailable),
        Code("429", "Too Many Requests", 429, errors.RateLimited),
    )
}


def classify(code: str | None, http_status: int) -> type[errors.ExchangeError]:
    """The error class for a failed response, by Bitget code first, then by HTTP status."""
    if code is not None and code in CODES:
        return CODES[code].error
    if http_status == 429:
        return errors.RateLimited
    if http_status >= 500:
        return errors.ExchangeUnavailable
    return errors.RequestRejected


def fix_for(error: errors.ExchangeError) -> str:
    """A plain-language fix for an error, as specific as its code allows."""
    known = CODES.get(error.code or "")
    return known.fix if known and known.fix else error.fix


def fix_of(code: str | None) -> str | None:
    """The fix for a stored error code (what `check` prints for it); None for a code that is not Bitget's."""
    known = CODES.get(code or "")
    return (known.fix or known.error.fix) if known is not None else None


def _error_names(kind: type[errors.ExchangeError]) -> set[str]:
    return {kind.__name__}.union(*(_error_names(sub) for sub in kind.__subclasses__()))


_ERROR_NAMES = frozenset(_error_names(errors.ExchangeError))


def metric_label(code: str | None) -> str:
    """The metric label for a failed poll's code: Bitget's known codes and the names of our own error classes
    (a failure without a code) as they are; anything else, whatever a server sent, is "other". A label set
    that an answer can grow would grow the metrics without bound."""
    if code is not None and (code in CODES or code in _ERROR_NAMES):
        return code
    return "other"
