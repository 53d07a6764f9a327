"""Delivery through apprise, one URL at a time so each URL's result is known (and a retry skips the URLs that
already have the message). Blocking: call it from a worker thread.

apprise URLs carry tokens and passwords. Every piece of them is masked in apprise's log lines and in the
errors we keep; people see apprise's own privacy form of a URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import apprise
from apprise.decorators import notify

from monitor.alerts.model import Rendered
from monitor.config.model import ChannelConfig
from monitor.secret import Secret

EMAIL_SCHEMES = {"mailto", "mailtos", "email", "emails"}  # these get the long form
_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "resolved": apprise.NotifyType.SUCCESS,
}


@dataclass(frozen=True, slots=True)
class UrlResult:
    fingerprint: str
    shown: str  # safe to print: the channel, the URL's number in it and its service, never the URL
    ok: bool
    error: str | None = None


def fingerprint(url: Secret) -> str:
    """A stable name for a URL that reveals nothing of it (which URLs of a channel already got a message)."""
    return hashlib.sha256(url.reveal().encode()).hexdigest()[:16]


def shown(channel: str, index: int, url: Secret) -> str:
    """How a URL is named in logs, errors and output: its channel, its number there and its service. Even
    apprise's privacy form keeps paths, and a webhook's path is often its secret."""
    scheme = urlsplit(url.reveal()).scheme or "?"
    return f"{channel} #{index + 1} ({scheme})"


class Masker(logging.Filter):
    """Replaces every fragment of the configured URLs in log records (installed on apprise's logger) and in
    error texts."""

    def __init__(self) -> None:
        super().__init__()
        self._fragments: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def learn(self, urls: Iterable[Secret]) -> None:
        """Remember every fragment of these URLs (the loader calls this for every channel it reads)."""
        with self._lock:
            fragments = self._fragments.union(*(_fragments(u.reveal()) for u in urls))
            if fragments != self._fragments:
                self._fragments = fragments
                ordered = sorted(fragments, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def mask(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern else text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.mask(record.getMessage()), ()
        return True


def _fragments(url: str) -> set[str]:
    parts = urlsplit(url)
    pieces = {url, parts.netloc, parts.path.strip("/"), parts.query}
    pieces |= set(re.split(r"[:@]", parts.netloc))
    pieces |= {p for p in parts.path.split("/")}
    pieces |= {v for _, v in parse_qsl(parts.query)}
    pieces |= {unquote(p) for p in pieces}
    return {p for p in pieces if len(p) >= 3 and not _public(p)} - _port(parts)


def _public(piece: str) -> bool:
    """An IP address or localhost, wherever it sits (host, or a query value such as mailto's smtp=): no
    secret (a token can sit where a host would, as in tgram://TOKEN/..., but it is no address), and masking
    them would hide every "127.0.0.1" in the log."""
    if piece == "localhost":
        return True
    try:
        ipaddress.ip_address(piece)
    except ValueError:
        return False
    return True


def _port(parts: SplitResult) -> set[str]:
    with contextlib.suppress(ValueError):  # a port that is no number
        if parts.port is not None:
            return {str(parts.port)}
    return set()


MASKER = Masker()
logging.getLogger("apprise").addFilter(MASKER)


def mask_handlers(logger: logging.Logger) -> None:
    """Mask URL fragments in everything these handlers write (libraries under apprise, such as urllib3 at
    DEBUG, log request paths; a filter on a logger does not see its children's records)."""
    for handler in logger.handlers:
        handler.addFilter(MASKER)


@notify(on="console", name="Console")  # type: ignore[untyped-decorator, no-untyped-call]
def _console(body: str, title: str, notify_type: str, *args: object, **kwargs: object) -> bool:
    """`console://`: messages printed on standard output (the demo's channel, and handy for trying rules)."""
    print(f"\n=== {title} ===\n{body}\n", flush=True)
    return True


def valid(url: str) -> bool:
    """Whether apprise (with our console:// channel) understands a URL. Its fragments are masked from here on
    (apprise logs the URLs it loads)."""
    MASKER.learn([Secret(url)])
    return apprise.Apprise.instantiate(url) is not None


def deliver(channel: ChannelConfig, message: Rendered, kind: str | None, skip: Iterable[str] = ()) -> list[UrlResult]:
    """Send to every URL of the channel not in `skip` (fingerprints); one result per URL tried."""
    MASKER.learn(channel.urls)
    done = set(skip)
    results = []
    for index, url in enumerate(channel.urls):
        fp = fingerprint(url)
        if fp in done:
            continue
        results.append(_send(url, fp, shown(channel.name, index, url), message, kind))
    return results


def _send(url: Secret, fp: str, label: str, message: Rendered, kind: str | None) -> UrlResult:
    sender = apprise.Apprise()
    if not sender.add(url.reveal()):
        return UrlResult(fp, label, False, "not a valid apprise URL")
    email = urlsplit(url.reveal()).scheme.lower() in EMAIL_SCHEMES
    problems: list[str] = []
    result = sender.notify(
        message.body_long if email else message.body,
        title=message.title,
        notify_type=_TYPES.get(kind or "", apprise.NotifyType.INFO),
        body_format=apprise.NotifyFormat.TEXT,
        log_callback=lambda entry, _plugin: problems.append(str(entry.message)),
        log_level=logging.WARNING,
    )
    ok = bool(result)
    error = None if ok else MASKER.mask("; ".join(problems) or "delivery failed (apprise gave no reason)")
    return UrlResult(fp, label, ok, error)
