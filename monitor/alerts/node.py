"""This process as claims and leases name it (host, pid and a random part), and whether the owner of a claim is
provably dead."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path


def node_name() -> str:
    """This process, as claims and leases name it: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def dead(node: str) -> bool:
    """Whether a claim's owner is provably dead: a process of this host that no longer runs (or a previous
    process with this very pid, as a container's restarted main process has). Other hosts cannot be told."""
    host, _, rest = node.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:  # killed but not yet reaped: a zombie sends nothing
        return stat.read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False
