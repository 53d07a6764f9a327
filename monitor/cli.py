"""The `bitget-monitor` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web

from monitor import __version__
from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.errors import ConfigError, StorageError, reason

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


EXIT_NOT_STORED = 3  # `once`: the cycle or its messages could not be stored


def _database_options(parser: argparse.ArgumentParser, *, inner: bool = False) -> None:
    """-c and --database-url for commands that read only database_url. Their subcommands take them too
    (`silence list -c FILE`); there the default is SUPPRESS, so an option given before the subcommand stays."""
    parser.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS if inner else Path("accounts.toml"),
                        help="the accounts file (only its database_url is read)")  # fmt: skip
    parser.add_argument("--database-url", default=argparse.SUPPRESS if inner else None,
                        help="overrides the file and MONITOR_DATABASE_URL")  # fmt: skip


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

    once = sub.add_parser("once", help="one monitor cycle (for cron and timers): read, store, judge, send")
    once.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    once.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    once.add_argument("--no-migrate", action="store_true", help="do not upgrade the database schema on start")
    once.add_argument("--dry-run", action="store_true",
                      help="read and judge this one cycle and print it; store and send nothing")  # fmt: skip
    once.add_argument("--deliver-timeout", default="30s",
                      help="how long to deliver due messages before exiting (the rest stay queued)")  # fmt: skip

    db = sub.add_parser("db", help="database migrations")
    _database_options(db)
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    current = db_sub.add_parser("current", help="show the schema revision of the database")
    downgrade = db_sub.add_parser("downgrade", help="migrate back to a revision ('base' empties it)")
    downgrade.add_argument("revision")
    for inner in (upgrade, current, downgrade):
        _database_options(inner, inner=True)

    test = sub.add_parser("notify-test", help="send a test message to every channel (or one) and report each URL")
    test.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    test.add_argument("--channel", help="only this channel")

    silence = sub.add_parser("silence", help="quiet matching alerts for a while (they are still tracked)")
    _database_options(silence)
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="add a silence")
    add.add_argument("--account", required=True, help='account name or glob ("*" for all, "portfolio")')
    add.add_argument("--rule", help="only this rule (glob)")
    add.add_argument("--symbol", help="only alerts about this symbol, e.g. BTCUSDT")
    add.add_argument("--for", dest="duration", required=True, help='how long, e.g. "2h" or "30m"')
    add.add_argument("--reason", required=True, help="why: shown with the silence")
    add.add_argument("--force", action="store_true", help="add it even if --account matches no configured account")
    listing = silence_sub.add_parser("list", help="show active silences")
    listing.add_argument("--all", action="store_true", help="also ended and removed ones")
    remove = silence_sub.add_parser("remove", help="end a silence now")
    remove.add_argument("id", type=int)
    for inner in (add, listing, remove):
        _database_options(inner, inner=True)

    report = sub.add_parser("report", help="print a report of the stored data (a [[reports]] one, or every account)")
    report.add_argument("-c", "--config", default="accounts.toml", type=Path, help="the accounts file")
    report.add_argument("--since", default="24h", help='the period, back from now, e.g. "24h" or "7d"')
    report.add_argument("--json", action="store_true", help="print JSON (decimals as strings) instead of text")
    report.add_argument("name", nargs="?", help="a [[reports]] name: its accounts and time zone")

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
        "silence": cmd_silence, "report": cmd_report, "demo": cmd_demo, "simulate": cmd_simulate,
    }  # fmt: skip
    try:
        return commands[args.command](args)
    except ConfigError as exc:  # e.g. an unsupported database URL, from whichever command meets it first
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


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
    service = Service(args.config, config, SystemClock(), migrate=not args.no_migrate)
    with _holding(config) as held:
        return until_signalled(service.run) if held else EXIT_CONFIG


@contextlib.contextmanager
def _holding(config: Config) -> Iterator[bool]:
    """This process's hold on a SQLite database (no other `run` or `once` may poll into it meanwhile). Yields
    False, having said why, when another process holds it."""
    from monitor.store.lock import DatabaseBusy, hold

    try:
        lock = hold(config.monitor.database_url.reveal(), SystemClock().now(), config.monitor.database_display)
    except DatabaseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        yield False
        return
    except OSError as exc:  # the folder is missing or read-only: the database itself will say so too
        logging.getLogger("monitor").warning("cannot lock database %s (%s): a second process on it would not be "
                                             "noticed", config.monitor.database_display, exc.strerror)  # fmt: skip
        lock = None
    try:
        yield True
    finally:
        if lock is not None:
            lock.release()


def cmd_once(args: argparse.Namespace) -> int:
    from monitor.config.values import duration
    from monitor.report import alerts_json, outcome_alerts, outcomes_json, outcomes_table
    from monitor.service import Service

    try:
        deliver_timeout = duration(args.deliver_timeout).total_seconds()
    except ValueError as exc:
        print(f"error: --deliver-timeout: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    service = Service(args.config, config, SystemClock(), migrate=not args.no_migrate)
    if args.dry_run:
        result = asyncio.run(service.once(dry_run=True))
        alerts = outcome_alerts(config, result.outcomes)
    else:
        with _holding(config) as held:
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


def cmd_notify_test(args: argparse.Namespace) -> int:
    from monitor.alerts.delivery import deliver
    from monitor.alerts.messages import messages_for

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
            unknown = None if args.force else _unmatched_account(args.config, args.account)
            if unknown is not None:
                print(f"error: {unknown}", file=sys.stderr)
                return EXIT_FAILED
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
    except StorageError as exc:
        print(f"error: database: {reason(exc)} (is the schema current? `bitget-monitor db upgrade`)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """The report of the last --since, from what `run` or `once` stored; the same figures a scheduled one sends."""
    from monitor.config.values import duration
    from monitor.reports.render import render_report
    from monitor.store.repository import Store

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        since = duration(args.since)
    except ValueError as exc:
        print(f"error: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(config.monitor.database_url.reveal())
    try:
        print(render_report(config, store, SystemClock().now(), since=since, report=args.name, as_json=args.json))
    except KeyError as exc:
        print(f"error: {exc.args[0]} in {args.config}", file=sys.stderr)
        return EXIT_CONFIG
    except StorageError as exc:
        print(f"error: database: {reason(exc)} (is the schema current? `bitget-monitor db upgrade`)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


def _unmatched_account(path: Path, pattern: str) -> str | None:
    """Why a silence's --account glob is probably a typo: it matches no account of the file (`portfolio`
    names portfolio alerts). Only the accounts' names are read, so their secrets need not be set."""
    import fnmatch
    import tomllib

    if fnmatch.fnmatchcase("portfolio", pattern):
        return None
    try:
        with path.open("rb") as f:
            accounts = tomllib.load(f).get("accounts", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return f"--account {pattern!r}: cannot read the account names of {path} ({exc}); pass --force to add it anyway"
    names = [a["name"] for a in accounts if isinstance(a, dict) and isinstance(a.get("name"), str)]
    if any(fnmatch.fnmatchcase(name, pattern) for name in names):
        return None
    listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") or "none"
    return (f"--account {pattern!r} matches no account in {path} (accounts: {listed}); the silence would quiet "
            "nothing. Pass --force to add it anyway (for an account not configured yet)")  # fmt: skip


def cmd_db(args: argparse.Namespace) -> int:
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
    except StorageError as exc:
        print(f"error: database {shown}: {reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    head = migrations.head()
    state = "up to date" if revision == head else f"behind (newest is {head}; run `bitget-monitor db upgrade`)"
    print(f"database {shown}: revision {revision or 'none (empty)'}, {state}")
    return EXIT_OK


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
            f"simulator listening on {url} with {len(world.accounts)} accounts"
            + (f"; accounts file: {args.write_accounts}" if args.write_accounts else ""),
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    return until_signalled(serve)
