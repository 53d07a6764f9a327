"""One poll of one account: read it (retrying transient errors), refuse an answer that makes no sense, and
record the outcome in the account's state (its status, its last good data, whether it is at risk)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from monitor.clock import Clock
from monitor.config.model import MonitorSettings
from monitor.domain import PollOutcome
from monitor.errors import ExchangeError, MalformedResponse
from monitor.exchange.bitget.endpoints import SPOT
from monitor.exchange.bitget.reader import read_snapshot
from monitor.exchange.retry import with_retries
from monitor.poller import spot
from monitor.poller.spot import SpotPrice
from monitor.poller.state import AccountState, RiskLevels, Status, snapshot_problem
from monitor.rules.describe import span

log = logging.getLogger(__name__)

KEY_CHECK_INTERVAL = timedelta(hours=1)  # permissions and IP binding change rarely; account/info is 1/s
RETRY_ATTEMPTS = 3  # transient errors are retried this often inside one poll


async def read_account(
    state: AccountState, clock: Clock, m: MonitorSettings, risk: RiskLevels, prices: SpotPrice | None,
    *, risk_only: bool = False, confirming: bool = False,
) -> PollOutcome:  # fmt: skip
    """Read one account once (retrying transient errors) and record the outcome in its state. `prices`: spot
    coins valued at these (the market feed's), else by Bitget. `risk_only`: the futures account and positions
    alone. `confirming`: a mark crossed a level. Neither makes a spot request once the balances are known (spot
    is no collateral for classic futures), so no spot request can delay or fail these reads."""
    started = clock.now()
    if not risk_only:
        state.full_read_at = clock.monotonic()
    client = state.client
    before = client.requests
    key = None
    products = state.config.products
    spot_interval = m.spot_poll_interval.total_seconds()
    # Spot alone: its balances are what a read is for (and a key that stops working shows at once).
    spot_only = all(p == SPOT for p in products)
    quick = risk_only or confirming
    # Read with the rest only when a spot read is the point (spot alone) or there is no value yet; a due
    # re-read goes through spot.complete, where its failure keeps the balances as last read.
    read_spot = spot_only or state.spot.assets is None
    try:
        if state.key_checked_at is None or started - state.key_checked_at >= KEY_CHECK_INTERVAL:
            key = await with_retries(client.key_info, attempts=RETRY_ATTEMPTS, base=1.0)
        snapshot = await with_retries(
            lambda: read_snapshot(client, products, clock, spot=read_spot, valued=False),
            attempts=RETRY_ATTEMPTS,
        )
        if SPOT in products:
            snapshot = await spot.complete(state.spot, client, snapshot, was_read=read_spot, price=prices,
                                           now=clock.monotonic(), attempts=RETRY_ATTEMPTS, quick=quick,
                                           due=state.spot.due(clock.monotonic(), spot_interval))  # fmt: skip
        problem = snapshot_problem(snapshot)
        if problem is not None:  # refused before it reaches the state, the store, the rules or the page
            raise MalformedResponse(f"answer refused: {problem}", account=state.name)
        outcome = PollOutcome(state.name, started, clock.now(), snapshot=snapshot,
                              requests=client.requests - before, key=key)  # fmt: skip
    except ExchangeError as exc:
        outcome = PollOutcome(state.name, started, clock.now(), error_code=exc.code or type(exc).__name__,
                              error_message=str(exc), requests=client.requests - before, key=key)  # fmt: skip
        _record_failure(state, outcome, permanent=not exc.retryable)
        return outcome
    _record_success(state, outcome, risk, m)
    return replace(outcome, at_risk=state.at_risk)


def _record_success(state: AccountState, outcome: PollOutcome, risk: RiskLevels, m: MonitorSettings) -> None:
    assert outcome.snapshot is not None
    if state.status in (Status.FAILING, Status.UNREACHABLE):
        log.warning("%s: readable again after %d failed polls", state.name, state.failures)
    state.status = Status.OK
    state.snapshot = outcome.snapshot
    state.read_started_at = outcome.started_at
    state.last_good_at = outcome.finished_at
    state.mark_good()
    state.failures = 0
    state.error_code = state.error_message = None
    if outcome.key is not None:
        state.key, state.key_checked_at = outcome.key, outcome.finished_at
    was_at_risk, state.at_risk = state.at_risk, risk.at_risk(outcome.snapshot)
    if state.at_risk and not was_at_risk:
        log.info("%s: at risk: re-read every %s", state.name, span(m.risk_poll_interval))
    elif was_at_risk and not state.at_risk:
        log.info("%s: no longer at risk", state.name)


def _record_failure(state: AccountState, outcome: PollOutcome, *, permanent: bool) -> None:
    status = Status.UNREACHABLE if permanent else Status.FAILING
    if state.status != status or state.error_code != outcome.error_code:
        level = logging.ERROR if permanent else logging.WARNING
        log.log(level, "%s: %s: %s", state.name, "unreachable" if permanent else "read failed",
                outcome.error_message)  # fmt: skip
    state.status = status
    state.failures += 1
    state.error_code, state.error_message = outcome.error_code, outcome.error_message
