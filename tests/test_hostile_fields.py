"""Each field of each endpoint, in turn, set to values Bitget's answers should never hold: exactly the fields
the risk picture rests on fail the read (naming the endpoint and the field); every other field is left unknown.

The simulator rewrites one field of one endpoint's real answer (its `field` fault), so every field it sends is
covered, including the ones the monitor never reads.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from monitor import errors
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.client import BitgetClient
from monitor.simulator.market import SimAccount
from tests.conftest import Sim, SimFactory

VALUES: list[Any] = ["111,1", "1e999", [], {}, True]
NUMBER = frozenset(json.dumps(v) for v in VALUES)  # a strict number, or a word from a fixed set: all fail
TEXT = frozenset({"[]", "{}", "true"})  # a strict name (coin, symbol): any string is one
LIST = frozenset({'"111,1"', '"1e999"', "{}", "true"})  # a list of rows: [] is just an empty one

Read = Callable[[BitgetClient], Awaitable[Any]]


def _classic(a: SimAccount) -> bool:
    return not a.unified and "spot" in a.products and any(p.product_type == "USDT-FUTURES" for p in a.positions)


def _unified(a: SimAccount) -> bool:
    return a.unified and any(p.product_type == "USDT-FUTURES" for p in a.positions)


# endpoint -> (which account, its query, the read, {field: the values that fail the read})
STRICT: dict[ep.Endpoint, tuple[Callable[[SimAccount], bool], dict[str, str], Read, dict[str, frozenset[str]]]] = {
    ep.SERVER_TIME: (_classic, {}, lambda c: c.sync_time(), {"serverTime": NUMBER}),
    ep.ACCOUNT_INFO: (_classic, {}, lambda c: c.key_info(), {}),
    ep.SPOT_ASSETS: (
        _classic, {}, lambda c: c.spot_assets(),
        {"coin": TEXT, "available": NUMBER, "frozen": NUMBER, "locked": NUMBER},
    ),
    ep.ALL_ACCOUNT_BALANCE: (_classic, {}, lambda c: c.account_balances(), {"usdtBalance": NUMBER}),
    ep.MIX_ACCOUNTS: (
        _classic, {"productType": "USDT-FUTURES"}, lambda c: c.futures_accounts("USDT-FUTURES"),
        {"marginCoin": TEXT, "accountEquity": NUMBER, "usdtEquity": NUMBER, "available": NUMBER, "locked": NUMBER,
         "unrealizedPL": NUMBER, "crossedRiskRate": NUMBER},
    ),
    ep.ALL_POSITIONS: (
        _classic, {"productType": "USDT-FUTURES"}, lambda c: c.positions("USDT-FUTURES"),
        {"symbol": TEXT, "marginCoin": TEXT, "holdSide": NUMBER, "posMode": NUMBER, "marginMode": NUMBER,
         "total": NUMBER, "openPriceAvg": NUMBER, "markPrice": NUMBER, "liquidationPrice": NUMBER,
         "marginSize": NUMBER, "leverage": NUMBER, "unrealizedPL": NUMBER, "marginRatio": NUMBER},
    ),
    ep.UNIFIED_SETTINGS: (_unified, {}, lambda c: c.account_mode(), {}),
    ep.UNIFIED_ASSETS: (
        _unified, {}, lambda c: c.unified_account(),
        # unrealisedPnl is the fallback spelling of usdtUnrealisedPnl: with the latter there, it is not read
        {"accountEquity": NUMBER, "usdtEquity": NUMBER, "usdtUnrealisedPnl": NUMBER, "mgnRatio": NUMBER,
         "assets": LIST, "coin": TEXT, "equity": NUMBER, "balance": NUMBER, "available": NUMBER, "debt": NUMBER,
         "locked": NUMBER},
    ),
    ep.UNIFIED_POSITIONS: (
        _unified, {"category": "USDT-FUTURES"}, lambda c: c.unified_positions("USDT-FUTURES"),
        {"list": LIST, "category": TEXT, "symbol": TEXT, "marginCoin": TEXT, "posSide": NUMBER,
         "holdMode": NUMBER, "marginMode": NUMBER, "total": NUMBER, "avgPrice": NUMBER, "markPrice": NUMBER,
         "liquidationPrice": NUMBER, "positionBalance": NUMBER, "leverage": NUMBER, "unrealisedPnl": NUMBER},
    ),
}  # fmt: skip


def _keys(node: Any) -> set[str]:
    """Every JSON name in an answer's data, at any depth."""
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


@pytest.mark.parametrize("endpoint", list(STRICT), ids=[e.path for e in STRICT])
async def test_each_field_set_to_a_hostile_value_fails_the_read_only_where_the_risk_picture_needs_it(
    make_sim: SimFactory, endpoint: ep.Endpoint
) -> None:
    sim: Sim = await make_sim(limits=False)
    which, query, read, strict = STRICT[endpoint]
    account = sim.first(which)
    client = sim.client(account)
    if which is _unified:
        await client.account_mode()  # learned once, before any settings answer is rewritten
    fields = _keys(await client.request(endpoint, query))
    assert set(strict) <= fields, "the simulator no longer sends a field this table names"
    failed: dict[str, set[str]] = {}
    for field in sorted(fields):
        for value in VALUES:
            fault = {"kind": "field", "endpoint": endpoint.path, "field": field, "value": value}
            if endpoint.signed:  # an unsigned request belongs to no account
                fault["account"] = account.name
            await sim.control("POST", "/_sim/faults", fault)
            if endpoint is ep.UNIFIED_SETTINGS:
                client.mode = None  # asked again, so the rewritten answer is the one read
            try:
                await read(client)
            except errors.ExchangeError as exc:
                assert isinstance(exc, errors.MalformedResponse | errors.UnexpectedResponse), exc
                assert endpoint.path in str(exc) and field in str(exc), str(exc)
                failed.setdefault(field, set()).add(json.dumps(value))
            assert sim.sim.faults == [], f"the fault on {field} was not used"
    assert failed == {field: set(values) for field, values in strict.items()}


async def test_bitgets_documented_union_total_magin_leaves_the_field_unknown_and_is_logged_once(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    account = sim.first(lambda a: not a.unified and a.quirk_magin and "USDT-FUTURES" in a.products)
    await sim.control(
        "POST", "/_sim/faults",
        {"kind": "field", "account": account.name, "field": "unionTotalMagin", "value": "111,1", "count": 3},
    )  # fmt: skip
    client = sim.client(account)
    for _ in range(3):
        (first, *_rest) = await client.futures_accounts("USDT-FUTURES")
        assert first.union_total_margin is None and first.equity > 0
    lines = [r.getMessage() for r in caplog.records if "unionTotalMagin" in r.getMessage()]
    assert len(lines) == 1, lines
    assert account.name in lines[0] and ep.MIX_ACCOUNTS.path in lines[0] and "'111,1'" in lines[0]
