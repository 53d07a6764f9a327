"""The commands that read accounts: check, run, once, demo and the simulator."""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp
from aiohttp import web

from monitor.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_NOT_STORED, EXIT_OK, holding, load, until_signalled
from monitor.clock import SystemClock
from monitor.config import Config
from monitor.errors import StorageError, reason
from monitor.numbers import counted


def cmd_check(args: argparse.Namespace) -> int:
    from monitor.check import check_accounts, render_table

    config = load(args.config)
    if config is None:
        return EXIT_CONFIG

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            report = await check_accounts(config, session, SystemClock())
        print(render_table(report))
        return EXIT_OK if report.ok else EXIT_FAILED

    accounts = asyncio.run(run())
    usable, database = _check_database(config)
    print(f"database {config.monitor.database_display}: {database}")
    return accounts if usable else EXIT_FAILED


def _check_database(config: Config) -> tuple[bool, str]:
    """Whether `run` can use the database, and what to say of it (`run` upgrades the schema)."""
    from monitor.store import migrations
    from monitor.store.engine import missing_folder, sqlite_file

    url = config.monitor.database_url.reveal()
    if (folder := missing_folder(url)) is not None:
        return False, f"FAILED: the folder {folder} does not exist (create it, or point database_url elsewhere)"
    if (file := sqlite_file(url)) is not None and not file.exists():
        return True, "not created yet (`run` creates it)"  # check itself leaves no file behind
    try:
        revision = migrations.current(url)
    except StorageError as exc:
        return False, f"FAILED: {reason(exc)}"
    head = migrations.head()
    return True, "ok" if revision == head else f"ok; schema {revision or 'empty'}, `run` upgrades it to {head}"


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.service import Service
    from web.app import is_loopback

    config = load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.port is not None:  # `make run PORT=...`: the host stays the file's
        from dataclasses import replace

        config = replace(config, web=replace(config.web, listen=(config.web.listen[0], args.port)))
    host, port = config.web.listen
    if not is_loopback(host) and config.web.token is None and not args.allow_public_without_auth:
        print(f"error: {args.config}: [web] listen = {host}:{port} is not a loopback address and [web] has no token: "
              "anyone who reaches it would see every account (set token = \"${MONITOR_WEB_TOKEN}\", listen on "
              "127.0.0.1, or pass --allow-public-without-auth)", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    from monitor.store.engine import missing_folder

    if (folder := missing_folder(config.monitor.database_url.reveal())) is not None:
        print(f"error: {args.config}: [monitor] database_url: the folder {folder} does not exist, so nothing could "
              "be stored and, without a stored alert state, no alert would be sent (create it, or point database_url "
              "elsewhere)", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    service = Service(args.config, config, SystemClock(), migrate=not args.no_migrate)
    with holding(config) as held:
        return until_signalled(service.run) if held else EXIT_CONFIG


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.config.values import duration
    from monitor.report import alerts_json, outcome_alerts, outcomes_json, outcomes_table
    from monitor.service import Service

    try:
        deliver_timeout = duration(args.deliver_timeout).total_seconds()
    except ValueError as exc:
        print(f"error: --deliver-timeout: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = load(args.config)
    if config is None:
        return EXIT_CONFIG
    service = Service(args.config, config, SystemClock(), migrate=not args.no_migrate)
    if args.dry_run:
        result = asyncio.run(service.once(dry_run=True))
        alerts = outcome_alerts(config, result.outcomes)
    else:
        with holding(config) as held:
            if not held:
                return EXIT_CONFIG
            result = asyncio.run(service.once(deliver_timeout))
        # Without the database there is no lifecycle to judge through; what the rules say about this one read
        # is still worth seeing (a position near liquidation does not wait for the database).
        alerts = alerts_json(config, result.alerts) if result.error is None else outcome_alerts(config, result.outcomes)
    outcomes = result.outcomes
    print(outcomes_json(outcomes, alerts) if args.json else outcomes_table(outcomes, alerts))
    if result.error is not None:
        print(f"error: database {config.monitor.database_display}: {result.error}; this cycle is not (all) stored, "
              "nothing more was sent", file=sys.stderr)  # fmt: skip
        return EXIT_NOT_STORED
    if not args.dry_run:
        print(f"{result.sent} messages sent, {result.queued} queued", file=sys.stderr)
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import demo

    return until_signalled(lambda stop: demo(args.port, args.accounts, args.seed, stop))


def cmd_simulate(args: argparse.Namespace) -> int:
    from monitor.simulator.app import simulator_app
    from monitor.simulator.generate import generate_world, write_accounts_file
    from monitor.simulator.server import Simulator
    from monitor.simulator.world import ScenarioError, load_scenario

    try:
        world = load_scenario(args.scenario, args.seed) if args.scenario else generate_world(args.accounts, args.seed)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.volatility is not None:
        world.market.volatility = args.volatility
    sim = Simulator(world, limits=not args.no_limits, ip_per_minute=args.ip_limit, lockout=args.lockout, tick=args.tick)

    async def serve(stop: asyncio.Event) -> None:
        runner = web.AppRunner(simulator_app(sim), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{args.host}:{port}"
        if args.write_accounts:
            write_accounts_file(world, args.write_accounts, url)
        print(
            f"simulator listening on {url} with {counted(len(world.accounts), 'account')}"
            + (f"; accounts file: {args.write_accounts}" if args.write_accounts else ""),
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    return until_signalled(serve)
