"""A Delta table's version as a DataFrame over its file list, listed once.

Delta's reader (``spark.read.format("delta").load``) lists the table's files again, with a
Spark job over the table's state, every time a query that scans the DataFrame runs: a table
read once, counted and then written elsewhere is listed twice. On small tables that job costs
as much as the query (docs/performance.md, "Reading a table lists its files once"). Here the
version is resolved and its files listed once, when the DataFrame is made, and the DataFrame
scans exactly those files, deletion vectors applied, as Delta's MERGE and streaming source do
(``DeltaLog.createDataFrame``). So the DataFrame reads the version that was current when it was
made, however often it is used; a later commit to the table is not in it.

Delta's internal Scala API is reached through py4j. If a Delta release no longer has it, reads
fall back to Delta's reader (logged once); ``tests/test_tables.py`` holds the fast path to the
pinned Delta version. What needs only a table's schema asks :func:`delta_schema`, which lists
no files.
"""

from __future__ import annotations

import logging

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

_fallback: list[str] = []
"""Why the listed-once read is off in this process (empty: it is on)."""


def read_delta(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """Version ``version`` (None: the latest) of the Delta table at ``path``. A missing table or
    version raises as Delta's reader does: Delta's reader makes the read that failed again and
    raises its error as PySpark converts it."""
    frame = None
    if not _fallback:
        try:
            frame = _listed_once(spark, path, version)
        except Py4JJavaError:
            pass  # Delta's own error (no such version, ...): the reader below raises it
        except (Py4JError, TypeError) as exc:  # no such method, or no such class
            _fallback.append(str(exc).splitlines()[0])
            logger.warning("Delta tables are read with Delta's reader: %s", _fallback[0])
    return frame if frame is not None else _delta_reader(spark, path, version)


def delta_schema(spark: SparkSession, path: str, version: int | None = None) -> StructType:
    """The schema of version ``version`` (None: the latest), from the log: no file listing."""
    return _delta_reader(spark, path, version).schema


def _delta_reader(spark: SparkSession, path: str, version: int | None) -> DataFrame:
    """Delta's own reader, which lists the files again for each query over it."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def _listed_once(spark: SparkSession, path: str, version: int | None) -> DataFrame | None:
    """The DataFrame over the version's files, or None when there is no table at ``path``
    (Delta's reader then raises its own error)."""
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    if version is None:
        snapshot = log.update(False, none, none)  # not stale, no timestamp hint, no catalog
        if snapshot.version() < 0:
            return None
    else:
        snapshot = log.getSnapshotAt(version, none, none, False)
    files = jvm.scala.jdk.javaapi.CollectionConverters.asScala(
        snapshot.allFiles().collectAsList()
    ).toList()
    return DataFrame(log.createDataFrame(snapshot, files, False, none), spark)
