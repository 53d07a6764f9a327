"""The simulator's HTTP face: Bitget's endpoints, checked and limited as Bitget does, plus `/_sim/`.

Checks run in Bitget's order: path (v1 decommissioned, unknown), the per-IP budget, then for signed
endpoints key, signature presence, timestamp, passphrase, signature, IP binding, environment, permission
(those in gate.py), the per-account endpoint budget and the account mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from monitor.clock import Clock, SystemClock, epoch_ms
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.codes import CODES
from monitor.simulator import faults, prices, render
from monitor.simulator.faults import Fault
from monitor.simulator.gate import Gate, Rejection
from monitor.simulator.limits import IpLimiter, SlidingWindow
from monitor.simulator.market import SimAccount
from monitor.simulator.world import World

log = logging.getLogger(__name__)

_V1 = re.compile(r"^/api/[a-z-]+/v1/")
_CLASSIC_ONLY = {
    ep.SPOT_ASSETS,
    ep.MIX_ACCOUNTS,
    ep.MIX_ACCOUNT,
    ep.ALL_POSITIONS,
    ep.SINGLE_POSITION,
    ep.ALL_ACCOUNT_BALANCE,
}
_UNIFIED_ONLY = {ep.UNIFIED_ASSETS, ep.UNIFIED_POSITIONS, ep.UNIFIED_SETTINGS}


def _remain(remaining: int | None) -> dict[str, str]:
    return {"x-mbx-used-remain-limit": str(remaining)} if remaining is not None else {}


class Simulator:
    def __init__(
        self,
        world: World,
        *,
        clock: Clock | None = None,
        limits: bool = True,
        ip_per_minute: int = 6000,
        lockout: float = 300.0,
        ip_window: float = 60.0,
        tick: float = 1.0,
    ) -> None:
        self.world = world
        self.clock = clock or SystemClock()
        self.limits = limits
        self.tick = tick
        self.ip_limiter = IpLimiter(ip_per_minute, lockout, ip_window)
        self.windows = SlidingWindow(1.0)
        self.faults: list[Fault] = []
        self.requests: Counter[tuple[str, str]] = Counter()  # (account or "-", path)
        self.rate_limited: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()  # (account or "-", code)
        self.bad_signatures: Counter[tuple[str, str]] = Counter()  # (account, path)
        self.gate = Gate(world)
        self._responses = 0

    async def ticker(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._tick_forever()) if self.tick > 0 else None
        yield
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.step()

    def step(self) -> None:
        """Move prices one step and liquidate what the new marks break."""
        self.world.market.step()
        self.liquidate()

    def liquidate(self) -> None:
        for account in self.world.accounts.values():
            self.liquidate_account(account)

    def liquidate_account(self, account: SimAccount) -> None:
        """Liquidate what the current marks break in one account, classic or unified alike. Also run before
        any of its data is served, so no position is ever shown past its liquidation price, however its mark
        got there (the demo's drift moves marks directly, between ticks)."""
        for p in self.world.market.liquidate(account):
            log.info("simulator: %s %s %s liquidated in %s", p.symbol, p.side, p.margin_mode, account.name)

    def server_ms(self) -> int:
        return epoch_ms(self.clock.now()) + self.world.clock_offset_ms

    # -- request handling --------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        ip = request.remote or ""
        now = self.clock.monotonic()
        if _V1.match(path):
            return self.error("30032")
        if self.limits and not self.ip_limiter.admit(ip, now):
            self.rate_limited[("-", path)] += 1
            return self.error("429", remaining=0)
        endpoint = ep.BY_PATH.get(path)
        if endpoint is None or request.method != "GET":
            return self.error("40404")
        remaining = None
        if endpoint.scope is ep.Scope.IP and self.limits:
            remaining = self.windows.admit((ip, path), endpoint.per_second, now)
            if remaining is None:
                self.rate_limited[("-", path)] += 1
                return self.error("429", remaining=0)
        account = None
        if endpoint.signed:
            try:
                account = self.gate.authenticate(request, self.server_ms())
            except Rejection as r:
                name = r.account.name if r.account else "-"
                self.rejected[(name, r.code)] += 1
                if r.code == "40009" and r.account:
                    self.bad_signatures[(name, path)] += 1
                return self.error(r.code)
        name = account.name if account else "-"
        self.requests[(name, path)] += 1
        fault = self.take_fault(name, path)
        if fault is not None:
            if fault.kind == "429":
                self.rate_limited[(name, path)] += 1
            response = await self.apply_fault(fault, request)
            if response is not None:
                return response
        if account is not None:
            if self.limits:
                remaining = self.windows.admit((account.uid, path), endpoint.per_second, now)
                if remaining is None:
                    self.rate_limited[(name, path)] += 1
                    return self.error("429", remaining=0)
            if account.unified and endpoint in _CLASSIC_ONLY:
                return self.error("40085", remaining)
            if not account.unified and endpoint in _UNIFIED_ONLY:
                return self.error("40084", remaining)
        try:
            data = self.data(endpoint, account, request.query)
        except Rejection as r:
            return self.error(r.code, remaining)
        if fault is not None and faults.rewrites(fault):
            data = faults.rewrite(fault, data)
        return self.ok(data, remaining)

    def data(self, endpoint: ep.Endpoint, account: SimAccount | None, query: Any) -> Any:
        market, now = self.world.market, self.server_ms()
        product_type = str(query.get("productType", "")).upper()
        if endpoint is ep.SERVER_TIME:
            return {"serverTime": str(now)}
        if endpoint is ep.SYMBOL_PRICE:
            return prices.symbol_price(market, product_type, query.get("symbol", ""), now)
        if endpoint is ep.TICKERS:
            return prices.tickers(market, self._product(product_type), now)
        if endpoint is ep.SPOT_TICKERS:
            return prices.spot_tickers(market, now, query.get("symbol") or None)
        assert account is not None
        self.liquidate_account(account)
        if endpoint is ep.ACCOUNT_INFO:
            return render.account_info(account)
        if endpoint is ep.SPOT_ASSETS:
            return render.spot_assets(account, now)
        if endpoint is ep.MIX_ACCOUNTS:
            return render.futures_accounts(market, account, self._product(product_type))
        if endpoint is ep.MIX_ACCOUNT:
            coin = query.get("marginCoin", "").upper()
            if (self._product(product_type), coin) not in account.wallets:
                raise Rejection("40034")
            return render.futures_account(market, account, product_type, coin)
        if endpoint in (ep.ALL_POSITIONS, ep.SINGLE_POSITION):
            rows = render.positions(market, account, self._product(product_type), now)
            symbol, coin = query.get("symbol"), query.get("marginCoin")
            if endpoint is ep.SINGLE_POSITION and not symbol:
                raise Rejection("40034")
            return [r for r in rows if symbol in (None, r["symbol"]) and coin in (None, r["marginCoin"])]
        if endpoint is ep.ALL_ACCOUNT_BALANCE:
            return render.all_account_balance(market, account)
        if endpoint is ep.UNIFIED_SETTINGS:
            return render.unified_settings(account)
        if endpoint is ep.UNIFIED_ASSETS:
            return render.unified_assets(market, account)
        if endpoint is ep.UNIFIED_POSITIONS:
            return render.unified_positions(market, account, self._product(query.get("category", "").upper()), now)
        raise Rejection("40404")

    @staticmethod
    def _product(product_type: str) -> str:
        if product_type not in ep.FUTURES_PRODUCT_TYPES:
            raise Rejection("40034")
        return product_type

    # -- responses ---------------------------------------------------------------------------------------

    def envelope(self, code: str, msg: str, data: Any) -> dict[str, Any]:
        self._responses += 1
        now = self.server_ms()
        # requestTime is usually a number, sometimes a string: send both.
        return {"code": code, "msg": msg, "requestTime": str(now) if self._responses % 5 == 0 else now, "data": data}

    def ok(self, data: Any, remaining: int | None) -> web.Response:
        return web.json_response(self.envelope("00000", "success", data), headers=_remain(remaining))

    def error(self, code: str, remaining: int | None = None) -> web.Response:
        known = CODES.get(code)
        status, msg = (known.http_status, known.msg) if known else (400, "Parameter does not exist")
        return web.json_response(self.envelope(code, msg, None), status=status, headers=_remain(remaining))

    # -- faults ------------------------------------------------------------------------------------------

    def take_fault(self, account: str, path: str) -> Fault | None:
        for fault in self.faults:
            if not fault.takes(account, path):
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.remove(fault)
            return fault
        return None

    async def apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        """The faulty response, or None to carry on normally (after a delay, or to rewrite the answer)."""
        if faults.rewrites(fault):
            return None
        if fault.kind == "huge_body":
            return await faults.huge_body(request, self.envelope("00000", "success", None), fault.size)
        if fault.kind == "hostile_error":
            answer, status = faults.hostile_error()
            return web.json_response(answer, status=status)
        if fault.kind in ("timeout", "slow"):
            await asyncio.sleep(fault.delay or (60.0 if fault.kind == "timeout" else 2.0))
            return None
        if fault.kind in ("429", "40725", "45001"):
            return self.error(fault.kind, remaining=0 if fault.kind == "429" else None)
        if fault.kind == "500":
            return web.Response(
                status=500, text="<html><body>500 Internal Server Error</body></html>", content_type="text/html"
            )
        body = json.dumps(self.envelope("00000", "success", [{"symbol": "BTCUSDT"}])).encode()
        if fault.kind == "malformed":
            return web.Response(body=body[: len(body) // 2] + b"<html>", content_type="application/json")
        # truncated: promise the whole body, send half, drop the connection.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        with contextlib.suppress(ConnectionResetError):  # the client may be gone already (it timed out)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
