"""`make run`: the monitor on ./accounts.toml, or, without one, against the built-in Bitget simulator."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MONITOR = [sys.executable, "-m", "monitor"]


def main() -> int:
    config = Path("accounts.toml")
    if config.exists():
        return subprocess.call([*MONITOR, "run", "-c", str(config)])
    print("no accounts.toml here: running against the built-in Bitget simulator (Ctrl-C stops)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bitget-monitor-") as tmp:
        accounts = Path(tmp) / "accounts.toml"
        sim = subprocess.Popen(
            [*MONITOR, "simulate", "--port", "0", "--accounts", "12", "--write-accounts", str(accounts)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sim.stdout is not None
            print(sim.stdout.readline().strip(), flush=True)
            text = accounts.read_text().replace(
                "[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{tmp}/monitor.db"\n', 1
            )
            accounts.write_text(text)
            monitor = subprocess.Popen([*MONITOR, "run", "-c", str(accounts)])
            try:
                return monitor.wait()
            except KeyboardInterrupt:  # the terminal sent SIGINT to both; wait for a clean stop
                return monitor.wait(timeout=15)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
