"""Simulated accounts, positions and prices, and the margin arithmetic that ties them together.

Linear contracts (USDT-/USDC-FUTURES) settle PnL in the quote coin; inverse contracts (COIN-FUTURES) in the
base coin, which is `size * (mark - entry) / mark` for a long. Liquidation happens when the margin backing a
position (isolated) or the cross collateral of a margin coin (crossed) falls to the maintenance margin.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
_Q = Decimal("0.00000001")


def q(value: Decimal) -> Decimal:
    """Round derived amounts to 8 places, as Bitget reports them."""
    return value.quantize(_Q)


@dataclass
class Symbol:
    product_type: str
    name: str
    mark: Decimal
    tick_size: Decimal
    maintenance_rate: Decimal

    @property
    def inverse(self) -> bool:
        return self.product_type == "COIN-FUTURES"


@dataclass
class SimPosition:
    product_type: str
    symbol: str
    margin_coin: str
    side: str  # long | short
    margin_mode: str  # isolated | crossed
    size: Decimal
    entry: Decimal
    leverage: Decimal
    margin: Decimal  # isolated: the margin backing it; crossed: initial margin (informational)
    hedge: bool = False
    opened_ms: int = 0
    fee: Decimal = ZERO

    @property
    def direction(self) -> int:
        return 1 if self.side == "long" else -1


@dataclass
class SimAccount:
    name: str
    uid: str
    api_key: str
    passphrase: str
    secret: str | None  # HMAC secret; None for an RSA key
    public_key_pem: str | None  # RSA keys: what the user uploaded to Bitget
    demo: bool = False
    unified: bool = False
    products: tuple[str, ...] = ("spot", "USDT-FUTURES")
    permissions: list[str] = field(default_factory=lambda: ["readonly"])
    ips: list[str] = field(default_factory=list)
    revoked: bool = False
    spot: dict[str, Decimal] = field(default_factory=dict)  # coin -> available
    wallets: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (product type, coin) -> balance
    positions: list[SimPosition] = field(default_factory=list)
    liquidations: int = 0
    quirk_magin: bool = False  # spells unionTotalMagin as Bitget's own example does


class Market:
    def __init__(self, symbols: list[Symbol], *, volatility: float = 0.0005, seed: int = 0) -> None:
        self.symbols = {(s.product_type, s.name): s for s in symbols}
        self.volatility = volatility
        self._rng = random.Random(seed)

    def symbol(self, product_type: str, name: str) -> Symbol:
        return self.symbols[(product_type.upper(), name)]

    def mark(self, p: SimPosition) -> Decimal:
        return self.symbol(p.product_type, p.symbol).mark

    def usdt_price(self, coin: str) -> Decimal:
        """USDT value of one coin, from the USDT-FUTURES mark of COINUSDT (1 for stable coins)."""
        if coin in ("USDT", "USDC"):
            return ONE
        s = self.symbols.get(("USDT-FUTURES", f"{coin}USDT"))
        return s.mark if s else ZERO

    def step(self) -> None:
        """One random-walk step of every mark price."""
        for s in self.symbols.values():
            factor = math.exp(self._rng.gauss(0.0, self.volatility))
            s.mark = max(s.tick_size, (s.mark * Decimal(repr(factor))).quantize(s.tick_size))

    # -- per-position arithmetic --------------------------------------------------------------------------

    def pnl(self, p: SimPosition) -> Decimal:
        mark = self.mark(p)
        if self.symbol(p.product_type, p.symbol).inverse:
            return q(p.direction * p.size * (mark - p.entry) / mark)
        return q(p.direction * p.size * (mark - p.entry))

    def maintenance(self, p: SimPosition) -> Decimal:
        s = self.symbol(p.product_type, p.symbol)
        notional = p.size if s.inverse else p.size * s.mark
        return q(notional * s.maintenance_rate)

    def liquidation_price(self, account: SimAccount, p: SimPosition) -> Decimal:
        """The mark of p's symbol at which p's margin meets its maintenance, every other mark fixed.

        Isolated: p's own margin against p. Crossed: the cross collateral of p's margin coin against every
        crossed position on that coin, with all positions on p's symbol (both legs in hedge mode) moving
        together. It comes out zero or negative for a well-collateralised cross position, exactly as Bitget
        reports it.
        """
        s = self.symbol(p.product_type, p.symbol)
        if p.margin_mode == "isolated":
            legs, collateral, fixed_maintenance = [p], p.margin, ZERO
        else:
            crossed = [
                x for x in account.positions
                if x.margin_mode == "crossed" and x.product_type == p.product_type and x.margin_coin == p.margin_coin
            ]  # fmt: skip
            legs = [x for x in crossed if x.symbol == p.symbol]
            others = [x for x in crossed if x.symbol != p.symbol]
            book = self.ledger(account, p.product_type, p.margin_coin)
            collateral = book.cross_collateral + sum((self.pnl(x) for x in others), ZERO)
            fixed_maintenance = sum((self.maintenance(x) for x in others), ZERO)
        r = s.maintenance_rate
        net = sum((x.direction * x.size for x in legs), ZERO)
        gross = sum((x.size for x in legs), ZERO)
        cost = sum((x.direction * x.size * x.entry for x in legs), ZERO)
        if s.inverse:
            # collateral + net - cost / M = fixed + r * gross
            denominator = collateral + net - fixed_maintenance - r * gross
            return q(cost / denominator) if denominator else ZERO
        # collateral + net * M - cost = fixed + r * gross * M
        denominator = net - r * gross
        return q((fixed_maintenance - collateral + cost) / denominator) if denominator else ZERO

    # -- per-margin-coin arithmetic -----------------------------------------------------------------------

    def ledger(self, account: SimAccount, product_type: str, coin: str) -> Ledger:
        positions = [p for p in account.positions if p.product_type == product_type and p.margin_coin == coin]
        crossed = [p for p in positions if p.margin_mode == "crossed"]
        isolated = [p for p in positions if p.margin_mode == "isolated"]
        balance = account.wallets.get((product_type, coin), ZERO)
        isolated_margin = sum((p.margin for p in isolated), ZERO)
        return Ledger(
            balance=balance,
            isolated_margin=isolated_margin,
            cross_collateral=balance - isolated_margin,
            crossed_pnl=sum((self.pnl(p) for p in crossed), ZERO),
            isolated_pnl=sum((self.pnl(p) for p in isolated), ZERO),
            crossed_maintenance=sum((self.maintenance(p) for p in crossed), ZERO),
            crossed_initial=sum((p.margin for p in crossed), ZERO),
        )

    def liquidate(self, account: SimAccount) -> list[SimPosition]:
        """Remove what Bitget would liquidate at the current marks; the margin behind it is lost."""
        gone: list[SimPosition] = []
        for p in [p for p in account.positions if p.margin_mode == "isolated"]:
            if p.margin + self.pnl(p) <= self.maintenance(p):
                account.positions.remove(p)
                key = (p.product_type, p.margin_coin)
                account.wallets[key] = account.wallets.get(key, ZERO) - p.margin
                gone.append(p)
        for product_type, coin in {(p.product_type, p.margin_coin) for p in account.positions}:
            book = self.ledger(account, product_type, coin)
            if book.crossed_maintenance and book.cross_equity <= book.crossed_maintenance:
                crossed = [
                    p
                    for p in account.positions
                    if p.product_type == product_type and p.margin_coin == coin and p.margin_mode == "crossed"
                ]
                for p in crossed:
                    account.positions.remove(p)
                account.wallets[(product_type, coin)] = book.isolated_margin
                gone.extend(crossed)
        account.liquidations += len(gone)
        return gone


@dataclass(frozen=True)
class Ledger:
    balance: Decimal
    isolated_margin: Decimal
    cross_collateral: Decimal
    crossed_pnl: Decimal
    isolated_pnl: Decimal
    crossed_maintenance: Decimal
    crossed_initial: Decimal

    @property
    def cross_equity(self) -> Decimal:
        return self.cross_collateral + self.crossed_pnl

    @property
    def equity(self) -> Decimal:
        return self.balance + self.crossed_pnl + self.isolated_pnl

    @property
    def risk_rate(self) -> Decimal:
        """Bitget's crossedRiskRate: cross maintenance over cross equity; 1 means liquidation."""
        if not self.crossed_maintenance:
            return ZERO
        if self.cross_equity <= 0:
            return ONE
        return q(self.crossed_maintenance / self.cross_equity)

    @property
    def available(self) -> Decimal:
        return max(ZERO, q(self.cross_collateral + min(self.crossed_pnl, ZERO) - self.crossed_initial))
