"""The demo's story: one position is driven into liquidation, the crash liquidates nobody else, and the positions
near their liquidation from the start keep their warnings (monitor.demo.plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.demo import DRIFT_SECONDS, SPARE, WARNING, plan
from monitor.simulator.generate import generate_world
from monitor.simulator.world import World, load_scenario
from tests.scenarios import SYMBOL

SYMBOLS = "[market]\nvolatility = 0\n" + SYMBOL + SYMBOL.replace("BTCUSDT", "ETHUSDT")  # both at 100


def account(name: str, balance: str, *positions: str) -> str:
    return (f'[[accounts]]\nname = "{name}"\napi_key = "bg_{name}"\napi_secret = "s"\npassphrase = "pw"\n'
            f'wallets = [{{ product_type = "USDT-FUTURES", coin = "USDT", balance = "{balance}" }}]\n'
            f"positions = [{', '.join(positions)}]\n")  # fmt: skip


def position(symbol: str, side: str, mode: str, margin: str = "0") -> str:
    return (f'{{ product_type = "USDT-FUTURES", symbol = "{symbol}", side = "{side}", margin_mode = "{mode}", '
            f'size = "10", entry = "100", margin = "{margin}" }}')  # fmt: skip


# Size 10 at 100, maintenance 1 %: an isolated long with margin 307 is liquidated at 70 (30 % away), one with 109
# at 90 (10 % away); an isolated short with margin 111 at 110 (10 % away). A cross pool of 320 with a BTCUSDT
# long and an ETHUSDT long liquidates near 68.8 (31 % away), both positions at once.
CALM = account("calm", "307", position("BTCUSDT", "long", "isolated", "307"))
NEAR_LONG = account("near", "109", position("BTCUSDT", "long", "isolated", "109"))
NEAR_SHORT = account("near", "111", position("BTCUSDT", "short", "isolated", "111"))
POOLED = account("pooled", "320", position("BTCUSDT", "long", "crossed"), position("ETHUSDT", "long", "crossed"))
ALONE = account("pooled", "320", position("BTCUSDT", "long", "crossed"))


def crash(world: World) -> list[tuple[str, str, str]]:
    """Run the demo's drift as the simulator does (the mark moved, then everything it breaks liquidated): what
    was liquidated, as (account, symbol, side)."""
    drift = plan(world)
    assert drift is not None
    symbol = world.market.symbol(drift.position.product_type, drift.position.symbol)
    gone = []
    for mark in drift.marks(int(DRIFT_SECONDS), symbol.tick_size):
        symbol.mark = mark
        for a in world.accounts.values():
            gone += [(a.name, p.symbol, p.side) for p in world.market.liquidate(a)]
    return gone


@pytest.mark.parametrize(("accounts", "seed"), [(12, 1), (12, 2), (12, 3), (5, 1), (30, 1), (100, 7)])
def test_the_demos_crash_liquidates_the_one_chosen_position_and_spares_the_others(accounts: int, seed: int) -> None:
    world = generate_world(accounts, seed)  # (12, 1): what `make run` shows
    drift = plan(world)
    assert drift is not None
    chosen = drift.position
    distance = (drift.start - drift.liquidation) / drift.start * chosen.direction
    assert distance > WARNING  # it starts calm, outside the default warning level
    warned_before = {
        (a.name, p.symbol, p.side)
        for a in world.accounts.values()
        for p in a.positions
        if p is not chosen and 0 < (world.market.mark(p) - world.market.liquidation_price(a, p)) / world.market.mark(p)
        * p.direction < WARNING
    }  # fmt: skip
    assert crash(world) == [(drift.account.name, chosen.symbol, chosen.side)]
    mark = world.market.mark(chosen)
    for a in world.accounts.values():
        for p in a.positions:
            liquidation = world.market.liquidation_price(a, p)
            if (p.product_type, p.symbol) == (chosen.product_type, chosen.symbol) and liquidation > 0:
                assert (mark - liquidation) / mark * p.direction >= SPARE, (a.name, p.symbol, p.side)
    still_there = {(a.name, p.symbol, p.side) for a in world.accounts.values() for p in a.positions}
    assert warned_before <= still_there  # the risky accounts keep their positions (and their warnings)


@pytest.mark.parametrize(
    ("accounts", "planned"),
    [
        ([CALM, NEAR_SHORT], "calm"),  # the crash moves away from the short
        ([CALM, NEAR_LONG], None),  # it would take the near long with it (and that one starts inside the warning)
        ([POOLED], None),  # its cross pool would go as a whole: two liquidations
        ([ALONE], "pooled"),  # alone in its cross pool
    ],
)
def test_the_crash_is_never_planned_through_another_position_or_a_shared_cross_pool(
    tmp_path: Path, accounts: list[str], planned: str | None
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(SYMBOLS + "".join(accounts))
    world = load_scenario(path)
    drift = plan(world)
    assert (drift.account.name if drift else None) == planned
    if drift is not None:
        assert crash(world) == [(planned, "BTCUSDT", "long")]
