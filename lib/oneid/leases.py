"""One writer per scope: a lease file that a killed run cannot leave stale for long.

A scope is what one writer may change at a time: a stage (``identity``, ``tags`` ...) or one
ingest source (``ingest.crm``), so different sources still ingest in parallel. The lease is a
file ``<warehouse>/_oneid/leases/<scope>.json`` created atomically; it names its holder (host,
process, run) and an expiry that a heartbeat thread pushes forward while the run lives.

A lease is *stale*, and may be taken over, when it has expired, when its holder ran on this
host and that process is gone (a ``kill -9`` is noticed at once), or when its holder is this
process and that run has ended without releasing it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from oneid.control_files import ControlFiles
from oneid.errors import StageBusyError
from oneid.processes import gone_on_this_host, process_start

logger = logging.getLogger(__name__)

_LIVE: set[str] = set()
"""Tokens of the leases this process holds now."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, until when (epoch seconds)."""

    scope: str
    label: str
    host: str
    pid: int
    pid_started: int | None
    """The holder's start time (:func:`oneid.processes.process_start`), to tell a reused pid."""
    token: str
    acquired: float
    expires: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired))
        until = time.strftime("%H:%M:%S", time.localtime(self.expires))
        return f"{self.label} (pid {self.pid} on {self.host}, since {since}, lease until {until})"


class Lease:
    """A held lease; renewed by a daemon thread until :meth:`release` or :meth:`abandon`."""

    def __init__(self, files: ControlFiles, holder: Holder, seconds: float) -> None:
        self._files = files
        self.holder = holder
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{holder.scope}")
        self._thread.daemon = True
        self._thread.start()

    @property
    def token(self) -> str:
        return self.holder.token

    def release(self) -> None:
        """Stop renewing and remove the lease file (if it is still ours)."""
        self.abandon()
        # a renewal under way would write the file again after we removed it
        self._thread.join(timeout=60)
        if self.held():
            self._files.delete(lease_path(self._files, self.holder.scope))

    def held(self) -> bool:
        """Whether the lease file still names this lease (no other run took it over)."""
        current = _parse(self._files.read(lease_path(self._files, self.holder.scope)))
        return current is not None and current.token == self.token

    def abandon(self) -> None:
        """Stop renewing and forget the lease without removing it (as a killed run would)."""
        self._stop.set()
        _LIVE.discard(self.token)

    def _renew(self) -> None:
        path = lease_path(self._files, self.holder.scope)
        expires = self.holder.expires
        while not self._stop.wait(self._seconds / 3):
            if time.time() >= expires:
                # another run may have judged it stale and taken it: writing now could put
                # our lease over theirs
                logger.error("lease %s: expired before it could be renewed", self.holder.scope)
                return
            try:
                if not self.held():
                    logger.error("lease %s: taken over by another run", self.holder.scope)
                    return
                renewed = time.time() + self._seconds
                holder = Holder(**{**asdict(self.holder), "expires": renewed})
                self._files.replace(path, json.dumps(asdict(holder)))
                expires = renewed
            except Exception:  # a file system hiccup: try again at the next tick
                logger.warning("lease %s: renewal failed", self.holder.scope, exc_info=True)


def lease_path(files: ControlFiles, scope: str) -> str:
    return files.path("_oneid", "leases", f"{scope}.json")


def acquire(
    files: ControlFiles, scope: str, label: str, seconds: float, wait: float = 0.0
) -> Lease:
    """The lease of ``scope``, waiting up to ``wait`` seconds for a live holder to finish.

    Raises :class:`StageBusyError` (one line naming the holder) when it is still held.
    """
    path = lease_path(files, scope)
    deadline = time.monotonic() + wait
    while True:
        now = time.time()
        token = uuid.uuid4().hex
        pid = os.getpid()
        host = socket.gethostname()
        holder = Holder(scope, label, host, pid, process_start(pid), token, now, now + seconds)
        _LIVE.add(token)
        if files.create_new(path, json.dumps(asdict(holder))):
            return Lease(files, holder, seconds)
        _LIVE.discard(token)
        text = files.read(path)
        if text is None:
            continue  # released between our attempt and our look: try again at once
        current = _parse(text)
        if current is None or _stale(current):
            _take_over(files, path, text, current)
            continue
        if time.monotonic() >= deadline:
            shown = current.describe() if current else "another run"
            raise StageBusyError(
                f"{scope} is being written by {shown}; wait for it to finish (or set "
                "runs.wait_seconds); a killed run's lease is taken over automatically"
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def is_stale(files: ControlFiles, scope: str) -> bool:
    """Whether nobody live holds the lease of ``scope`` (free, expired, or holder gone)."""
    text = files.read(lease_path(files, scope))
    current = _parse(text)
    return text is None or current is None or _stale(current)


def describe_lease(files: ControlFiles, scope: str) -> str | None:
    """Who holds the lease of ``scope`` (``… (stale)`` when it may be taken over); None: free."""
    text = files.read(lease_path(files, scope))
    if text is None:
        return None
    current = _parse(text)
    if current is None:
        return "an unreadable lease (stale)"
    return current.describe() + (" (stale)" if _stale(current) else "")


def _take_over(files: ControlFiles, path: str, seen: str, holder: Holder | None) -> None:
    """Move the stale lease file aside so that one :func:`acquire` can create it anew.

    Two runs may both judge it stale; only one rename of the file they judged succeeds. If the
    file moved aside is not the one judged (a new holder got in between), it is put back.
    """
    aside = f"{path}.stale-{uuid.uuid4().hex}"
    if not files.rename(path, aside):
        return
    if files.read(aside) != seen:  # not the judged file: a live holder's, put it back
        if not files.rename(aside, path):
            logger.error("lease %s: could not restore a live lease moved aside", path)
        return
    logger.warning("lease %s: taking over from %s", path, holder.describe() if holder else "?")
    files.delete(aside)


def _stale(holder: Holder) -> bool:
    if holder.expires < time.time():
        return True
    if holder.pid == os.getpid() and holder.host == socket.gethostname():
        return holder.token not in _LIVE
    return bool(gone_on_this_host(holder.host, holder.pid, holder.pid_started))


def _parse(text: str | None) -> Holder | None:
    if not text:
        return None
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return None  # not a lease we wrote (files appear whole): treated as stale
