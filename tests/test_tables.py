"""``merge_keys``: the one way incremental runs write a scoped set of rows into a table; a real
Delta write conflict is retried; a read lists its version's files once."""

from __future__ import annotations

import threading
import time

import pytest
from delta.exceptions import ConcurrentAppendException
from pyspark.sql import functions as F

from oneid.tables import (
    append,
    merge_keys,
    overwrite,
    read_table,
    table_path,
    table_version,
    with_retries,
)
from tests.support import small_config

SCHEMA = "k long, name string, counts map<string,long>"
BEFORE = [
    (1, "one", {"a": 1}),
    (2, "two", {"a": 1, "b": 2}),
    (3, "three", {"a": 1, "b": 2}),
    (4, "four", None),
    (5, "five", {"c": 3}),
]


def _table(spark, tmp_path):
    cfg = small_config(tmp_path)
    overwrite(spark.createDataFrame(BEFORE, SCHEMA), cfg, "identity.t", deletion_vectors=True)
    return cfg


def _rows(spark, cfg):
    return {
        r.k: (r.name, dict(r.counts) if r.counts is not None else None)
        for r in read_table(spark, cfg, "identity.t").collect()
    }


@pytest.mark.parametrize("skip_unchanged", [False, True])
def test_rows_in_scope_become_the_new_rows_and_the_rest_stay(spark, tmp_path, skip_unchanged):
    cfg = _table(spark, tmp_path)
    rows = spark.createDataFrame(
        [
            (2, "TWO", {"a": 1, "b": 2}),  # a value differs: updated
            (3, "three", {"b": 2, "a": 1}),  # the same map built in another order: unchanged
            (6, "six", {"d": 4}),  # new: inserted
        ],
        SCHEMA,
    )
    scope = spark.createDataFrame([(2,), (3,), (4,)], "k long")  # 4 is in scope, not in rows
    merge_keys(rows, scope, cfg, "identity.t", ["k"], skip_unchanged=skip_unchanged)
    assert _rows(spark, cfg) == {
        1: ("one", {"a": 1}),
        2: ("TWO", {"a": 1, "b": 2}),
        3: ("three", {"a": 1, "b": 2}),
        5: ("five", {"c": 3}),
        6: ("six", {"d": 4}),
    }


def test_skip_unchanged_makes_no_commit_when_nothing_differs(spark, tmp_path):
    cfg = _table(spark, tmp_path)
    version = table_version(spark, cfg, "identity.t")
    rows = spark.createDataFrame(BEFORE[1:4], SCHEMA)
    scope = spark.createDataFrame([(2,), (3,), (4,)], "k long")
    merge_keys(rows, scope, cfg, "identity.t", ["k"], skip_unchanged=True)
    assert table_version(spark, cfg, "identity.t") == version
    assert _rows(spark, cfg) == {k: (name, counts) for k, name, counts in BEFORE}

    # a NULL that becomes a value is a change (NULL-safe comparison)
    rows = spark.createDataFrame([(4, "four", {"x": 0})], SCHEMA)
    merge_keys(rows, rows.select("k"), cfg, "identity.t", ["k"], skip_unchanged=True)
    assert table_version(spark, cfg, "identity.t") == version + 1
    assert _rows(spark, cfg)[4] == ("four", {"x": 0})


def test_a_real_write_conflict_arrives_as_its_delta_class_and_is_retried(spark, tmp_path):
    """A replaceWhere of a day that gets a concurrent append, committed while the replace is
    writing: Delta refuses the replace's commit (ConcurrentAppendException); the retry
    replaces the day, appended row included."""
    cfg = small_config(tmp_path)
    schema = "dt string, n long"
    overwrite(spark.createDataFrame([("d1", 1)], schema), cfg, "gold.c", partition_by=("dt",))
    started, appended = tmp_path / "started", tmp_path / "appended"

    @F.udf("long")
    def after_the_append(n):  # the first attempt, mid-write, waits for the append's commit
        if not appended.exists():
            started.touch()
            deadline = time.monotonic() + 300
            while not appended.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return n

    rows = spark.createDataFrame([("d1", 10)], schema).withColumn("n", after_the_append("n"))
    writer = rows.write.format("delta").mode("overwrite").option("replaceWhere", "dt = 'd1'")
    raised: list[Exception] = []

    def replace() -> None:
        try:
            writer.save(table_path(cfg, "gold.c"))
        except Exception as exc:
            raised.append(exc)
            raise

    thread = threading.Thread(target=with_retries, args=(replace, "replace d1"))
    thread.start()
    deadline = time.monotonic() + 300
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    append(spark.createDataFrame([("d1", 2)], schema), cfg, "gold.c")
    appended.touch()
    thread.join(timeout=300)

    assert len(raised) == 1, raised  # one conflict, then the retry commits
    assert isinstance(raised[0], ConcurrentAppendException), raised
    assert [tuple(r) for r in read_table(spark, cfg, "gold.c").collect()] == [("d1", 10)]


