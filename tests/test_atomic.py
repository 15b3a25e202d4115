"""The run journal without Spark: what a committed, a failed and a killed run leave, and the
versions readers are pinned to (tables here are bare Delta log folders; nothing is restored
because no table moves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneid.atomic import atomic_run, complete_versions, journal, status, unfinished
from oneid.conf import OneIdConfig
from oneid.control_files import ControlFiles
from oneid.tables import PINS, table_path
from tests.support import small_config


class Killed(BaseException):
    pass


def commit_version(cfg: OneIdConfig, table: str, version: int) -> None:
    """What a Delta commit leaves that the journal reads: ``_delta_log/<version>.json``."""
    log = Path(table_path(cfg, table), "_delta_log")
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("{}")


def test_committed_failed_and_killed_runs(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    files = ControlFiles(None, str(tmp_path))
    commit_version(cfg, "gold.tags_rfm", 0)

    with atomic_run(None, cfg, "tags", "tags d1", ["gold.tags_rfm"]):  # type: ignore[arg-type]
        commit_version(cfg, "gold.tags_rfm", 1)
    assert complete_versions(files) == {"gold.tags_rfm": 1}

    with pytest.raises(ValueError), atomic_run(None, cfg, "tags", "tags d2", []):  # type: ignore[arg-type]
        raise ValueError("a failed run")
    with pytest.raises(Killed), atomic_run(None, cfg, "tags", "tags d3", ["gold.tags_rfm"]):  # type: ignore[arg-type]
        raise Killed
    assert [run.label for run in unfinished(files, "tags")] == ["tags d3"]
    assert complete_versions(files) == {"gold.tags_rfm": 1}  # as it started from

    [line] = [line for line in status(files) if line.startswith("tags:")]
    assert "last failed tags d2" in line and "unfinished tags d3" in line
    assert line.endswith("(stale)")

    with atomic_run(None, cfg, "audiences", "audiences d3", []):  # type: ignore[arg-type]
        assert PINS.get() == {"gold.tags_rfm": 1}  # another scope reads the complete run
    # ... and rolled the killed run back first, as its lease was stale
    assert unfinished(files, "tags") == []
    [line] = [line for line in status(files) if line.startswith("tags:")]
    assert line.startswith("tags: last rolled_back tags d3 at ") and line.endswith("; free")

    with atomic_run(None, cfg, "tags", "tags d3", ["gold.tags_rfm"]):  # type: ignore[arg-type]
        commit_version(cfg, "gold.tags_rfm", 2)
    assert complete_versions(files) == {"gold.tags_rfm": 2}
    states = [(entry.label, entry.state) for entry in journal(files, "tags")]
    assert states == [
        ("tags d1", "started"),
        ("tags d1", "committed"),
        ("tags d2", "started"),
        ("tags d2", "failed"),
        ("tags d3", "started"),
        ("tags d3", "rolled_back"),
        ("tags d3", "started"),
        ("tags d3", "committed"),
    ]


def test_a_run_whose_lease_was_taken_over_does_not_commit(tmp_path: Path) -> None:
    """The lease expired unrenewed (a stalled driver) and another run took it: the stalled run
    must not record its writes as committed, nor remove the new holder's lease."""
    import json

    from oneid.errors import LeaseLostError
    from oneid.leases import lease_path

    cfg = small_config(tmp_path)
    files = ControlFiles(None, str(tmp_path))
    path = lease_path(files, "tags")
    with (
        pytest.raises(LeaseLostError, match="taken over"),
        atomic_run(None, cfg, "tags", "tags d1", []),  # type: ignore[arg-type]
    ):
        taker = {**json.loads(files.read(path)), "token": "the taker", "label": "tags d1"}
        files.replace(path, json.dumps(taker))
    assert json.loads(files.read(path))["token"] == "the taker"
    assert [entry.state for entry in journal(files, "tags")] == ["started"]


def test_entries_keep_their_order_when_the_clock_does_not_move(tmp_path: Path, monkeypatch):
    """A run ending and the next starting in one millisecond (a fast or loaded machine)."""
    import oneid.atomic

    monkeypatch.setattr(oneid.atomic.time, "time", lambda: 1_700_000_000.0)
    cfg = small_config(tmp_path)
    files = ControlFiles(None, str(tmp_path))
    for day in ("d1", "d2", "d3"):
        with atomic_run(None, cfg, "tags", f"tags {day}", []):  # type: ignore[arg-type]
            pass
    assert [(entry.label, entry.state) for entry in journal(files, "tags")] == [
        (f"tags {day}", state) for day in ("d1", "d2", "d3") for state in ("started", "committed")
    ]
