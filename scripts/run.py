"""`make run`: the monitor on ./accounts.toml, or, without one, `bitget-monitor demo` (the built-in simulator,
the monitor and its status page in one process)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    monitor = [sys.executable, "-m", "monitor"]
    if Path("accounts.toml").exists():
        command = [*monitor, "run", "-c", "accounts.toml"]
    else:
        print("no accounts.toml here: starting the demo against the built-in Bitget simulator", flush=True)
        command = [*monitor, "demo"]
    os.execv(command[0], command)  # noqa: S606 (our own interpreter; Ctrl-C goes straight to the monitor)


if __name__ == "__main__":
    raise SystemExit(main())
