"""The simulator's accounts as Bitget's `data` payloads, quirks included (mixed spellings, numbers as JSON
numbers, "" for empty fields, negative liquidation prices). The public market's payloads are in prices.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from monitor.simulator.market import ZERO, Market, SimAccount, SimPosition, q


def fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _pos_mode(account: SimAccount, product_type: str) -> str:
    hedge = any(p.hedge for p in account.positions if p.product_type == product_type)
    return "hedge_mode" if hedge else "one_way_mode"


def account_info(account: SimAccount) -> dict[str, Any]:
    return {
        "userId": account.uid,
        "inviterId": "",
        "ips": ",".join(account.ips),
        "authorities": list(account.permissions),
        "parentId": "",
        "traderType": "",
        "channelCode": "",
        "channel": "",
        "regisTime": "1600000000000",
    }


def spot_assets(account: SimAccount, now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "coin": coin,
            "available": fmt(amount),
            "frozen": "0",
            "locked": "0",
            "limitAvailable": "0",
            "uTime": str(now_ms),
        }
        for coin, amount in sorted(account.spot.items())
    ]


def futures_accounts(market: Market, account: SimAccount, product_type: str) -> list[dict[str, Any]]:
    coins = sorted({coin for pt, coin in account.wallets if pt == product_type})
    return [futures_account(market, account, product_type, coin) for coin in coins]


def futures_account(market: Market, account: SimAccount, product_type: str, coin: str) -> dict[str, Any]:
    book = market.ledger(account, product_type, coin)
    price = market.usdt_price(coin)
    btc = market.usdt_price("BTC")
    usdt_equity = q(book.equity * price)
    data: dict[str, Any] = {
        "marginCoin": coin,
        "locked": "0",
        "available": fmt(book.available),
        "crossedMaxAvailable": fmt(book.available),
        "isolatedMaxAvailable": fmt(book.available),
        "maxTransferOut": fmt(book.available),
        "accountEquity": fmt(q(book.equity)),
        "usdtEquity": fmt(usdt_equity),
        "btcEquity": fmt(q(usdt_equity / btc)) if btc else "0",
        "crossedRiskRate": fmt(book.risk_rate),
        "unrealizedPL": fmt(q(book.crossed_pnl + book.isolated_pnl)),
        "coupon": "0",
        "unionAvailable": fmt(book.available),
        "unionMm": fmt(book.crossed_maintenance),
        "assetList": [{"coin": coin, "balance": fmt(book.balance), "available": fmt(book.available)}],
        "isolatedMargin": fmt(book.isolated_margin),
        "crossedMargin": fmt(book.crossed_initial),
        "crossedUnrealizedPL": fmt(book.crossed_pnl),
        "isolatedUnrealizedPL": fmt(book.isolated_pnl),
        "assetMode": "single",
        "crossedMarginLeverage": 20,  # a JSON number, as Bitget sends it
    }
    data["unionTotalMagin" if account.quirk_magin else "unionTotalMargin"] = fmt(q(book.equity))
    return data


def position(market: Market, account: SimAccount, p: SimPosition, now_ms: int) -> dict[str, Any]:
    mark = market.mark(p)
    pnl = market.pnl(p)
    mm = market.maintenance(p)
    liq = market.liquidation_price(account, p)
    if p.margin_mode == "isolated":
        ratio = q(mm / (p.margin + pnl)) if p.margin + pnl > 0 else Decimal(1)
    else:
        ratio = market.ledger(account, p.product_type, p.margin_coin).risk_rate
    rate = market.symbol(p.product_type, p.symbol).maintenance_rate
    return {
        "symbol": p.symbol,
        "marginCoin": p.margin_coin,
        "holdSide": p.side,
        "posMode": _pos_mode(account, p.product_type),
        "marginMode": p.margin_mode,
        "openDelegateSize": "0",
        "marginSize": fmt(p.margin),
        "available": fmt(p.size),
        "locked": "0",
        "total": fmt(p.size),
        "leverage": fmt(p.leverage),
        "achievedProfits": "0",
        "openPriceAvg": fmt(p.entry),
        "unrealizedPL": fmt(pnl),
        "liquidationPrice": fmt(liq),
        "keepMarginRate": fmt(rate),
        "markPrice": fmt(mark),
        "marginRatio": fmt(ratio),
        "breakEvenPrice": fmt(q(p.entry * (1 + p.direction * Decimal("0.0012")))),
        "totalFee": fmt(-p.fee),
        "deductedFee": fmt(p.fee),
        "takeProfit": "",
        "stopLoss": "",
        "takeProfitId": "",
        "stopLossId": "",
        "assetMode": "single",
        "autoMargin": "off",
        "grant": "",
        "cTime": str(p.opened_ms),
        "uTime": str(now_ms),
    }


def positions(market: Market, account: SimAccount, product_type: str, now_ms: int) -> list[dict[str, Any]]:
    return [position(market, account, p, now_ms) for p in account.positions if p.product_type == product_type]


def all_account_balance(market: Market, account: SimAccount) -> list[dict[str, Any]]:
    spot = sum((amount * market.usdt_price(coin) for coin, amount in account.spot.items()), ZERO)
    futures = sum(
        (market.ledger(account, pt, coin).equity * market.usdt_price(coin) for pt, coin in account.wallets), ZERO
    )
    return [
        {"accountType": kind, "usdtBalance": fmt(q(value))}
        for kind, value in (("spot", spot), ("futures", futures), ("funding", ZERO))
    ]


# -- unified (v3) ------------------------------------------------------------------------------------------


def unified_settings(account: SimAccount) -> dict[str, Any]:
    return {"uid": account.uid, "accountMode": "unified", "assetMode": "union", "holdMode": "one_way_mode"}


def unified_assets(market: Market, account: SimAccount) -> dict[str, Any]:
    book = market.ledger(account, "USDT-FUTURES", "USDT")
    spot_value = sum((amount * market.usdt_price(coin) for coin, amount in account.spot.items()), ZERO)
    equity = q(book.equity + spot_value)
    btc = market.usdt_price("BTC")
    # Liquidation looks at the USDT-futures pool alone (Market.liquidate), so the ratio does too.
    margin_ratio = book.risk_rate
    assets = [
        {
            "coin": "USDT",
            "equity": fmt(q(book.equity + account.spot.get("USDT", ZERO))),
            "usdValue": fmt(q(book.equity + account.spot.get("USDT", ZERO))),
            "balance": fmt(book.balance + account.spot.get("USDT", ZERO)),
            "available": fmt(book.available),
            "debt": "0",
            "locked": "0",
        }
    ]
    for coin, amount in sorted(account.spot.items()):
        if coin != "USDT":
            assets.append(
                {
                    "coin": coin,
                    "equity": fmt(amount),
                    "usdValue": fmt(q(amount * market.usdt_price(coin))),
                    "balance": fmt(amount),
                    "available": fmt(amount),
                    "debt": "0",
                    "locked": "0",
                }
            )
    return {
        "accountEquity": fmt(equity),
        "usdtEquity": fmt(equity),
        "btcEquity": fmt(q(equity / btc)) if btc else "0",
        "unrealisedPnl": fmt(book.crossed_pnl),
        "usdtUnrealisedPnl": fmt(book.crossed_pnl),
        "btcUnrealizedPnl": fmt(q(book.crossed_pnl / btc)) if btc else "0",
        "effEquity": fmt(equity),
        "mmr": fmt(book.crossed_maintenance),
        "imr": fmt(book.crossed_initial),
        "mgnRatio": fmt(margin_ratio),
        "positionMgnRatio": fmt(margin_ratio),
        "assets": assets,
    }


def unified_positions(market: Market, account: SimAccount, category: str, now_ms: int) -> dict[str, Any]:
    rows = []
    for p in account.positions:
        if p.product_type != category.upper():
            continue
        pnl = market.pnl(p)
        liq = market.liquidation_price(account, p)
        rows.append(
            {
                "category": p.product_type,
                "symbol": p.symbol,
                "marginCoin": p.margin_coin,
                "holdMode": _pos_mode(account, p.product_type),
                "posSide": p.side,
                "marginMode": p.margin_mode,
                "positionBalance": fmt(p.margin),
                "available": fmt(p.size),
                "frozen": "0",
                "total": fmt(p.size),
                "leverage": fmt(p.leverage),
                "curRealisedPnl": "0",
                "avgPrice": fmt(p.entry),
                "positionStatus": "normal",
                "unrealisedPnl": fmt(pnl),
                "liquidationPrice": fmt(liq),
                "mmr": fmt(market.symbol(p.product_type, p.symbol).maintenance_rate),
                "profitRate": fmt(q(pnl / p.margin)) if p.margin else "0",
                "markPrice": fmt(market.mark(p)),
                "breakEvenPrice": "",
                "totalFunding": "0",
                "openFeeTotal": fmt(-p.fee),
                "closeFeeTotal": "0",
                "createdTime": str(p.opened_ms),
                "updatedTime": str(now_ms),
            }
        )
    return {"list": rows}
