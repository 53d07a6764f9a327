"""The faults the simulator injects, in one place: what each kind does and which answers it can change.

Transport faults replace the answer (`429`, `500`, `40725`, `45001`, `malformed`, `truncated`, `huge_body`,
`hostile_error`) or delay it (`timeout`, `slow`). Hostile answers keep Bitget's envelope and rewrite fields
of the real data: `field` (one named field to any JSON value), `huge_exponent` ("1e999999999" in times and
amounts), `negative_size` (positions of negative size) and `bidi_symbol` (symbols and coins with a line
break and a bidi override). A rewriting fault only takes a request whose answer holds a field it rewrites.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from monitor.exchange.bitget import endpoints as ep

FAULT_KINDS = (
    "429", "500", "40725", "45001", "timeout", "slow", "malformed", "truncated", "huge_body", "hostile_error",
    "field", "huge_exponent", "negative_size", "bidi_symbol",
)  # fmt: skip

HUGE = "1e999999999"
HUGE_BODY = 50 * 1024 * 1024  # bytes of a huge_body answer unless the fault says otherwise
FORGED = "\u202e\r\n[CRITICAL] forged line\u2066"  # appended to symbols and coins by bidi_symbol
_POSITIONS = {ep.ALL_POSITIONS.path, ep.SINGLE_POSITION.path, ep.UNIFIED_POSITIONS.path}
_ACCOUNTS = {ep.SPOT_ASSETS.path, ep.MIX_ACCOUNTS.path, ep.MIX_ACCOUNT.path, ep.UNIFIED_ASSETS.path}
_TIMES = ("cTime", "uTime", "createdTime", "updatedTime")
_AMOUNTS = ("accountEquity", "available", "total", "usdtBalance", "markPrice")


@dataclass
class Fault:
    kind: str
    remaining: int
    account: str | None = None  # None: every request
    endpoint: str | None = None  # None: every endpoint
    delay: float = 0.0
    field: str | None = None  # `field`: the JSON name rewritten wherever it occurs in the answer's data
    value: Any = None  # `field`: the JSON value written there
    size: int = HUGE_BODY  # `huge_body`: bytes sent

    def takes(self, account: str, path: str) -> bool:
        """Whether this fault takes a request of `account` to `path`."""
        if self.account not in (None, account) or self.endpoint not in (None, path):
            return False
        rewrite = _REWRITES.get(self.kind)
        return rewrite is None or rewrite.paths is None or path in rewrite.paths


@dataclass(frozen=True)
class _Rewrite:
    paths: set[str] | None  # the answers that hold the fields; None: any
    fields: Callable[[Fault], tuple[str, ...]]
    value: Callable[[Fault, Any], Any]  # (fault, the value found) -> the value written


_REWRITES: dict[str, _Rewrite] = {
    "field": _Rewrite(None, lambda f: (f.field or "",), lambda f, _: f.value),
    "huge_exponent": _Rewrite(_POSITIONS | _ACCOUNTS, lambda f: _TIMES + _AMOUNTS, lambda f, _: HUGE),
    "negative_size": _Rewrite(_POSITIONS, lambda f: ("total",), lambda f, old: f"-{old}".replace("--", "")),
    "bidi_symbol": _Rewrite(
        _POSITIONS | _ACCOUNTS, lambda f: ("symbol", "coin", "marginCoin"), lambda f, old: f"{old}{FORGED}"
    ),
}


def rewrites(fault: Fault) -> bool:
    return fault.kind in _REWRITES


def rewrite(fault: Fault, data: Any) -> Any:
    """`data` with the fault's fields rewritten wherever they occur (in every row, at any depth)."""
    how = _REWRITES[fault.kind]
    names = how.fields(fault)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: how.value(fault, v) if k in names else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(data)


async def huge_body(request: web.Request, envelope: dict[str, Any], size: int) -> web.StreamResponse:
    """A well-formed answer of `size` bytes, streamed in chunks without a Content-Length: never all in memory."""
    head = json.dumps({k: v for k, v in envelope.items() if k != "data"})[:-1].encode() + b', "data": ['
    chunk = b'"' + b"x" * (64 * 1024 - 4) + b'",'
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    with contextlib.suppress(ConnectionError):  # the client stops reading at its cap and hangs up
        await response.prepare(request)
        await response.write(head)
        for _ in range(max(0, size - len(head)) // len(chunk)):
            await response.write(chunk)
        await response.write(b"0]}")
        await response.write_eof()
    return response


def hostile_error() -> tuple[dict[str, Any], int]:
    """An error answer no real Bitget sends: an unknown code with a line break, a 100 kB message that forges
    lines and overrides the text direction. A 5xx, so a passing fault. (body, HTTP status)"""
    msg = ("service error\n2026-01-01 00:00:00 CRITICAL forged log line \u202egnp.exe\r\n" * 2000)[:100_000]
    return {"code": "ERR-0-x\n", "msg": msg, "data": None}, 502