def test_the_log_gives_versions_and_commit_facts_as_delta_history_does(spark, tmp_path):
    """``oneid.delta_log`` reads the log folder (no Spark job) and agrees with
    ``DeltaTable.history`` on the version, operation, metrics and user metadata."""
    from delta.tables import DeltaTable

    from oneid.delta_log import commit_info, latest_version

    cfg = small_config(tmp_path)
    path = table_path(cfg, "identity.t")
    assert latest_version(spark, path) == -1
    _table(spark, tmp_path)
    rows = spark.createDataFrame([(9, "nine", None)], SCHEMA)
    rows.write.format("delta").mode("append").option("userMetadata", "run 7").save(path)
    assert latest_version(spark, path) == table_version(spark, cfg, "identity.t") == 1
    for version in (0, 1):
        [row] = DeltaTable.forPath(spark, path).history().where(f"version = {version}").collect()
        info = commit_info(spark, path, version)
        assert info["operation"] == row.operation
        assert info.get("userMetadata") == row.userMetadata
        assert info["operationMetrics"] == dict(row.operationMetrics)
    assert commit_info(spark, path, 1)["operationMetrics"]["numOutputRows"] == "1"
    assert commit_info(spark, path, 2) is None


def _delta_listings(spark, action) -> int:
    """How many of the Spark jobs ``action`` starts are Delta's listings of a table's files."""
    context = spark.sparkContext._jsc.sc()
    first = context.dagScheduler().nextJobId()
    action()
    store = context.statusStore()
    descriptions = [
        store.job(j).description() for j in range(first, context.dagScheduler().nextJobId())
    ]
    return sum(d.isDefined() and "Filtering files" in str(d.get()) for d in descriptions)


def test_a_read_lists_its_version_once_and_keeps_it(spark, tmp_path):
    """``read_table`` fixes the version when it is called and lists its files then: queries
    over the DataFrame start no listing of their own, a later commit is not in it, deletion
    vectors apply; a pinned version reads as pinned; ``table_schema`` starts no job; a missing
    table or version raises Delta's reader's error."""
    from pyspark.errors import AnalysisException

    from oneid.tables import PINS, table_schema

    def keys(frame) -> list[int]:
        return sorted(row.k for row in frame.collect())

    cfg = _table(spark, tmp_path)
    merge_keys(  # key 4 deleted through a deletion vector
        spark.createDataFrame([], SCHEMA),
        spark.createDataFrame([(4,)], "k long"),
        cfg,
        "identity.t",
        ["k"],
    )
    frame = read_table(spark, cfg, "identity.t")
    assert _delta_listings(spark, lambda: (frame.count(), frame.where("k > 1").collect())) == 0
    append(spark.createDataFrame([(7, "seven", None)], SCHEMA), cfg, "identity.t")
    assert keys(frame) == [1, 2, 3, 5]
    assert keys(read_table(spark, cfg, "identity.t")) == [1, 2, 3, 5, 7]
    scheduler = spark.sparkContext._jsc.sc().dagScheduler()
    jobs = scheduler.nextJobId()
    assert table_schema(spark, cfg, "identity.t").fieldNames() == ["k", "name", "counts"]
    assert scheduler.nextJobId() == jobs

    token = PINS.set({"identity.t": 0})
    try:
        assert keys(read_table(spark, cfg, "identity.t")) == [1, 2, 3, 4, 5]
    finally:
        PINS.reset(token)
    with pytest.raises(AnalysisException, match=r"\[PATH_NOT_FOUND\]"):
        read_table(spark, cfg, "identity.absent")
    token = PINS.set({"identity.t": 9})  # no such version
    try:
        with pytest.raises(AnalysisException, match=r"\[DELTA_VERSION_NOT_FOUND\]"):
            read_table(spark, cfg, "identity.t")
    finally:
        PINS.reset(token)
