"""The simulator as an aiohttp application: Bitget's own routes (monitor.simulator.server) and the control API
(monitor.simulator.control), with the price ticker running while the application does."""

from __future__ import annotations

from aiohttp import web

from monitor.simulator.control import add_control_routes
from monitor.simulator.server import Simulator


def simulator_app(sim: Simulator) -> web.Application:
    app = web.Application()
    add_control_routes(app, sim)
    app.router.add_route("*", "/{tail:.*}", sim.handle)
    app.cleanup_ctx.append(sim.ticker)
    return app
