"""The `bitget-monitor` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from monitor import __version__
from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitget-monitor", description="Risk monitor for Bitget accounts.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate the accounts file and read every account once")
    check.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")

    run = sub.add_parser("run", help="poll every account continuously until SIGINT/SIGTERM")
    run.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    run.add_argument("--no-migrate", action="store_true", help="do not upgrade the database schema on start")
    run.add_argument("--allow-public-without-auth", action="store_true",
                     help="serve the status page on a non-loopback address without [web] token")  # fmt: skip
    run.add_argument("--port", type=int, help="serve the status page on this port instead of [web] listen's")

    once = sub.add_parser("once", help="read every account once, store it, print it")
    once.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    once.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    once.add_argument("--no-migrate", action="store_true", help="do not upgrade the database schema on start")

    db = sub.add_parser("db", help="database migrations")
    db.add_argument(
        "-c", "--config", default="accounts.toml", type=Path, help="the accounts file (only its database_url is read)"
    )
    db.add_argument("--database-url", help="overrides the file and MONITOR_DATABASE_URL")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate to the newest schema").add_argument(
        "revision", nargs="?", default="head"
    )
    db_sub.add_parser("current", help="show the schema revision of the database")
    db_sub.add_parser("downgrade", help="migrate back to a revision ('base' empties it)").add_argument("revision")

    test = sub.add_parser("notify-test", help="send a test message to every channel (or one) and report each URL")
    test.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    test.add_argument("--channel", help="only this channel")

    silence = sub.add_parser("silence", help="quiet matching alerts for a while (they are still tracked)")
    silence.add_argument(
        "-c", "--config", default="accounts.toml", type=Path, help="the accounts file (only its database_url is read)"
    )
    silence.add_argument("--database-url", help="overrides the file and MONITOR_DATABASE_URL")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="add a silence")
    add.add_argument("--account", required=True, help='account name or glob ("*" for all, "portfolio")')
    add.add_argument("--rule", help="only this rule (glob)")
    add.add_argument("--symbol", help="only alerts about this symbol, e.g. BTCUSDT")
    add.add_argument("--for", dest="duration", required=True, help='how long, e.g. "2h" or "30m"')
    add.add_argument("--reason", required=True, help="why: shown with the silence")
    listing = silence_sub.add_parser("list", help="show active silences")
    listing.add_argument("--all", action="store_true", help="also ended and removed ones")
    silence_sub.add_parser("remove", help="end a silence now").add_argument("id", type=int)

    demo = sub.add_parser("demo", help="the simulator, the monitor and its web page in one process")
    demo.add_argument("--port", type=int, default=8080, help="the status page's port (0: any free port)")
    demo.add_argument("--accounts", type=int, default=12, help="how many simulated accounts")
    demo.add_argument("--seed", type=int, default=1)

    sim = sub.add_parser("simulate", help="run the Bitget simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    sim.add_argument("--accounts", type=int, default=12, help="how many accounts to generate")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--scenario", type=Path, help="load this scenario file instead of generating accounts")
    sim.add_argument("--write-accounts", type=Path, help="write an accounts file for the monitor here")
    sim.add_argument("--tick", type=float, default=1.0, help="seconds between price moves; 0 freezes prices")
    sim.add_argument("--volatility", type=float, help="standard deviation of one tick's relative move")
    sim.add_argument("--no-limits", action="store_true", help="switch rate limits off")
    sim.add_argument("--ip-limit", type=int, default=6000, help="requests per minute per IP")
    sim.add_argument("--lockout", type=float, default=300.0, help="seconds an IP is blocked after tripping it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from monitor.alerts.delivery import mask_handlers

    mask_handlers(logging.getLogger())
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "check": cmd_check, "db": cmd_db, "run": cmd_run, "once": cmd_once, "notify-test": cmd_notify_test,
        "silence": cmd_silence, "demo": cmd_demo, "simulate": cmd_simulate,
    }  # fmt: skip
    return commands[args.command](args)


def until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `work` until SIGINT or SIGTERM sets its stop event; a ConfigError on the way is reported (exit 2)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    try:
        asyncio.run(run())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from monitor.check import check_accounts, render_table

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            report = await check_accounts(config, session, SystemClock())
        print(render_table(report))
        return EXIT_OK if report.ok else EXIT_FAILED

    return asyncio.run(run())


def _load(path: Path) -> Config | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    for warning in config.warnings:
        logging.getLogger("monitor").warning("%s", warning)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.service import Service
    from web.app import is_loopback

    config = _load(args.config)
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
    return until_signalled(Service(args.config, config, SystemClock(), migrate=not args.no_migrate).run)


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.report import outcome_alerts, outcomes_json, outcomes_table
    from monitor.service import Service

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    outcomes = asyncio.run(Service(args.config, config, SystemClock(), migrate=not args.no_migrate).once())
    print(outcomes_json(outcomes, outcome_alerts(config, outcomes)) if args.json else outcomes_table(outcomes))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED


def cmd_notify_test(args: argparse.Namespace) -> int:
    from monitor.alerts.delivery import deliver
    from monitor.alerts.engine import messages_for

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    channels = [c for c in config.channels.values() if args.channel in (None, c.name)]
    if not channels:
        known = ", ".join(config.channels) or "none"
        print(f"error: no channel {args.channel or ''} in {args.config} (channels: {known})".replace("  ", " "),
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    message = messages_for(config).test()
    ok = True
    for channel in channels:
        for result in deliver(channel, message, None):
            ok &= result.ok
            print(f"{result.shown}  {'ok' if result.ok else f'FAILED: {result.error}'}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_silence(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.config.loader import database_url
    from monitor.config.values import duration
    from monitor.store.repository import Store

    clock = SystemClock()
    try:
        store = Store(args.database_url or database_url(args.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.silence_command == "add":
            try:
                length = duration(args.duration)
            except ValueError as exc:
                print(f"error: --for: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            now = clock.now()
            id_ = store.alerts.add_silence(args.account, args.rule, args.symbol, now, now + length, args.reason)
            print(f"silence {id_} added until {now + length:%Y-%m-%d %H:%M} UTC")
        elif args.silence_command == "remove":
            if not store.alerts.remove_silence(args.id, clock.now()):
                print(f"error: no active silence {args.id}", file=sys.stderr)
                return EXIT_FAILED
            print(f"silence {args.id} removed")
        else:
            rows = [("ID", "ACCOUNT", "RULE", "SYMBOL", "UNTIL (UTC)", "STATE", "REASON")]
            now = clock.now()
            for x in store.alerts.silences(now, include_ended=args.all):
                state = "removed" if x.removed_at else ("active" if x.active(now) else "ended")
                rows.append((str(x.id), x.account, x.rule or "*", x.symbol or "*", f"{x.ends_at:%Y-%m-%d %H:%M}",
                             state, x.reason))  # fmt: skip
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: database: {reason} (is the schema current? `bitget-monitor db upgrade`)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.config.loader import database_url
    from monitor.config.model import mask_url_password
    from monitor.store import migrations

    try:
        url = args.database_url or database_url(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    shown = mask_url_password(url)
    try:
        if args.db_command == "upgrade":
            migrations.upgrade(url, args.revision)
        elif args.db_command == "downgrade":
            migrations.downgrade(url, args.revision)
        revision = migrations.current(url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: database {shown}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    head = migrations.head()
    state = "up to date" if revision == head else f"behind (newest is {head}; run `bitget-monitor db upgrade`)"
    print(f"database {shown}: revision {revision or 'none (empty)'}, {state}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import demo

    return until_signalled(lambda stop: demo(args.port, args.accounts, args.seed, stop))


def cmd_simulate(args: argparse.Namespace) -> int:
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
        runner = web.AppRunner(sim.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{args.host}:{port}"
        if args.write_accounts:
            write_accounts_file(world, args.write_accounts, url)
        print(
            f"simulator listening on {url} with {len(world.accounts)} accounts"
            + (f"; accounts file: {args.write_accounts}" if args.write_accounts else ""),
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    return until_signalled(serve)
