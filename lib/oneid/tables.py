"""Where every table lives, and the few ways OneID reads and writes them.

Tables are path-based Delta tables under the warehouse root: ``<zone>.<name>`` lives at
``<warehouse>/<zone>/<name>``. Names and columns are documented in ``docs/tables.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

# delta.exceptions.captured makes PySpark raise Delta's commit conflicts as the classes of
# delta.exceptions (importing delta.exceptions alone does not install the conversion)
import delta.exceptions.captured  # noqa: F401
from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, MapType, StructType

from oneid.checkpoint import counted
from oneid.conf import OneIdConfig
from oneid.delta_log import commit_info, latest_version
from oneid.delta_reads import delta_schema, read_delta
from oneid.errors import DataContractError
from oneid.session import warehouse_root

logger = logging.getLogger(__name__)
T = TypeVar("T")

DELETION_VECTORS = "delta.enableDeletionVectors"
CHANGE_FEED = "delta.enableChangeDataFeed"
ZONES = ("bronze", "quarantine", "silver", "identity", "gold", "audience", "ops", "realtime")
WRITE_CONFLICTS = (
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    MetadataChangedException,
    ConcurrentTransactionException,
    ProtocolChangedException,  # also two writers creating one table
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
)
"""Delta's optimistic-concurrency conflicts (siblings in Python, not one hierarchy)."""

PINS: ContextVar[dict[str, int]] = ContextVar("pins", default={})  # noqa: B039 (never mutated)
"""Table → version that :func:`read_table` reads (-1: none yet): other stages' tables as their
last complete run left them, set by :func:`oneid.atomic.atomic_run` for the run's block."""
COMMIT_HOOKS: list[Callable[[str], None]] = []
"""Called with the table's name after each commit this module makes, and with ``export <name>``
after publish installs an export (fault-injection tests)."""


def table_path(cfg: OneIdConfig, name: str) -> str:
    """Path of ``zone.table`` under the warehouse root."""
    zone, sep, table = name.partition(".")
    if not sep or zone not in ZONES or not table:
        raise ValueError(f"table name must be <zone>.<table> with zone in {ZONES}, got {name!r}")
    return f"{warehouse_root(cfg)}/{zone}/{table}"


def union_all(frames: list[DataFrame]) -> DataFrame:
    """Union by column name; columns missing on one side become NULL."""
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame, allowMissingColumns=True)
    return result


def table_exists(spark: SparkSession, cfg: OneIdConfig, name: str) -> bool:
    """Whether the table exists (as :data:`PINS` sees it: not while only a run in progress
    has created it)."""
    if PINS.get().get(name, 0) < 0:
        return False
    return DeltaTable.isDeltaTable(spark, table_path(cfg, name))


def read_table(spark: SparkSession, cfg: OneIdConfig, name: str) -> DataFrame:
    """The current version of a Delta table, or inside a run the version of the last committed
    run of the stage that writes it (:data:`PINS`). The version is fixed when this is called,
    its files listed once (:mod:`oneid.delta_reads`): a later commit is not in the DataFrame."""
    return read_delta(spark, table_path(cfg, name), _pinned_version(name))


def table_schema(spark: SparkSession, cfg: OneIdConfig, name: str) -> StructType:
    """The schema of the version :func:`read_table` reads, from the log (no file listing)."""
    return delta_schema(spark, table_path(cfg, name), _pinned_version(name))


def _pinned_version(name: str) -> int | None:
    """The version a run reads ``name`` at (:data:`PINS`), None outside a run (the latest)."""
    version = PINS.get().get(name)
    if version is not None and version < 0:
        raise DataContractError(f"{name}: no run that writes it has finished yet")
    return version


def read_version(spark: SparkSession, cfg: OneIdConfig, name: str) -> int:
    """The version :func:`read_table` reads: the pinned one inside a run, else the latest."""
    version = PINS.get().get(name)
    return table_version(spark, cfg, name) if version is None or version < 0 else version


def commit_id(spark: SparkSession, cfg: OneIdConfig, name: str, version: int) -> str | None:
    """The id Delta gave commit ``version`` of a table (its ``txnId``; no Spark job), or None
    when that commit is gone from the log. Commits of the same number in two tables (one
    deleted and written anew, a copy from elsewhere) have different ids."""
    info = commit_info(spark, table_path(cfg, name), version)
    return None if info is None else info.get("txnId")


def read_table_or_none(spark: SparkSession, cfg: OneIdConfig, name: str) -> DataFrame | None:
    return read_table(spark, cfg, name) if table_exists(spark, cfg, name) else None


