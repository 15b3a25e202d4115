"""One writer per scope across processes: a lease that a second writer respects and that a
killed holder does not leave stale (no Spark: local paths need none)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oneid.control_files import ControlFiles
from oneid.errors import StageBusyError
from oneid.leases import acquire, is_stale, lease_path
from tests.support import small_config

HOLD = """
import sys, time
from oneid.control_files import ControlFiles
from oneid.errors import StageBusyError
from oneid.leases import acquire
files = ControlFiles(None, sys.argv[1])
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    lease = acquire(files, "identity", "run " + sys.argv[3], seconds=60)
except StageBusyError:
    print("busy", flush=True)
    sys.exit(0)
print("held", flush=True)
time.sleep(float(sys.argv[4]))
lease.release()
"""


def holder(root: Path, label: str, hold: float, start: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), str(start), label, str(hold)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path: Path) -> None:
    files = ControlFiles(None, str(tmp_path))
    lease = acquire(files, "identity", "identity run r1", seconds=60)
    with pytest.raises(StageBusyError) as raised:
        acquire(files, "identity", "identity run r2", seconds=60)
    message = str(raised.value)
    assert "\n" not in message
    assert f"identity run r1 (pid {os.getpid()}" in message
    key = re.search(r"or set ([\w.]+)\)", message).group(1)  # a key that --set takes
    assert small_config(tmp_path / "warehouse", f"{key}=5").pipeline.runs.wait_seconds == 5
    other = acquire(files, "ingest.crm", "ingest crm", seconds=60)  # another scope is free
    lease.release()
    other.release()
    acquire(files, "identity", "identity run r2", seconds=60).release()


def test_a_waiting_writer_gets_the_lease_when_the_holder_finishes(tmp_path: Path) -> None:
    process = holder(tmp_path, "r1", hold=1.5)
    assert process.stdout.readline().strip() == "held"
    files = ControlFiles(None, str(tmp_path))
    with pytest.raises(StageBusyError):
        acquire(files, "identity", "r2", seconds=60)
    lease = acquire(files, "identity", "r2", seconds=60, wait=30)
    assert process.wait(30) == 0
    lease.release()


def test_a_killed_holder_is_taken_over_at_once(tmp_path: Path) -> None:
    process = holder(tmp_path, "r1", hold=300)
    assert process.stdout.readline().strip() == "held"
    files = ControlFiles(None, str(tmp_path))
    assert not is_stale(files, "identity")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    assert is_stale(files, "identity")
    started = time.monotonic()
    lease = acquire(files, "identity", "r2", seconds=60)
    assert time.monotonic() - started < 5
    lease.release()


def test_an_expired_lease_of_another_host_is_taken_over(tmp_path: Path) -> None:
    files = ControlFiles(None, str(tmp_path))
    path = Path(lease_path(files, "tags"))
    path.parent.mkdir(parents=True)
    far = {"scope": "tags", "label": "tags 2025-06-30", "host": "elsewhere", "pid": 1}
    far["pid_started"] = None
    path.write_text(json.dumps({**far, "token": "t", "acquired": 0.0, "expires": time.time() + 60}))
    with pytest.raises(StageBusyError, match="pid 1 on elsewhere"):
        acquire(files, "tags", "tags 2025-07-01", seconds=60)
    path.write_text(json.dumps({**far, "token": "t", "acquired": 0.0, "expires": time.time() - 1}))
    acquire(files, "tags", "tags 2025-07-01", seconds=60).release()


def test_an_abandoned_lease_of_this_process_is_taken_over(tmp_path: Path) -> None:
    files = ControlFiles(None, str(tmp_path))
    acquire(files, "audiences", "audiences d1", seconds=60).abandon()  # its run was killed
    acquire(files, "audiences", "audiences d1", seconds=60).release()


def test_the_lease_is_renewed_while_its_run_lives(tmp_path: Path) -> None:
    files = ControlFiles(None, str(tmp_path))
    lease = acquire(files, "publish", "publish d1", seconds=6)
    first = json.loads(files.read(lease_path(files, "publish")))["expires"]
    time.sleep(2.5)
    renewed = json.loads(files.read(lease_path(files, "publish")))["expires"]
    lease.release()
    assert renewed > first
    assert files.read(lease_path(files, "publish")) is None


def test_an_expired_lease_is_not_renewed(tmp_path: Path) -> None:
    """Past its expiry another run may have taken the lease: renewing would overwrite theirs."""
    from oneid.leases import Holder, Lease

    files = ControlFiles(None, str(tmp_path))
    now = time.time()
    holder = Holder("tags", "tags d1", "h", 1, None, "mine", now - 10, now - 1)
    path = lease_path(files, "tags")
    assert files.create_new(path, json.dumps(holder.__dict__))
    lease = Lease(files, holder, seconds=0.3)
    lease._thread.join(timeout=5)
    assert not lease._thread.is_alive()
    assert json.loads(files.read(path))["expires"] == now - 1
    lease.abandon()


class FlakyFiles(ControlFiles):
    """Local control files whose first ``failures`` reads fail, and that can hide the lease
    once (as if its holder released it between two looks)."""

    def __init__(self, root: Path, failures: int = 0, vanish_once: bool = False) -> None:
        super().__init__(None, str(root))
        self.failures = failures
        self.vanish_once = vanish_once

    def read(self, path: str) -> str | None:
        if self.failures:
            self.failures -= 1
            raise OSError("the name node is failing over")
        if self.vanish_once:
            self.vanish_once = False
            os.remove(path)
            return None
        return super().read(path)


def test_a_renewal_that_fails_is_tried_again(tmp_path: Path) -> None:
    files = FlakyFiles(tmp_path)
    lease = acquire(files, "publish", "publish d1", seconds=1.5)
    first = json.loads(files.read(lease_path(files, "publish")))["expires"]
    files.failures = 1  # the first renewal's read
    time.sleep(1.3)  # two ticks of 0.5 s
    assert lease._thread.is_alive()
    assert json.loads(files.read(lease_path(files, "publish")))["expires"] > first
    lease.release()


def test_a_lease_released_between_two_looks_is_taken_not_reported_busy(tmp_path: Path) -> None:
    files = FlakyFiles(tmp_path)
    first = acquire(files, "identity", "identity d1", seconds=60)  # held by a live run
    files.vanish_once = True  # the second run's look finds it gone (released meanwhile)
    lease = acquire(files, "identity", "identity d2", seconds=60)
    assert lease.holder.label == "identity d2"
    first.abandon()
    lease.release()


def test_of_many_processes_starting_at_once_exactly_one_holds(tmp_path: Path) -> None:
    start = time.time() + 2.0
    processes = [holder(tmp_path, f"r{i}", hold=3, start=start) for i in range(8)]
    said = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert sorted(said) == ["busy"] * 7 + ["held"]


def test_a_live_lease_moved_aside_by_a_late_judge_is_put_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs judged one stale lease; the first took it over. The second's rename then moves
    the *new* holder's file: it must put it back, not report a take-over."""
    from oneid.leases import _take_over

    files = ControlFiles(None, str(tmp_path))
    lease = acquire(files, "tags", "tags d2", seconds=60)
    path = lease_path(files, "tags")
    live = files.read(path)
    with caplog.at_level("WARNING", logger="oneid.leases"):
        _take_over(files, path, seen='{"token": "the stale one"}', holder=None)
    assert files.read(path) == live
    assert files.names(str(Path(path).parent)) == ["tags.json"]
    assert "taking over" not in caplog.text
    lease.release()
