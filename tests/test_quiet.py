"""The quiet bands of a mark pass (monitor.market.quiet) against the exact check they stand in for: positions read
the way the client reads them (the simulator's answer, parsed), rules and at-risk bands drawn at random, and marks
drawn around each band's ends. A mark inside every band must be one the exact check finds nothing at, and each end
must lie within EDGE of where the check starts finding something (a band too narrow would only cost CPU, but one
that never holds, or holds nowhere near its ends, would hide a bug)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from monitor.domain import AccountMode, AccountSnapshot, FuturesAccount, MarginMode, Position, PositionMode, Side
from monitor.market.live import INVERSE, QUANTUM, MarkLookup, worse_of
from monitor.market.mark import Mark
from monitor.market.quiet import EDGE, Band, check, quiet_bands
from monitor.rules.model import Rule, RuleType
from monitor.simulator.market import Market, SimAccount, SimPosition
from tests.test_live import DELIVERY, FUTURES, READ_AT, random_world, read, symbols

D = Decimal
LATER = READ_AT + timedelta(seconds=2)
OUTSIDE = D("0.00001")  # a mark this share past a band's end
NEAR = D("1e-12")  # a mark this share inside a band's end


def one_symbol_world(rng: random.Random) -> tuple[Market, SimAccount]:
    """One position, or both legs of one symbol in hedge mode, isolated or crossed, collateral thin to ample."""
    market = Market(symbols())
    product_type = rng.choice(FUTURES)
    coin = {"USDT-FUTURES": "USDT", "USDC-FUTURES": "USDC", "COIN-FUTURES": "BTC"}[product_type]
    names = [name for pt, name in market.symbols if pt == product_type and (coin != "BTC" or name.startswith("BTC"))]
    s = market.symbol(product_type, rng.choice(names))
    hedged = rng.random() < 0.3
    isolated = rng.random() < 0.4
    positions = []
    for side in ["long", "short"] if hedged else [rng.choice(["long", "short"])]:
        size = (D(rng.randint(1_000, 20_000)) / s.mark).quantize(D("0.0001"))
        entry = (s.mark * D(repr(rng.uniform(0.95, 1.05)))).quantize(D("0.01"))
        leverage = D(rng.randint(2, 75))
        notional = size if s.inverse else size * entry
        margin = (notional / leverage).quantize(D("0.00000001"))
        positions.append(SimPosition(product_type, s.name, coin, side, "isolated" if isolated else "crossed", size,
                                     entry, leverage, margin, hedge=hedged))  # fmt: skip
    cushion = D(repr(rng.uniform(0.3, 3.0)))
    balance = sum((p.margin * (1 if isolated else cushion) for p in positions), D(0))
    account = SimAccount("a", "1", "k", "p", "s", None, positions=positions)
    account.wallets[(product_type, coin)] = balance.quantize(D("0.00000001"))
    return market, account


def random_rules(rng: random.Random) -> list[Rule]:
    rules = []
    if rng.random() < 0.8:
        warning = D(rng.randint(5, 40))
        rules.append(Rule("liq", RuleType.LIQUIDATION_DISTANCE, warning, warning / 2, D(2)))
    if rng.random() < 0.5:
        percent = rng.random() < 0.5
        critical = D(-rng.randint(20, 90)) if percent else D(-rng.randint(50, 2000))
        rules.append(Rule("pnl", RuleType.UNREALIZED_PNL, critical / 2, critical, D(1), percent=percent))
    return rules


def snapshot_of(positions: tuple[Position, ...]) -> AccountSnapshot:
    return AccountSnapshot("a", READ_AT, AccountMode.CLASSIC, positions=positions)


def check_at(snapshot: AccountSnapshot, rules: list[Rule], band: Decimal | None, price: Decimal) -> tuple[bool, ...]:
    """The exact check with every position's symbol (one symbol) at `price`, a mark newer than the read."""
    p = snapshot.positions[0]
    mark = Mark(p.product_type, p.symbol, price, LATER)
    return check(snapshot, rules, (price,) * len(snapshot.positions), lambda pt, s: mark, None, band)


def pnl_step_move(p: Position, mark: Decimal) -> Decimal:
    """The mark move near `mark` that moves the position's PnL by two quantizing steps (a band keeps one clear)."""
    per_price = p.size * p.entry_price / mark**2 if p.product_type == INVERSE else p.size
    return 2 * QUANTUM / per_price


def level_near(
    snapshot: AccountSnapshot, rules: list[Rule], band: Decimal | None, end: Decimal, inward: int
) -> Decimal:
    """Where, near a band's end, the exact check starts finding something: bisected between a mark outside the
    band, where it must find something, and one inside, where it must not."""
    outside, inside = end * (1 - inward * OUTSIDE), end * (1 + inward * OUTSIDE)
    assert any(check_at(snapshot, rules, band, outside)[::2]), f"nothing found just past the band's end {end}"
    assert not any(check_at(snapshot, rules, band, inside)[::2]), f"something found just inside the band's end {end}"
    for _ in range(60):
        middle = (outside + inside) / 2
        if any(check_at(snapshot, rules, band, middle)[::2]):
            outside = middle
        else:
            inside = middle
    return outside


