"""Which process did something, and whether it is gone: one answer for every owner record
(run folders' ``_owner.json``, leases).

A pid alone is not enough: after a reboot or a long time the pid is another process's. Linux
gives each process's start time (``/proc/<pid>/stat``); a record carries it, so a reused pid is
told apart. A process on another host cannot be checked at all: callers fall back on time
(a folder's age, a lease's expiry).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` (clock ticks since boot), None where /proc has no answer."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def gone_on_this_host(host: str, pid: int, pid_started: int | None) -> bool | None:
    """Whether the process is certainly gone; None when it ran on another host (cannot tell)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    if pid_started is None:
        return False
    started = process_start(pid)
    return started is not None and started != pid_started
