"""Control files (leases, the run journal) on a real HDFS: the same promises as on local disk."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from oneid.control_files import ControlFiles
from oneid.errors import StageBusyError
from oneid.leases import acquire, lease_path

pytestmark = pytest.mark.slow


def _rounds_until(enough: Callable[[], bool], seconds: float = 60) -> Iterator[int]:
    """1, 2, 3 ... until ``enough()`` or ``seconds`` have passed: the test's two threads share
    the GIL and the name node, and on a busy machine one may run alone for a while."""
    deadline = time.monotonic() + seconds
    done = 0
    while not enough() and time.monotonic() < deadline:
        done += 1
        yield done


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
    errors: list[Exception] = []

    def create_and_delete() -> None:
        try:
            while not stop.is_set():
                files.create_new(path, "held")
                files.delete(path)
        except Exception as error:  # reported by the test
            errors.append(error)

    churn = threading.Thread(target=create_and_delete)
    churn.start()
    read: list[str | None] = []
    try:  # at least 300 reads, and on until both moments were seen
        for _ in _rounds_until(lambda: len(read) >= 300 and set(read) == {None, "held"}):
            read.append(files.read(path))
    finally:
        stop.set()
        churn.join()
    assert errors == []
    assert set(read) == {None, "held"}  # both moments were seen


def test_paths_without_a_host_take_the_default_file_system(spark, hdfs_url: str) -> None:
    """``hdfs:///oneid/...`` as in conf/cluster.yaml: the name node is ``fs.defaultFS``.

    A cluster's Hadoop conf names it from the start. Here it is set for this test only, on a
    client made for it: Hadoop caches one client per name node, made with the conf of its
    first user (which, earlier in the session, did not name this default)."""
    jvm = spark.sparkContext._jvm
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    # the cached client, made with a conf whose default file system is the local one
    jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI(hdfs_url), jvm.org.apache.hadoop.conf.Configuration(hadoop)
    )
    default = hadoop.get("fs.defaultFS")
    hadoop.set("fs.defaultFS", hdfs_url)
    hadoop.setBoolean("fs.hdfs.impl.disable.cache", True)
    try:
        files = ControlFiles(spark, f"hdfs:///hostless-{uuid.uuid4().hex[:8]}")
        path = files.path("_oneid", "runs", "a.json")
        assert files.create_new(path, "one")
        files.replace(path, "two")
        assert files.read(path) == "two"
        assert files.names(files.path("_oneid", "runs")) == ["a.json"]
        files.delete(files.root, recursive=True)
    finally:
        hadoop.set("fs.defaultFS", default)
        hadoop.unset("fs.hdfs.impl.disable.cache")


def test_a_replaced_file_never_disappears(files: ControlFiles) -> None:
    """A lease's renewal replaces its file; in no moment of it may another run find the file
    missing (it would create it, hold the lease beside the live run and roll that run back)."""
    path = files.path("_oneid", "leases", "identity.json")
    assert files.create_new(path, "holder 0")
    stop = threading.Event()
    seen_missing: list[str] = []
    errors: list[Exception] = []

    reads = [0]

    def compete() -> None:  # a read is quicker than a create: it probes more moments
        try:
            while not stop.is_set():
                reads[0] += 1
                if files.read(path) is None:
                    seen_missing.append("read nothing")
        except Exception as error:  # reported by the test
            errors.append(error)

    competitor = threading.Thread(target=compete)
    competitor.start()
    renewals: list[int] = []
    try:  # at least 59 renewals, and on until the competitor has read 200 times
        for renewal in _rounds_until(lambda: len(renewals) >= 59 and reads[0] > 200):
            files.replace(path, f"holder {renewal}")
            renewals.append(renewal)
    finally:
        stop.set()
        competitor.join()
    assert errors == []
    assert reads[0] > 200  # the renewals were watched throughout
    assert seen_missing == []
    assert files.read(path) == f"holder {renewals[-1]}"


def test_a_lease_on_hdfs_is_held_renewed_and_released(files: ControlFiles) -> None:
    lease = acquire(files, "identity", "identity d1", seconds=3)
    path = lease_path(files, "identity")
    first = json.loads(files.read(path))["expires"]
    with pytest.raises(StageBusyError, match="identity is being written by identity d1"):
        acquire(files, "identity", "identity d1 (second)", seconds=3)
    time.sleep(2.5)  # a renewal every second
    assert json.loads(files.read(path))["expires"] > first
    lease.release()
    assert files.read(path) is None
