"""What the published identity runs say (``identity.run_stats``), and this run's row in it."""

from __future__ import annotations

import re
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
    published: dict | None = None
    """This run id's ``identity.run_stats`` row (``full``, ``metrics``, ``size_histogram``)
    when it was published already."""
    last_run: str | None = None
    """The id of the latest published run."""


def run_history(spark: SparkSession, cfg: OneIdConfig, run_id: str) -> History:
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    if stats is None:
        return History(None, 0)
    this = F.col("run_id") == run_id
    row = (
        stats.where(F.col("passed"))
        .agg(
            F.max_by("metrics", "finished_at").alias("last"),
            F.max_by("run_id", "finished_at").alias("last_run"),
            F.max(F.col("metrics")["max_oneid"].cast("long")).alias("minted"),
            F.max_by(
                F.struct("full", "metrics", "size_histogram"),
                F.when(this, F.col("finished_at")),
            ).alias("published"),
        )
        .first()
    )
    last = None if row["last"] is None else dict(row["last"])
    published = None if row["published"] is None else row["published"].asDict()
    return History(last, int(row["minted"] or 0), published, row["last_run"])


def largest_run_number(spark: SparkSession, cfg: OneIdConfig, prefix: str) -> int:
    """The largest N of the published run ids ``<prefix>N`` (0: none)."""
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    if stats is None:
        return 0
    number = F.regexp_extract("run_id", f"^{re.escape(prefix)}([0-9]+)$", 1)
    found = stats.where(F.col("passed") & (number != "")).agg(F.max(number.cast("long"))).first()
    return int(found[0] or 0)


TEXT_METRICS = frozenset({"components_engine", "changes_from", "conf_hash", "silver_commit"})
"""Metrics that are text; every other one is a number (``run_stats`` stores them all as text)."""


def published_stats(row: dict) -> dict:
    """A run's figures as the run reported them, from its ``run_stats`` row (:func:`stats_row`)."""
    stats: dict = {
        key: value if key in TEXT_METRICS else _number(value)
        for key, value in row["metrics"].items()
    }
    stats["histogram"] = dict(row["size_histogram"] or {})
    return stats


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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
