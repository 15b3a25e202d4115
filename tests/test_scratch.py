"""Run folders are swept only when their owner is certainly gone; a live run's are never touched."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
from pathlib import Path

import pytest

from oneid.errors import ConfigError
from oneid.scratch import (
    OWNER_FILE,
    LocalFolders,
    Owner,
    is_gone,
    private_root,
    sweep,
    this_process,
)
from tests.support import dead_pid

DAY = 86400.0


def test_owner_rules():
    me = this_process()
    assert not is_gone(me, 10 * DAY, DAY)  # alive, however old
    assert is_gone(dataclasses.replace(me, pid=dead_pid()), 0.0, DAY)
    if me.pid_started is not None:  # Linux: a reused pid is another process
        assert is_gone(dataclasses.replace(me, pid_started=me.pid_started - 1), 0.0, DAY)
    elsewhere = dataclasses.replace(me, host="another-host")
    assert not is_gone(elsewhere, DAY / 2, DAY)
    assert is_gone(elsewhere, 2 * DAY, DAY)
    assert not is_gone(None, DAY / 2, DAY)  # no marker: only by age
    assert is_gone(None, 2 * DAY, DAY)


def test_owner_marker_round_trip():
    me = this_process()
    assert Owner.from_json(me.to_json()) == me
    assert Owner.from_json("{not json") is None
    assert Owner.from_json('{"host": "h"}') is None


def test_sweep_removes_dead_and_stale_folders_only(tmp_path):
    folders = LocalFolders(str(tmp_path))
    me = this_process()
    folders.create("alive", me)
    folders.create("dead", dataclasses.replace(me, pid=dead_pid()))
    folders.create("other-host-young", dataclasses.replace(me, host="elsewhere"))
    old = dataclasses.replace(me, host="elsewhere", created=time.time() - 3 * DAY)
    folders.create("other-host-old", old)
    legacy_old, legacy_young = "a" * 32, "b" * 32  # older versions' <uuid> (no marker)
    for name, age in ((legacy_old, 3 * DAY), (legacy_young, 0.0), ("not-ours", 3 * DAY)):
        (tmp_path / name / "0f3c").mkdir(parents=True)
        stamp = time.time() - age
        os.utime(tmp_path / name, (stamp, stamp))

    removed = sweep(folders, DAY, unmarked=re.compile(r"[0-9a-f]{32}"))

    assert set(removed) == {legacy_old, "dead", "other-host-old"}
    assert {p.name for p in tmp_path.iterdir()} == {
        legacy_young,
        "alive",
        "not-ours",  # no marker, not a name of ours: never touched, however old
        "other-host-young",
    }
    assert sweep(LocalFolders(str(tmp_path / "missing")), DAY) == []


def test_run_folders_and_root_are_private(tmp_path):
    root = Path(private_root(str(tmp_path / "scratch")))
    folder = Path(LocalFolders(str(root)).create("run", this_process()))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert Owner.from_json((folder / OWNER_FILE).read_text()).pid == os.getpid()
    root.chmod(0o755)
    private_root(str(root))  # an existing root of ours is made private again
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_a_scratch_root_of_another_user_is_refused(tmp_path):
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, 12345, 12345)
    with pytest.raises(ConfigError, match=r"scratch_root .* belongs to another user"):
        private_root(str(root))