def test_a_mark_inside_the_bands_is_quiet_and_their_ends_lie_at_the_levels() -> None:
    rng = random.Random(7)
    banded = quiet = found = edges = 0
    for _ in range(600):
        market, account = one_symbol_world(rng)
        snapshot = snapshot_of(read(market, account))
        rules = random_rules(rng)
        band = rng.choice([None, D(rng.randint(5, 30))])
        bands = quiet_bands(snapshot, rules, band, lambda pt, s: None)
        if bands is None:  # both legs of a hedge, no mark clear of every level for both: checked exactly
            assert len(snapshot.positions) == 2, snapshot.positions
            continue
        banded += 1
        low = max(b.low for b in bands)
        highs = [b.high for b in bands if b.high is not None]
        high = min(highs) if highs else None
        read_mark = snapshot.positions[0].mark_price
        prices = [read_mark * D(repr(rng.uniform(0.5, 1.5))) for _ in range(20)]
        prices += [low * (1 + OUTSIDE), low * (1 - OUTSIDE)]
        if high is not None:
            prices += [high * (1 - OUTSIDE), high * (1 + OUTSIDE)]
        for price in prices:
            if price <= 0:
                continue
            worse, _, entering = check_at(snapshot, rules, band, price)
            if all(b.holds(price) for b in bands):
                quiet += 1
                assert not worse and not entering, f"quiet at {price}, but the check finds something: {bands}"
            elif worse or entering:
                found += 1
        # A position with no mark newer than the read is quiet exactly when its figures as read are.
        as_read = check(snapshot, rules, (None,) * len(snapshot.positions), lambda pt, s: None, None, band)
        assert all(b.as_read for b in bands) == (not as_read[0] and not as_read[2])
        if high is not None and high <= low:
            continue  # both legs of a hedge, each quiet where the other is not: no mark is quiet
        # Each end lies within EDGE of where the check starts finding something, on the quiet side.
        for end, inward in ([(low, 1)] if low > 0 else []) + ([(high, -1)] if high is not None else []):
            edges += 1
            level = level_near(snapshot, rules, band, end, inward)
            assert inward * (end - level) > 0, f"the band's end {end} reaches past the level at {level}: {bands}"
            slack = 2 * EDGE * level + max(pnl_step_move(p, level) for p in snapshot.positions)
            assert abs(end - level) <= slack, f"the band's end {end} is far from the level {level}"
    # Not a vacuous pass: many marks were quiet, many were not, and many ends were probed.
    assert banded > 500 and quiet > 2000 and found > 2000 and edges > 300, (quiet, found, edges)


def test_a_crossed_pair_gets_one_box_and_an_inverse_pair_none() -> None:
    """Crossed positions of two symbols of one margin coin: each one's price follows the other's mark, so both get
    the same share around their read marks (the group's box). The coin-margined case is left to the exact check."""
    market = Market(symbols())
    rules = [Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(15), D(7), D(2))]
    for product_type, coin, pair, bands_told in (
        ("USDT-FUTURES", "USDT", ("BTCUSDT", "ETHUSDT"), True),
        ("COIN-FUTURES", "BTC", ("BTCUSD", DELIVERY[1]), False),
    ):
        first, second = (market.symbol(product_type, name) for name in pair)
        notional = D(1000) if product_type == "COIN-FUTURES" else D(10000)
        account = SimAccount("a", "1", "k", "p", "s", None, positions=[
            SimPosition(product_type, first.name, coin, "long", "crossed", (notional / first.mark).quantize(D("0.001")),
                        first.mark, D(20), D(0)),
            SimPosition(product_type, second.name, coin, "short", "crossed",
                        (notional / second.mark).quantize(D("0.001")), second.mark, D(20), D(0)),
        ])  # fmt: skip
        account.wallets[(product_type, coin)] = D("0.01") if coin == "BTC" else D(2000)
        snapshot = snapshot_of(read(market, account))
        assert all(p.liquidation_price is not None for p in snapshot.positions), snapshot.positions
        bands = quiet_bands(snapshot, rules, None, lambda pt, s: None)
        if not bands_told:
            assert bands is None
            continue
        assert bands is not None
        shares = {(b.high - b.low) / (b.high + b.low) for b in bands if b.high is not None}
        assert len(bands) == 2 and len({round(x, 12) for x in shares}) == 1, bands


def test_rules_the_bands_do_not_cover_leave_the_account_to_the_exact_check() -> None:
    market, account = one_symbol_world(random.Random(3))
    snapshot = snapshot_of(read(market, account))
    for rule in (
        Rule("odds", RuleType.LIQUIDATION_PROBABILITY, D(5), D(20), D(1)),
        Rule("liq0", RuleType.LIQUIDATION_DISTANCE, D(0), D(-5), D(1)),  # a level at 0 % or below
        Rule("liq100", RuleType.LIQUIDATION_DISTANCE, D(100), D(50), D(1)),
    ):
        assert quiet_bands(snapshot, [rule], None, lambda pt, s: None) is None, rule.name


