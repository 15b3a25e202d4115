"""Control files (leases, the run journal) on a real HDFS: the same promises as on local disk."""

from __future__ import annotations

import threading
import uuid

import pytest

from oneid.control_files import ControlFiles
from oneid.leases import acquire, lease_path

pytestmark = pytest.mark.slow


@pytest.fixture
def files(spark, hdfs_url: str) -> ControlFiles:
    return ControlFiles(spark, f"{hdfs_url}/control-{uuid.uuid4().hex[:8]}")


def test_control_files_on_hdfs(files: ControlFiles) -> None:
    path = files.path("_oneid", "runs", "a.json")
    assert files.read(path) is None
    assert files.create_new(path, "one")
    assert not files.create_new(path, "two")
    assert files.read(path) == "one"
    files.replace(path, "三")
    assert files.read(path) == "三"
    assert files.names(files.path("_oneid", "runs")) == ["a.json"]
    assert files.rename(path, files.path("_oneid", "runs", "b.json"))
    assert not files.rename(path, files.path("_oneid", "runs", "c.json"))
    files.delete(files.path("_oneid"), recursive=True)
    assert files.names(files.path("_oneid", "runs")) == []


def test_a_file_deleted_while_it_is_read_reads_as_none(files: ControlFiles) -> None:
    """Another run releases a lease (deletes the file) while this one reads it: nothing."""
    path = files.path("_oneid", "leases", "tags.json")
    stop = threading.Event()

    def create_and_delete() -> None:
        while not stop.is_set():
            files.create_new(path, "held")
            files.delete(path)

    churn = threading.Thread(target=create_and_delete)
    churn.start()
    try:
        read = {files.read(path) for _ in range(300)}
    finally:
        stop.set()
        churn.join()
    assert read <= {None, "held"}


def test_a_replaced_file_never_disappears(files: ControlFiles) -> None:
    """A lease's renewal replaces its file; in no moment of it may another run find the file
    missing (it would create it, hold the lease beside the live run and roll that run back)."""
    path = files.path("_oneid", "leases", "identity.json")
    assert files.create_new(path, "holder 0")
    stop = threading.Event()
    seen_missing: list[str] = []
    errors: list[Exception] = []

    def compete() -> None:  # a read is quicker than a create: it probes more moments
        try:
            while not stop.is_set():
                if files.read(path) is None:
                    seen_missing.append("read nothing")
        except Exception as error:  # reported by the test
            errors.append(error)

    competitor = threading.Thread(target=compete)
    competitor.start()
    try:
        for renewal in range(1, 60):
            files.replace(path, f"holder {renewal}")
    finally:
        stop.set()
        competitor.join()
    assert errors == []
    assert seen_missing == []
    assert files.read(path) == "holder 59"


def test_a_lease_on_hdfs_is_held_renewed_and_released(files: ControlFiles) -> None:
    lease = acquire(files, "identity", "identity d1", seconds=60)
    with pytest.raises(Exception, match="identity is being written by identity d1"):
        acquire(files, "identity", "identity d1 (second)", seconds=60)
    lease.release()
    assert files.read(lease_path(files, "identity")) is None