def replace_where(
    df: DataFrame,
    cfg: OneIdConfig,
    name: str,
    condition: str,
    partition_by: tuple[str, ...] = (),
    user_metadata: str | None = None,
    change_feed: bool = False,
    new: bool = False,
) -> None:
    """Atomically replace the rows matching ``condition`` (e.g. one batch or one ``dt``).

    ``user_metadata`` tags the commit so a caller can find it in the table history;
    ``change_feed``: the table records its row changes (:data:`CHANGE_FEED`, set before the
    write, so this write is in the feed); ``new``: the caller knows that no row matches
    ``condition`` (a batch or date not written yet), so ``df`` is appended (:func:`append`).
    """
    if new:
        append(df, cfg, name, partition_by, user_metadata, change_feed)
        return
    path = table_path(cfg, name)
    writer = _writer(df, path, "overwrite", partition_by, user_metadata, change_feed)
    writer = writer.option("replaceWhere", condition)
    with_retries(lambda: writer.save(path), f"write {name} where {condition}")
    committed(name)


def append(
    df: DataFrame,
    cfg: OneIdConfig,
    name: str,
    partition_by: tuple[str, ...] = (),
    user_metadata: str | None = None,
    change_feed: bool = False,
) -> None:
    """Blind append (concurrent appends from other jobs do not conflict); ``user_metadata`` and
    ``change_feed`` as for :func:`replace_where`. An append does not read the table's state,
    which a replacement does to find the files it removes (~0.35 s a commit against ~1.7 s for
    a ``replaceWhere`` on a small local table)."""
    path = table_path(cfg, name)
    writer = _writer(df, path, "append", partition_by, user_metadata, change_feed)
    with_retries(lambda: writer.save(path), f"append to {name}")
    committed(name)


def _writer(
    df: DataFrame,
    path: str,
    mode: str,
    partition_by: tuple[str, ...],
    user_metadata: str | None,
    change_feed: bool,
) -> DataFrameWriter:
    writer = df.write.format("delta").mode(mode).option("mergeSchema", "true")
    if change_feed:
        writer = writer.option(CHANGE_FEED, "true")  # applies when the table is created
        if DeltaTable.isDeltaTable(df.sparkSession, path):
            enable_property(df.sparkSession, path, CHANGE_FEED)
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    return writer


def overwrite(
    df: DataFrame,
    cfg: OneIdConfig,
    name: str,
    partition_by: tuple[str, ...] = (),
    deletion_vectors: bool = False,
    change_feed: bool = False,
) -> None:
    """Replace a whole table in one Delta commit (readers see the old or the new version).

    ``deletion_vectors``: the table will take :func:`merge_keys`; ``change_feed``: its later
    commits record their row changes (:func:`change_feed`). Each is turned on once, at creation
    or by one extra commit (a table this write creates has them already).
    """
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    properties = [
        p for p, on in ((DELETION_VECTORS, deletion_vectors), (CHANGE_FEED, change_feed)) if on
    ]
    for prop in properties:
        writer = writer.option(prop, "true")  # applies when the table is created
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    path = table_path(cfg, name)
    existed = bool(properties) and DeltaTable.isDeltaTable(df.sparkSession, path)
    with_retries(lambda: writer.save(path), f"overwrite {name}")
    for prop in properties if existed else ():
        enable_property(df.sparkSession, path, prop)
    committed(name)


def merge_keys(
    rows: DataFrame,
    scope: DataFrame,
    cfg: OneIdConfig,
    name: str,
    keys: list[str],
    skip_unchanged: bool = False,
) -> None:
    """Make the rows of ``name`` whose ``keys`` are in ``scope`` equal ``rows``, in one MERGE.

    Keys of ``rows`` are inserted or, when a value differs, updated; keys of ``scope`` that
    ``rows`` lacks are deleted; rows outside ``scope`` are not touched. The table gets deletion
    vectors (``overwrite(..., deletion_vectors=True)``), so a MERGE writes the changed rows,
    not every file that holds one.

    ``skip_unchanged``: first read the table's rows for the keys of ``scope`` (hint it for a
    broadcast when small) and MERGE only the ``rows`` that differ from them, and the deletes (no
    commit when there are none). A matched row costs the MERGE a pass over its file even
    when nothing in it changes, so this pays when most of ``rows`` are usually unchanged (an
    extra scan of the table when they are not).
    """
    spark = rows.sparkSession
    kinds = {field.name: field.dataType for field in rows.schema.fields}
    values = [c for c in rows.columns if c not in keys]
    same = " AND ".join(
        f"{_comparable('t', c, kinds[c])} <=> {_comparable('s', c, kinds[c])}" for c in values
    )
    started = time.perf_counter()
    if skip_unchanged:
        current = read_table(spark, cfg, name).join(scope.select(*keys), keys, "left_semi")
        source, differing = counted(_differences(rows, current, keys, same))
        if not differing:
            logger.info(
                "merge into %s: nothing changed (%.1f s)", name, time.perf_counter() - started
            )
            return
    else:
        wanted = scope.select(*keys).unionByName(rows.select(*keys)).distinct()
        source = wanted.join(rows.withColumn("_keep", F.lit(True)), keys, "left")
    on = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    assign = {c: f"s.`{c}`" for c in rows.columns}
    merge = (
        DeltaTable.forPath(spark, table_path(cfg, name))
        .alias("t")
        .merge(source.alias("s"), on)
        .whenMatchedDelete("s._keep IS NULL")
        .whenMatchedUpdate(f"NOT ({same or 'TRUE'})", assign)
        .whenNotMatchedInsert("s._keep", assign)
    )
    with_retries(merge.execute, f"merge into {name}")
    committed(name)
    logger.info("merge into %s: %.1f s", name, time.perf_counter() - started)


