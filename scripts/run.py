"""`make run`: the monitor against accounts.toml, or against the built-in simulator when there is none."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

MONITOR = [sys.executable, "-m", "monitor"]


def main() -> int:
    config = Path("accounts.toml")
    if config.exists():
        return subprocess.call([*MONITOR, "check", "-c", str(config)])
    print("no accounts.toml here: running against the built-in Bitget simulator", flush=True)
    with tempfile.TemporaryDirectory(prefix="bitget-sim-") as tmp:
        accounts = Path(tmp) / "accounts.toml"
        sim = subprocess.Popen(
            [*MONITOR, "simulate", "--port", "0", "--accounts", "12", "--write-accounts", str(accounts)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sim.stdout is not None
            print(sim.stdout.readline().strip(), flush=True)
            return subprocess.call([*MONITOR, "check", "-c", str(accounts)])
        finally:
            sim.terminate()
            sim.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
