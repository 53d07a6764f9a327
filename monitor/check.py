"""`bitget-monitor check`: can every configured account be read, and are its keys safe for a monitor?"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp

from monitor.clock import Clock
from monitor.config import AccountConfig, Config
from monitor.domain import AccountMode, AccountSnapshot, KeyInfo
from monitor.errors import ExchangeError
from monitor.exchange.bitget.client import BitgetClient, Credentials
from monitor.exchange.bitget.codes import fix_for
from monitor.exchange.bitget.reader import read_snapshot
from monitor.exchange.bitget.servertime import ServerClock
from monitor.exchange.retry import with_retries
from monitor.numbers import counted
from monitor.rules.describe import describe
from monitor.rules.model import DEFAULT_RULES, Rule

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    account: AccountConfig
    mode: AccountMode | None = None
    key: KeyInfo | None = None
    snapshot: AccountSnapshot | None = None
    error: ExchangeError | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def client_for(
    account: AccountConfig, config: Config, session: aiohttp.ClientSession, server_clock: ServerClock
) -> BitgetClient:
    credentials = Credentials(account.api_key, account.api_secret, account.passphrase, account.demo)
    return BitgetClient(
        session,
        config.monitor.bitget_url,
        account.name,
        credentials,
        server_clock,
        timeout=config.monitor.request_timeout.total_seconds(),
        max_response_size=config.monitor.max_response_size,
    )


@dataclass
class CheckReport:
    results: list[CheckResult]
    clock_offset_ms: int | None  # Bitget's clock minus ours; None when it could not be read
    rules: tuple[Rule, ...] = ()  # printed with their levels in words, to catch unit mistakes by eye

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


async def check_accounts(config: Config, session: aiohttp.ClientSession, clock: Clock) -> CheckReport:
    server_clock = ServerClock(clock)
    clients = [client_for(a, config, session, server_clock) for a in config.accounts]
    if clients:
        try:
            await clients[0].sync_time()
        except ExchangeError as exc:
            log.warning("cannot read Bitget's clock (%s); signing with this machine's clock", exc)
    results = await asyncio.gather(*(_check_one(c, a, clock) for c, a in zip(clients, config.accounts, strict=True)))
    return CheckReport(list(results), server_clock.offset_ms if server_clock.measured else None, config.rules)


async def _check_one(client: BitgetClient, account: AccountConfig, clock: Clock) -> CheckResult:
    result = CheckResult(account)
    try:
        # Retries absorb transient faults and 429s (account/info allows one request a second per account).
        result.key = await with_retries(client.key_info, base=1.0)
        result.mode = await with_retries(client.account_mode)
        result.snapshot = await with_retries(lambda: read_snapshot(client, account.products, clock))
    except ExchangeError as exc:
        result.error = exc
        return result
    key = result.key
    if key.can_withdraw:
        result.warnings.append("the key can withdraw; a monitor needs a read-only key")
    elif key.can_trade:
        result.warnings.append("the key can trade; a monitor needs a read-only key")
    if not key.ip_bound:
        result.warnings.append("the key is not bound to an IP address; bind it to this host on Bitget")
    return result


def render_table(report: CheckReport) -> str:
    results = report.results
    rows = [("ACCOUNT", "KEY", "MODE", "UID", "RESULT")]
    for r in results:
        key = r.account.key_type + (" demo" if r.account.demo else "")
        if r.ok and r.snapshot is not None:
            outcome = f"ok: {', '.join(r.account.products)}; {counted(len(r.snapshot.positions), 'position')}"
        else:
            code = r.error.code if r.error and r.error.code else type(r.error).__name__
            outcome = f"FAILED ({code})"
        rows.append((r.account.name, key, r.mode.value if r.mode else "-", (r.key and r.key.uid) or "-", outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for r in results:
        if r.error is not None:
            lines.append(f"{r.error}\n    fix: {fix_for(r.error)}")
    for r in results:
        lines.extend(f"warning: {r.account.name}: {w}" for w in r.warnings)
    if report.rules:
        defaults = " (the defaults: the file has no [[rules]])" if report.rules is DEFAULT_RULES else ""
        lines.append(f"rules{defaults}:")
        lines.extend(f"  {describe(rule)}" for rule in report.rules)
    if report.clock_offset_ms is not None:
        lines.append(f"clock offset to Bitget: {report.clock_offset_ms:+d} ms (compensated when signing)")
    return "\n".join(lines)