def committed(name: str) -> None:
    """Tell :data:`COMMIT_HOOKS` that ``name`` has a new commit."""
    for hook in COMMIT_HOOKS:
        hook(name)


def _differences(rows: DataFrame, current: DataFrame, keys: list[str], same: str) -> DataFrame:
    """The MERGE source of ``rows`` against the table's ``current`` rows of the same scope: rows
    that are new or differ (``_keep``), and keys ``current`` holds but ``rows`` lack (to delete)."""
    now = rows.withColumn("_keep", F.lit(True)).alias("s")
    before = current.withColumn("_held", F.lit(True)).alias("t")
    paired = now.join(before, [F.col(f"s.`{k}`") == F.col(f"t.`{k}`") for k in keys], "full")
    unchanged = F.col("s._keep") & F.col("t._held") & F.expr(same or "TRUE")
    return paired.where(~F.coalesce(unchanged, F.lit(False))).select(
        *[F.coalesce(f"s.`{k}`", f"t.`{k}`").alias(k) for k in keys],
        *[F.col(f"s.`{c}`").alias(c) for c in rows.columns if c not in keys],
        "s._keep",
    )


def _comparable(alias: str, column: str, kind: DataType) -> str:
    """SQL for a column that ``<=>`` can compare (maps as their sorted entries)."""
    ref = f"{alias}.`{column}`"
    return f"array_sort(map_entries({ref}))" if isinstance(kind, MapType) else ref


def enable_property(spark: SparkSession, path: str, name: str) -> None:
    """Turn on a boolean Delta table property once (:data:`DELETION_VECTORS`: readers then need
    Delta reader version 3; :data:`CHANGE_FEED`: later commits record their row changes)."""
    shown = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()  # the log only, no job
    if dict((row.key, row.value) for row in shown).get(name) != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{name}' = 'true')")


def table_version(spark: SparkSession, cfg: OneIdConfig, name: str) -> int:
    """The latest commit version of a Delta table (read from its log folder, no Spark job)."""
    version = latest_version(spark, table_path(cfg, name))
    if version < 0:
        raise ValueError(f"{name}: no Delta table at {table_path(cfg, name)}")
    return version


FEED_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
"""Columns Delta's change data feed adds to a table's rows."""


def change_feed(
    spark: SparkSession, cfg: OneIdConfig, name: str, after: int, until: int
) -> DataFrame | None:
    """The row changes of the commits after version ``after`` up to ``until`` (Delta's change
    data feed, :data:`FEED_COLUMNS` added), or None when the feed cannot give them: it was not
    on for every commit of the range, or its files were vacuumed. Reading one column of the
    feed here is the check. (A caller that needs the feed to name only the rows that changed
    checks the range's :func:`commit_operations` first: a full overwrite names every row.)"""
    path = table_path(cfg, name)
    if until <= after:
        empty = spark.createDataFrame([], table_schema(spark, cfg, name))
        kinds = dict(zip(FEED_COLUMNS, ("string", "long", "timestamp"), strict=True))
        return empty.withColumns({c: F.lit(None).cast(k) for c, k in kinds.items()})
    feed = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", after + 1)
        .option("endingVersion", until)
        .load(path)
    )
    try:
        feed.select("_commit_version").limit(1).collect()
    except Exception as exc:  # any failure means: no feed here, the caller reads everything
        logger.info("%s: no change feed over %d..%d (%s)", name, after, until, exc)
        return None
    return feed


def commit_operations(
    spark: SparkSession, cfg: OneIdConfig, name: str, after: int, until: int
) -> set[str]:
    """The operations (as :func:`operation_name` names them) of the commits after version
    ``after`` up to ``until``, read from the log (no Spark job)."""
    path = table_path(cfg, name)
    return {
        operation_name(commit_info(spark, path, version)) for version in range(after + 1, until + 1)
    }


def operation_name(commit: dict | None) -> str:
    """A commit's operation: Delta's name, with the mode for a plain write (``WRITE Append``,
    ``WRITE Overwrite``)."""
    if commit is None:
        return "(commit gone from the log)"
    operation = commit.get("operation", "")
    mode = (commit.get("operationParameters") or {}).get("mode")
    return f"{operation} {mode}" if operation == "WRITE" and mode else operation


def with_retries(action: Callable[[], T], what: str, attempts: int = 4) -> T:
    """Retry Delta's optimistic-concurrency conflicts (two jobs creating one table, etc.)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not _is_conflict(exc):
                raise
            logger.warning(
                "%s: concurrent update (%s); retry %d", what, type(exc).__name__, attempt
            )
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, WRITE_CONFLICTS) or (
        isinstance(exc, AnalysisException) and "already exists" in str(exc)
    )
