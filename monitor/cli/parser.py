"""The `bitget-monitor` argument parser: every command and option, with its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor import __version__


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
    add.add_argument("--for", dest="duration", required=True, help='how long, e.g. "2h", "30m" or 90 (seconds)')
    add.add_argument("--reason", required=True, help="why: shown with the silence")
    add.add_argument("--force", action="store_true", help="add it even if --account or --rule matches none configured")
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
