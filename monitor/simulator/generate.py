"""Generated worlds: N accounts with a seeded mix of everything the monitor must handle, and the accounts
file that lets the monitor read them."""

from __future__ import annotations

import functools
import json
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.simulator.world import DEFAULT_SYMBOLS, World, build_world

# RSA key generation costs ~100 ms a key; generated RSA accounts share a small pool of keys (each account
# still has its own API key and its own key file), generated once per process. Key material is random, not
# derived from the seed.
RSA_POOL_SIZE = 4

_MARKS = {(pt, sym): Decimal(mark) for pt, sym, mark, _, _ in DEFAULT_SYMBOLS}
_RATES = {(pt, sym): Decimal(rate) for pt, sym, _, _, rate in DEFAULT_SYMBOLS}


@functools.cache
def _rsa_pool() -> tuple[rsa.RSAPrivateKey, ...]:
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(RSA_POOL_SIZE))


def generate_world(n: int, seed: int = 0) -> World:
    pool = list(_rsa_pool())
    specs = [_account_spec(i, seed, pool) for i in range(n)]
    return build_world({"accounts": specs}, seed=seed)


def _pem(key: rsa.RSAPrivateKey, pkcs1: bool) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _account_spec(i: int, seed: int, pool: list[rsa.RSAPrivateKey]) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + i)
    unified = i % 4 == 3
    kind = i % 6
    if unified:
        products = ["spot", "USDT-FUTURES"]
    elif kind == 0:
        products = ["spot"]
    elif kind == 1:
        products = ["spot", "USDT-FUTURES", "COIN-FUTURES"]
    elif kind == 5:
        products = ["spot", "USDT-FUTURES", "USDC-FUTURES"]
    else:
        products = ["spot", "USDT-FUTURES"]
    permissions = ["readonly"]
    if i % 10 == 7:
        permissions += ["spot_trade", "contract_trade"]
    if i % 20 == 13:
        permissions.append("withdraw")
    spec: dict[str, Any] = {
        "name": f"sim-{i + 1:03d}",
        "uid": str(4_000_000_000 + seed * 100_000 + i),
        "api_key": f"bg_{rng.getrandbits(128):032x}",
        "passphrase": f"pass{rng.getrandbits(32):08x}",
        "demo": i % 5 == 4,
        "unified": unified,
        "products": products,
        "permissions": permissions,
        "ips": [] if i % 9 == 4 else ["127.0.0.1", "::1"],
        "spot": {"USDT": str(rng.randint(100, 10_000)), **({"BTC": "0.05"} if rng.random() < 0.3 else {})},
    }
    if i % 3 == 2:
        spec["rsa_private_key"] = _pem(pool[i % len(pool)], pkcs1=(i // 3) % 2 == 1)
    else:
        spec["api_secret"] = f"{rng.getrandbits(256):064x}"
    futures = [p for p in products if p != "spot"]
    positions, wallets = [], []
    flat = i % 7 == 6
    risky = i % 5 == 1
    for product_type in futures:
        # One wallet per margin coin: coin-margined positions stay in BTCUSD (margined in BTC).
        symbols = [sym for pt, sym in _MARKS if pt == product_type and sym != "ETHUSD"]
        coin_positions: list[dict[str, Any]] = []
        if not flat:
            count = 1 if risky else rng.randint(1, min(3, len(symbols)))  # one position per symbol and side
            for k in range(count):
                symbol = symbols[k % len(symbols)]
                hedge = i % 8 == 2 and k == 0
                sides = ["long", "short"] if hedge else [rng.choice(["long", "short"])]
                for side in sides:
                    mode = "crossed" if unified else rng.choice(["isolated", "crossed"])
                    target = rng.uniform(0.04, 0.10) if risky and not coin_positions else rng.uniform(0.3, 0.8)
                    coin_positions.append(_position(rng, product_type, symbol, side, mode, hedge, target))
        wallets.append(_wallet(rng, product_type, coin_positions, risky))
        for p in coin_positions:
            p.pop("_target")
        positions.extend(coin_positions)
    spec["positions"] = positions
    spec["wallets"] = wallets
    return spec


def _position(
    rng: random.Random, product_type: str, symbol: str, side: str, mode: str, hedge: bool, target: float
) -> dict[str, Any]:
    mark = _MARKS[(product_type, symbol)]
    rate = _RATES[(product_type, symbol)]
    inverse = product_type == "COIN-FUTURES"
    notional_usd = Decimal(rng.randint(1_000, 20_000))
    entry = (mark * Decimal(repr(1 + rng.uniform(-0.01, 0.01)))).quantize(Decimal("0.01"))
    size = (notional_usd / mark).quantize(Decimal("0.0001"))  # in the base coin, linear or inverse
    d = 1 if side == "long" else -1
    liq = mark * (1 - d * Decimal(repr(target)))
    # The collateral that puts liquidation at `liq` (the inverse of Market.liquidation_price).
    if inverse:
        collateral = d * size * entry / liq - d * size + size * rate
    else:
        collateral = d * size * entry - liq * size * (d - rate)
    collateral = max(collateral, size * (1 if inverse else entry) * Decimal("0.02")).quantize(Decimal("0.00000001"))
    notional = size if inverse else size * entry
    return {
        "product_type": product_type,
        "symbol": symbol,
        "side": side,
        "margin_mode": mode,
        "hedge": hedge,
        "size": str(size),
        "entry": str(entry),
        "leverage": str(max(1, min(125, int(notional / collateral)))),
        "margin": str(collateral) if mode == "isolated" else "0",
        "_target": collateral,
    }


def _wallet(rng: random.Random, product_type: str, positions: list[dict[str, Any]], risky: bool) -> dict[str, Any]:
    isolated = sum((Decimal(p["margin"]) for p in positions if p["margin_mode"] == "isolated"), Decimal(0))
    crossed = [p for p in positions if p["margin_mode"] == "crossed"]
    if risky and crossed and positions[0]["margin_mode"] == "crossed":
        cross = positions[0]["_target"]  # the risky cross position alone sets the collateral
        for p in crossed[1:]:
            p["margin_mode"] = "isolated"
            p["margin"] = str(p["_target"])
            isolated += p["_target"]
    else:
        cross = sum((p["_target"] for p in crossed), Decimal(0)) * Decimal(repr(rng.uniform(1.5, 4)))
    coin = "USDT" if product_type == "USDT-FUTURES" else "USDC" if product_type == "USDC-FUTURES" else "BTC"
    # A risky account gets nothing spare, so its risky position's liquidation stays where it was put.
    spare = Decimal(0) if risky else Decimal("0.01") if coin == "BTC" else Decimal(rng.randint(50, 2_000))
    return {
        "product_type": product_type,
        "coin": coin,
        "balance": str((isolated + cross + spare).quantize(Decimal("0.00000001"))),
    }


def write_accounts_file(world: World, path: Path, base_url: str) -> None:
    """A ready-to-use accounts file: literal credentials (simulator keys only), RSA keys in files beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_dir = path.parent / f"{path.stem}-keys"
    lines = [
        "# Written by `bitget-monitor simulate`: credentials of simulated accounts, not of real ones.",
        "[monitor]",
        f"bitget_url = {json.dumps(base_url)}",
        "",
    ]
    for account in world.accounts.values():
        lines += ["[[accounts]]", f"name = {json.dumps(account.name)}", f"api_key = {json.dumps(account.api_key)}"]
        if account.secret is not None:
            lines.append(f"api_secret = {json.dumps(account.secret)}")
        else:
            key_file = world.key_files.get(account.name)
            if key_file is None:
                key_dir.mkdir(exist_ok=True)
                key_file = key_dir / f"{account.name}.pem"
                key_file.write_text(world.private_keys[account.name])
                os.chmod(key_file, 0o600)
            lines.append(f"api_secret_file = {json.dumps(str(key_file.resolve()))}")
        tags = ["sim", "rsa" if account.secret is None else "hmac", "unified" if account.unified else "classic"]
        lines += [
            f"passphrase = {json.dumps(account.passphrase)}",
            f"demo = {'true' if account.demo else 'false'}",
            f"products = {json.dumps(list(account.products))}",
            f"tags = {json.dumps(tags)}",
            "",
        ]
    path.write_text("\n".join(lines))
    os.chmod(path, 0o600)
