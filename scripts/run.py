"""`make run`: the monitor on ./accounts.toml, or, without one, `bitget-monitor demo` (the built-in simulator,
the monitor and its status page in one process). `make run PORT=8090` (`--port 8090`) serves the status page on
that port instead of [web] listen's (or the demo's 8080)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, help="the status page's port")
    args = parser.parse_args(argv)
    port = [] if args.port is None else ["--port", str(args.port)]
    monitor = [sys.executable, "-m", "monitor"]
    if Path("accounts.toml").exists():
        command = [*monitor, "run", "-c", "accounts.toml", *port]
    else:
        print("no accounts.toml here: starting the demo against the built-in Bitget simulator", flush=True)
        command = [*monitor, "demo", *port]
    os.execv(command[0], command)  # noqa: S606 (our own interpreter; Ctrl-C goes straight to the monitor)


if __name__ == "__main__":
    raise SystemExit(main())
