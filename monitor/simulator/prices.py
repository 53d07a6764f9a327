"""The simulator's public market as Bitget's `data` payloads: a symbol's price, the futures tickers of a product
type and the spot tickers, all at the marks the accounts' payloads (render.py) use."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from monitor.simulator.market import Market, q
from monitor.simulator.render import fmt


def symbol_price(market: Market, product_type: str, symbol: str, now_ms: int) -> list[dict[str, Any]]:
    s = market.symbols.get((product_type.upper(), symbol))
    if s is None:
        return []
    return [
        {"symbol": s.name, "price": fmt(s.mark), "indexPrice": fmt(s.mark), "markPrice": fmt(s.mark), "ts": str(now_ms)}
    ]


def tickers(market: Market, product_type: str, now_ms: int) -> list[dict[str, Any]]:
    """Every symbol of a product type, with Bitget's fields. `markPrice` is exactly the mark the positions,
    their PnL and their liquidation use; the rest is plausible filler around it."""
    rows = []
    for (pt, _), s in market.symbols.items():
        if pt != product_type.upper():
            continue
        mark = fmt(s.mark)
        rows.append(
            {
                "symbol": s.name,
                "lastPr": mark,
                "askPr": fmt(s.mark + s.tick_size),
                "bidPr": fmt(max(s.tick_size, s.mark - s.tick_size)),
                "bidSz": "1.5",
                "askSz": "2.1",
                "high24h": mark,
                "low24h": mark,
                "ts": str(now_ms),
                "change24h": "0",
                "baseVolume": "1000",
                "quoteVolume": fmt(q(s.mark * 1000)),
                "usdtVolume": fmt(q(s.mark * 1000)),
                "openUtc": mark,
                "changeUtc24h": "0",
                "indexPrice": mark,
                "fundingRate": "0.0001",
                "holdingAmount": "500",
                "open24h": mark,
                "deliveryStartTime": None,
                "deliveryTime": None,
                "deliveryStatus": "",
                "markPrice": mark,
            }
        )
    return rows


def spot_tickers(market: Market, now_ms: int, symbol: str | None = None) -> list[dict[str, Any]]:
    """A COINUSDT pair for every coin the simulator can value: the base coin of each USDT-futures symbol, and
    USDC. `lastPr` is exactly the USDT price the simulator values spot balances and coin-margined equity at
    (`Market.usdt_price`), so a monitor valuing coins from these tickers agrees with its account answers.
    A coin held but never priced (a scenario may hand one out) has no pair: it is worth 0 there too."""
    ticks = {"USDC": Decimal("0.0001")}
    ticks.update({s.name.removesuffix("USDT"): s.tick_size for (pt, _), s in market.symbols.items()
                  if pt == "USDT-FUTURES" and s.name.endswith("USDT") and s.name != "USDT"})  # fmt: skip
    rows = []
    for coin, tick in sorted(ticks.items()):
        pair = f"{coin}USDT"
        price = market.usdt_price(coin)
        if not price or symbol not in (None, pair):
            continue
        last = fmt(price)
        rows.append(
            {
                "symbol": pair,
                "high24h": last,
                "open": last,
                "lastPr": last,
                "low24h": last,
                "quoteVolume": fmt(q(price * 1000)),
                "baseVolume": "1000",
                "usdtVolume": fmt(q(price * 1000)),
                "bidPr": fmt(max(tick, price - tick)),
                "askPr": fmt(price + tick),
                "bidSz": "1.2",
                "askSz": "0.8",
                "openUtc": last,
                "ts": str(now_ms),
                "changeUtc24h": "0",
                "change24h": "0",
            }
        )
    return rows
