"""The commands on the database and the channels: db, silence, report, notify-test."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load
from monitor.clock import SystemClock
from monitor.errors import ConfigError, StorageError, reason


def cmd_notify_test(args: argparse.Namespace) -> int:
    from monitor.alerts.delivery import deliver
    from monitor.alerts.messages import messages_for

    config = load(args.config)
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
            if not args.reason.strip():
                print("error: --reason must say why (it is shown with the silence), got an empty one",
                      file=sys.stderr)  # fmt: skip
                return EXIT_CONFIG
            unknown = None if args.force else _unmatched(args.config, args.account, args.rule)
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
        _database_error(exc)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """The report of the last --since, from what `run` or `once` stored; the same figures a scheduled one sends."""
    from monitor.config.values import duration
    from monitor.reports.render import render_report
    from monitor.store.repository import Store

    config = load(args.config, credentials=False)  # it reads the database only: no key needs to be set here
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
        _database_error(exc)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK


def _unmatched(path: Path, account: str, rule: str | None) -> str | None:
    """Why a silence's --account or --rule glob is probably a typo: it matches no account of the file (`portfolio`
    names portfolio alerts), or no rule (the file's [[rules]], or the default rules when it has none). Only the
    names are read, so the accounts' secrets need not be set."""
    import fnmatch
    import tomllib

    from monitor.rules.model import DEFAULT_RULES

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return f"cannot read the account and rule names of {path} ({exc}); pass --force to add the silence anyway"
    accounts = ["portfolio", *_names(data.get("accounts"))]
    if not any(fnmatch.fnmatchcase(name, account) for name in accounts):
        return (f"--account {account!r} matches no account in {path} (accounts: {_listed(accounts[1:])}); the "
                "silence would quiet nothing. Pass --force to add it anyway (for an account not configured "
                "yet)")  # fmt: skip
    rules = _names(data["rules"]) if "rules" in data else [r.name for r in DEFAULT_RULES]
    if rule is not None and not any(fnmatch.fnmatchcase(name, rule) for name in rules):
        return (f"--rule {rule!r} matches no rule in {path} (rules: {_listed(rules)}); the silence would quiet "
                "nothing. Pass --force to add it anyway (for a rule not configured yet)")  # fmt: skip
    return None


def _names(tables: object) -> list[str]:
    """The `name`s of a TOML array of tables (what is not one is left for the loader to report)."""
    if not isinstance(tables, list):
        return []
    return [t["name"] for t in tables if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _listed(names: list[str]) -> str:
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") or "none"


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


def _database_error(exc: StorageError) -> None:
    print(f"error: database: {reason(exc)} (is the schema current? `bitget-monitor db upgrade`)", file=sys.stderr)
