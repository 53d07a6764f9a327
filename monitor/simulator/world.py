"""The simulator's whole state (market, accounts, server clock) and how it is built from a scenario.

A scenario is a TOML file (its format is in the README); generated worlds are built from the same specs.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from monitor.simulator.market import Market, SimAccount, SimPosition, Symbol

DEFAULT_SYMBOLS: tuple[tuple[str, str, str, str, str], ...] = (
    # product type, symbol, mark, tick size, maintenance rate
    ("USDT-FUTURES", "BTCUSDT", "60000", "0.1", "0.004"),
    ("USDT-FUTURES", "ETHUSDT", "3000", "0.01", "0.005"),
    ("USDT-FUTURES", "SOLUSDT", "150", "0.001", "0.01"),
    ("USDT-FUTURES", "XRPUSDT", "0.6", "0.0001", "0.01"),
    ("COIN-FUTURES", "BTCUSD", "60000", "0.1", "0.004"),
    ("COIN-FUTURES", "ETHUSD", "3000", "0.01", "0.005"),
    ("USDC-FUTURES", "BTCPERP", "60000", "0.1", "0.004"),
    ("USDC-FUTURES", "ETHPERP", "3000", "0.01", "0.005"),
)


class ScenarioError(ValueError):
    pass


@dataclass
class World:
    market: Market
    accounts: dict[str, SimAccount]  # by name
    private_keys: dict[str, str] = field(default_factory=dict)  # name -> PEM, for writing accounts files
    key_files: dict[str, Path] = field(default_factory=dict)  # name -> existing PEM file (scenarios)
    clock_offset_ms: int = 0  # how far the simulated Bitget clock is ahead of this machine's

    def __post_init__(self) -> None:
        self.by_key: dict[str, SimAccount] = {a.api_key: a for a in self.accounts.values()}

    def add(self, account: SimAccount) -> None:
        if account.name in self.accounts:
            raise ScenarioError(f"duplicate account name {account.name!r}")
        if account.api_key in self.by_key:
            raise ScenarioError(f"account {account.name!r} reuses the api_key of {self.by_key[account.api_key].name!r}")
        self.accounts[account.name] = account
        self.by_key[account.api_key] = account


def default_symbols() -> list[Symbol]:
    return [
        Symbol(pt, name, Decimal(mark), Decimal(tick), Decimal(mmr)) for pt, name, mark, tick, mmr in DEFAULT_SYMBOLS
    ]


def build_world(spec: dict[str, Any], *, base: Path | None = None, seed: int = 0) -> World:
    """Build a world from a scenario mapping; `base` resolves relative key file paths."""
    market_spec = spec.get("market", {})
    symbols = [_symbol(s, i) for i, s in enumerate(spec.get("symbols", []))] or default_symbols()
    market = Market(symbols, volatility=float(market_spec.get("volatility", 0.0005)), seed=seed)
    world = World(market=market, accounts={})
    for i, a in enumerate(spec.get("accounts", [])):
        try:
            account = _account(a, i, world, base or Path.cwd())
            for p in account.positions:
                if (p.product_type, p.symbol) not in market.symbols:
                    raise ScenarioError(f"unknown symbol {p.product_type} {p.symbol}")
            world.add(account)
        except KeyError as exc:
            raise ScenarioError(f"accounts[{i}]: missing key {exc}") from None
        except (ValueError, TypeError, ArithmeticError, OSError) as exc:
            where = f"accounts[{i}]"
            raise ScenarioError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    return world


def load_scenario(path: Path, seed: int = 0) -> World:
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        return build_world(spec, base=path.parent, seed=seed)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _dec(spec: dict[str, Any], key: str, where: str, default: str | None = None) -> Decimal:
    value = spec.get(key, default)
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ScenarioError(f"{where}.{key}: not a number: {value!r}") from None


def _symbol(s: dict[str, Any], i: int) -> Symbol:
    where = f"symbols[{i}]"
    return Symbol(
        str(s["product_type"]).upper(),
        str(s["symbol"]),
        _dec(s, "mark", where),
        _dec(s, "tick_size", where, "0.01"),
        _dec(s, "maintenance_rate", where, "0.005"),
    )


def _account(a: dict[str, Any], i: int, world: World, base: Path) -> SimAccount:
    where = f"accounts[{i}]"
    name = str(a["name"])
    public_pem = None
    secret = a.get("api_secret")
    pem = a.get("rsa_private_key")
    if pem is None and "rsa_private_key_file" in a:
        key_file = (base / a["rsa_private_key_file"]).resolve()
        pem = key_file.read_text()
        world.key_files[name] = key_file
    if pem is not None:
        public_pem = _public_pem(pem)
        world.private_keys[name] = pem
        secret = None
    elif secret is None:
        raise ScenarioError(f"{where}: needs api_secret or rsa_private_key_file")
    positions = [
        SimPosition(
            product_type=str(p["product_type"]).upper(),
            symbol=str(p["symbol"]),
            margin_coin=str(p.get("margin_coin") or _margin_coin(str(p["product_type"]), str(p["symbol"]))),
            side=str(p["side"]),
            margin_mode=str(p.get("margin_mode", "crossed")),
            size=_dec(p, "size", f"{where}.positions[{j}]"),
            entry=_dec(p, "entry", f"{where}.positions[{j}]"),
            leverage=_dec(p, "leverage", f"{where}.positions[{j}]", "10"),
            margin=_dec(p, "margin", f"{where}.positions[{j}]", "0"),
            hedge=bool(p.get("hedge", False)),
            opened_ms=int(p.get("opened_ms", 1700000000000)),
        )
        for j, p in enumerate(a.get("positions", []))
    ]
    for p in positions:
        if p.side not in ("long", "short") or p.margin_mode not in ("isolated", "crossed"):
            raise ScenarioError(f"{where}: side must be long or short, margin_mode isolated or crossed")
        if p.size <= 0 or p.entry <= 0 or p.leverage <= 0:
            raise ScenarioError(f"{where}: size, entry and leverage must be positive")
        if not p.margin:  # default: initial margin at the entry price
            notional = p.size if p.product_type == "COIN-FUTURES" else p.size * p.entry
            p.margin = (notional / p.leverage).quantize(Decimal("0.00000001"))
        p.fee = (p.size * p.entry * Decimal("0.0006")).quantize(Decimal("0.00000001"))
    return SimAccount(
        name=name,
        uid=str(a.get("uid", 1_000_000 + i)),
        api_key=str(a["api_key"]),
        passphrase=str(a["passphrase"]),
        secret=secret,
        public_key_pem=public_pem,
        demo=bool(a.get("demo", False)),
        unified=bool(a.get("unified", False)),
        products=tuple(a.get("products", ("spot", "USDT-FUTURES"))),
        permissions=list(a.get("permissions", ["readonly"])),
        ips=list(a.get("ips", [])),
        spot={coin: _dec(a["spot"], coin, f"{where}.spot") for coin in a.get("spot", {})},
        wallets={
            (str(w["product_type"]).upper(), str(w["coin"])): _dec(w, "balance", where) for w in a.get("wallets", [])
        },
        positions=positions,
        quirk_magin=bool(a.get("quirk_magin", i % 2 == 1)),
    )


@functools.cache
def _public_pem(private_pem: str) -> str:
    """What the user uploads to Bitget for a self-generated key (cached: RSA key loading is slow)."""
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _margin_coin(product_type: str, symbol: str) -> str:
    product_type = product_type.upper()
    if product_type == "COIN-FUTURES":
        return symbol.removesuffix("USD")
    return "USDC" if product_type == "USDC-FUTURES" else "USDT"
