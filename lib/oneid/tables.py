"""Where every table lives, and the few ways OneID reads and writes them.

Tables are path-based Delta tables under the warehouse root: ``<zone>.<name>`` lives at
``<warehouse>/<zone>/<name>``. Names and columns are documented in ``docs/tables.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from oneid.conf import OneIdConfig
from oneid.session import warehouse_root

logger = logging.getLogger(__name__)
T = TypeVar("T")

ZONES = ("bronze", "quarantine", "silver", "identity", "gold", "audience", "ops")


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
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, table_path(cfg, name))


def read_table(spark: SparkSession, cfg: OneIdConfig, name: str) -> DataFrame:
    """The current version of a Delta table."""
    return spark.read.format("delta").load(table_path(cfg, name))


def read_table_or_none(spark: SparkSession, cfg: OneIdConfig, name: str) -> DataFrame | None:
    return read_table(spark, cfg, name) if table_exists(spark, cfg, name) else None


def replace_where(
    df: DataFrame,
    cfg: OneIdConfig,
    name: str,
    condition: str,
    partition_by: tuple[str, ...] = (),
    user_metadata: str | None = None,
) -> None:
    """Atomically replace the rows matching ``condition`` (e.g. one batch or one ``dt``).

    ``user_metadata`` tags the commit so a caller can find it in the table history.
    """
    path = table_path(cfg, name)
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", condition)
        .option("mergeSchema", "true")
    )
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with_retries(lambda: writer.save(path), f"write {name} where {condition}")


def append(df: DataFrame, cfg: OneIdConfig, name: str, partition_by: tuple[str, ...] = ()) -> None:
    """Blind append (concurrent appends from other jobs do not conflict)."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with_retries(lambda: writer.save(table_path(cfg, name)), f"append to {name}")


def overwrite(
    df: DataFrame, cfg: OneIdConfig, name: str, partition_by: tuple[str, ...] = ()
) -> None:
    """Replace a whole table in one Delta commit (readers see the old or the new version)."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with_retries(lambda: writer.save(table_path(cfg, name)), f"overwrite {name}")


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
    text = f"{type(exc).__name__} {exc}"
    markers = ("Concurrent", "ProtocolChanged", "MetadataChanged", "DELTA_PROTOCOL_CHANGED")
    return any(marker in text for marker in markers) or (
        isinstance(exc, AnalysisException) and "already exists" in str(exc)
    )
