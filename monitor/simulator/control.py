"""The simulator's control API under /_sim/ (JSON in, JSON out). Only the simulator serves it.

GET    /_sim/state                  accounts, positions with marks and liquidation prices
GET    /_sim/stats                  requests, 429s, rejections and bad signatures per account
POST   /_sim/price                  {"symbol", "product_type"?, "mark"}: set a mark, liquidate
POST   /_sim/step                   {"steps"?}: move prices as the ticker would
POST   /_sim/close                  {"account", "symbol", "side"?, "product_type"?}: close positions at the mark
POST   /_sim/accounts/{name}        {"revoked"?, "passphrase"?, "ips"?, "permissions"?, "unified"?, "demo"?}
POST   /_sim/faults                 {"kind", "count"?, "account"?, "endpoint"?, "delay"?, "field"?, "value"?,
                                     "size"?} (kinds: monitor/simulator/faults.py)
DELETE /_sim/faults                 clear every pending fault
POST   /_sim/clock                  {"offset_ms"}: run Bitget's clock ahead (or behind) of ours
POST   /_sim/limits                 {"enabled"?, "ip_per_minute"?, "lockout"?}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from monitor.simulator import faults
from monitor.simulator.render import fmt
from monitor.simulator.server import Simulator


def add_control_routes(app: web.Application, sim: Simulator) -> None:
    from monitor.simulator.faults import FAULT_KINDS, Fault

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json() if request.can_read_body else {}
        except ValueError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    def account(request: web.Request) -> Any:
        name = request.match_info["name"]
        if name not in sim.world.accounts:
            raise web.HTTPNotFound(text=f"no simulated account {name!r}")
        return sim.world.accounts[name]

    async def state(request: web.Request) -> web.Response:
        sim.liquidate()  # marks may have been moved directly (the demo does): never show a position past its price
        market = sim.world.market
        accounts = []
        for a in sim.world.accounts.values():
            positions = [
                {
                    "product_type": p.product_type,
                    "symbol": p.symbol,
                    "side": p.side,
                    "margin_mode": p.margin_mode,
                    "size": fmt(p.size),
                    "entry": fmt(p.entry),
                    "mark": fmt(market.mark(p)),
                    "liquidation_price": fmt(market.liquidation_price(a, p)),
                }
                for p in a.positions
            ]
            accounts.append(
                {
                    "name": a.name,
                    "uid": a.uid,
                    "key_type": "hmac" if a.secret else "rsa",
                    "unified": a.unified,
                    "demo": a.demo,
                    "products": list(a.products),
                    "revoked": a.revoked,
                    "liquidations": a.liquidations,
                    "positions": positions,
                }
            )
        marks = {f"{pt}:{s.name}": fmt(s.mark) for (pt, _), s in market.symbols.items()}
        return web.json_response({"server_time": sim.server_ms(), "marks": marks, "accounts": accounts})

    async def stats(request: web.Request) -> web.Response:
        def nested(counter: Any) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for (outer, inner), n in counter.items():
                out.setdefault(outer, {})[inner] = n
            return out

        return web.json_response(
            {
                "requests": nested(sim.requests),
                "rate_limited": nested(sim.rate_limited),
                "rejected": nested(sim.rejected),
                "bad_signatures": nested(sim.bad_signatures),
                "totals": {
                    "requests": sum(sim.requests.values()),
                    "rate_limited": sum(sim.rate_limited.values()),
                    "rejected": sum(sim.rejected.values()),
                    "ip_lockouts": sim.ip_limiter.lockouts,
                    "liquidations": sum(a.liquidations for a in sim.world.accounts.values()),
                },
            }
        )

    async def price(request: web.Request) -> web.Response:
        data = await body(request)
        matches = [
            s
            for (pt, name), s in sim.world.market.symbols.items()
            if name == data.get("symbol") and pt == str(data.get("product_type", pt)).upper()
        ]
        if not matches:
            raise web.HTTPNotFound(text=f"no symbol {data.get('symbol')!r}")
        try:
            mark = Decimal(str(data["mark"]))
        except (KeyError, InvalidOperation):
            raise web.HTTPBadRequest(text='"mark" must be a decimal') from None
        for s in matches:
            s.mark = mark
        sim.liquidate()
        return web.json_response({"ok": True})

    async def close(request: web.Request) -> web.Response:
        """The trader closes positions at the current mark: the PnL is realised into the wallet."""
        data = await body(request)
        a = sim.world.accounts.get(str(data.get("account")))
        if a is None:
            raise web.HTTPNotFound(text=f"no simulated account {data.get('account')!r}")
        product_type = str(data.get("product_type", "")).upper()
        closing = [
            p
            for p in a.positions
            if p.symbol == data.get("symbol")
            and data.get("side") in (None, p.side)
            and product_type in ("", p.product_type)
        ]
        if not closing:
            raise web.HTTPNotFound(text=f"{a.name} holds no such position")
        for p in closing:
            pnl = sim.world.market.pnl(p)
            a.positions.remove(p)
            key = (p.product_type, p.margin_coin)
            a.wallets[key] = a.wallets.get(key, Decimal(0)) + pnl
        return web.json_response({"ok": True, "closed": len(closing)})

    async def step(request: web.Request) -> web.Response:
        for _ in range(int((await body(request)).get("steps", 1))):
            sim.step()
        return web.json_response({"ok": True})

    async def patch_account(request: web.Request) -> web.Response:
        a = account(request)
        data = await body(request)
        for key, kind in _PATCHABLE.items():
            if key not in data:
                continue
            value: Any = data[key]
            if not isinstance(value, kind) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                raise web.HTTPBadRequest(text=f"{key} must be a {'list of strings' if kind is list else kind.__name__}")
            setattr(a, key, value)
        return web.json_response({"ok": True})

    async def add_fault(request: web.Request) -> web.Response:
        data = await body(request)
        kind = str(data.get("kind"))
        if kind not in FAULT_KINDS:
            raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(FAULT_KINDS)}")
        if data.get("account") is not None and data["account"] not in sim.world.accounts:
            raise web.HTTPNotFound(text=f"no simulated account {data['account']!r}")
        if kind == "field" and (not isinstance(data.get("field"), str) or "value" not in data):
            raise web.HTTPBadRequest(text='a "field" fault needs "field" (a JSON name) and "value" (any JSON)')
        sim.faults.append(
            Fault(
                kind=kind,
                remaining=int(data.get("count", 1)),
                account=data.get("account"),
                endpoint=data.get("endpoint"),
                delay=float(data.get("delay", 0)),
                field=data.get("field"),
                value=data.get("value"),
                size=int(data.get("size", faults.HUGE_BODY)),
            )
        )
        return web.json_response({"ok": True, "pending": len(sim.faults)})

    async def clear_faults(request: web.Request) -> web.Response:
        sim.faults.clear()
        return web.json_response({"ok": True})

    async def clock(request: web.Request) -> web.Response:
        sim.world.clock_offset_ms = int((await body(request)).get("offset_ms", 0))
        return web.json_response({"ok": True})

    async def limits(request: web.Request) -> web.Response:
        data = await body(request)
        sim.limits = bool(data.get("enabled", sim.limits))
        sim.ip_limiter.per_minute = int(data.get("ip_per_minute", sim.ip_limiter.per_minute))
        sim.ip_limiter.lockout = float(data.get("lockout", sim.ip_limiter.lockout))
        return web.json_response({"ok": True})

    def checked(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except (ValueError, TypeError) as exc:  # a number that is not one, and the like
                raise web.HTTPBadRequest(text=f"bad request: {exc}") from None

        return wrapper

    app.router.add_get("/_sim/state", state)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/price", checked(price))
    app.router.add_post("/_sim/step", checked(step))
    app.router.add_post("/_sim/close", checked(close))
    app.router.add_post("/_sim/accounts/{name}", checked(patch_account))
    app.router.add_post("/_sim/faults", checked(add_fault))
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_post("/_sim/clock", checked(clock))
    app.router.add_post("/_sim/limits", checked(limits))


Handler = Callable[[web.Request], Awaitable[web.Response]]
_PATCHABLE: dict[str, type] = {
    "revoked": bool, "passphrase": str, "ips": list, "permissions": list, "unified": bool, "demo": bool,
}  # fmt: skip
