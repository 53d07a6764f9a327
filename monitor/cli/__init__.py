"""The `bitget-monitor` command line: `main` parses the arguments and runs one command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from monitor.cli.common import EXIT_CONFIG
from monitor.cli.database import cmd_db, cmd_notify_test, cmd_report, cmd_silence
from monitor.cli.monitoring import cmd_check, cmd_demo, cmd_once, cmd_run, cmd_simulate
from monitor.cli.parser import build_parser
from monitor.errors import ConfigError

__all__ = ["build_parser", "main"]


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
