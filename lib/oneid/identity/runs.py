"""What the published identity runs say (``identity.run_stats``), and this run's row in it."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.tables import read_table_or_none


@dataclass(frozen=True)
class History:
    """What the published runs so far say."""

    last: dict | None
    """Metrics of the latest published run."""
    minted: int
    """The largest OneID ever minted (so ids are never reused)."""
    published: bool
    """Whether this run id was published already."""


def run_history(spark: SparkSession, cfg: OneIdConfig, run_id: str) -> History:
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    if stats is None:
        return History(None, 0, False)
    row = (
        stats.where(F.col("passed"))
        .agg(
            F.max_by("metrics", "finished_at").alias("last"),
            F.max(F.col("metrics")["max_oneid"].cast("long")).alias("minted"),
            F.max((F.col("run_id") == run_id).cast("int")).alias("published"),
        )
        .first()
    )
    last = None if row["last"] is None else dict(row["last"])
    return History(last, int(row["minted"] or 0), bool(row["published"]))


def stats_row(
    spark: SparkSession,
    run_id: str,
    full: bool,
    passed: bool,
    stats: dict,
    checks: dict[str, tuple[bool, str]],
) -> DataFrame:
    """The ``identity.run_stats`` row of a run: metrics, size histogram and gate results."""
    return spark.createDataFrame(
        [
            (
                run_id,
                full,
                passed,
                {k: str(v) for k, v in stats.items() if k != "histogram"},
                stats["histogram"],
                {k: ("pass" if ok else "FAIL") + ": " + why for k, (ok, why) in checks.items()},
            )
        ],
        "run_id string, full boolean, passed boolean, metrics map<string,string>, "
        "size_histogram map<string,long>, gates map<string,string>",
    ).withColumn("finished_at", F.current_timestamp())