def feed_of(positions: tuple[Position, ...], moved: dict[str, Decimal]) -> MarkLookup:
    """The feed's marks: each symbol moved at its price, newer than the read (the others: none)."""
    marks = {(p.product_type, p.symbol): Mark(p.product_type, p.symbol, moved[p.symbol], LATER)
             for p in positions if p.symbol in moved}  # fmt: skip
    return lambda pt, s: marks.get((pt, s))


def corner(rng: random.Random, low: Decimal, high: Decimal | None, otherwise: Decimal) -> Decimal:
    """One end of a band, just inside it, at random (a positive one; `otherwise` when it has none)."""
    ends = ([low * (1 + NEAR)] if low > 0 else []) + ([high * (1 - NEAR)] if high is not None else [])
    return rng.choice(ends) if ends else otherwise


def symbol_ends(bands: tuple[Band, ...], positions: tuple[Position, ...]) -> dict[str, tuple[Decimal, Decimal | None]]:
    """Per symbol: the marks quiet for every position of it (the bands' intersection)."""
    ends: dict[str, tuple[Decimal, Decimal | None]] = {}
    for b, p in zip(bands, positions, strict=True):
        low, high = ends.get(p.symbol, (b.low, b.high))
        ends[p.symbol] = max(low, b.low), b.high if high is None else high if b.high is None else min(high, b.high)
    return ends


def test_crossed_positions_of_several_symbols_are_quiet_inside_their_groups_box() -> None:
    """Crossed positions whose liquidation prices follow each other's marks (tests.test_live's worlds): every mark
    of the group may move by the box's share, each its own way. Marks drawn at random and at the box's corners (the
    worst case of each position lies at one) are quiet only where the exact check finds nothing. Some symbols
    keep no mark newer than the read (their positions as read, the others' prices not adjusted for them); some
    accounts pool their collateral across coins (multi-asset mode: every price as read)."""
    rng, other = random.Random(11), random.Random(12)  # `other`: the stale marks and pooled accounts
    boxed = quiet = found = 0
    for _ in range(300):
        market, account = random_world(rng)
        snapshot = snapshot_of(read(market, account))
        if other.random() < 0.2:
            p0 = snapshot.positions[0]
            union = FuturesAccount(p0.product_type, p0.margin_coin, D(1), D(1), D(1), D(0), D(0), None,
                                   asset_mode="union")  # fmt: skip
            snapshot = replace(snapshot, futures=(union,))
        rules = random_rules(rng)
        band = rng.choice([None, D(rng.randint(5, 30))])
        bands = quiet_bands(snapshot, rules, band, lambda pt, s: None)
        if bands is None:
            continue
        boxed += 1
        ends = symbol_ends(bands, snapshot.positions)
        read_marks = {p.symbol: p.mark_price for p in snapshot.positions}
        for k in range(30):
            if k < 15:
                spread = rng.choice([0.001, 0.01, 0.05, 0.2])
                moved = {s: m * D(repr(rng.uniform(1 - spread, 1 + spread))) for s, m in read_marks.items()}
            else:  # a corner of the box, just inside it
                moved = {s: corner(rng, low, high, read_marks[s]) for s, (low, high) in ends.items()}
            stale = {s for s in moved if other.random() < 0.2}  # no mark newer than the read
            prices = tuple(None if p.symbol in stale else moved[p.symbol] for p in snapshot.positions)
            feed = feed_of(snapshot.positions, {s: m for s, m in moved.items() if s not in stale})
            worse, _, entering = check(snapshot, rules, prices, feed, None, band)
            if all(b.holds(x) for b, x in zip(bands, prices, strict=True)):
                quiet += 1
                assert not worse and not entering, f"quiet at {prices}, but the check finds something: {bands}"
            elif worse or entering:
                found += 1
    assert boxed > 100 and quiet > 1000 and found > 300, (boxed, quiet, found)


def test_between_reads_the_rules_see_a_position_live_only_where_it_is_worse_on_every_figure() -> None:
    """A crossed position can come closer to liquidation while its own PnL improves (another symbol's mark moved
    its price): judged live, its PnL alert would resolve without a read, and fire again at the read."""
    read_ = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.CROSSED, D(10),
                     D(100), D(94), D(75), D(50), D(20), D(-60))  # fmt: skip
    snapshot = snapshot_of((read_,))
    closer_richer = replace(read_, mark_price=D(96), liquidation_price=D(81), unrealized_pnl=D(-40))
    closer_poorer = replace(read_, mark_price=D(93), liquidation_price=D(76), unrealized_pnl=D(-70))
    assert closer_richer.liquidation_distance_pct < read_.liquidation_distance_pct  # type: ignore[operator]
    assert worse_of(snapshot, snapshot_of((closer_richer,))) is snapshot
    assert worse_of(snapshot, snapshot_of((closer_poorer,))).positions == (closer_poorer,)
