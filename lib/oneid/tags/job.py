"""``oneid tags --as-of D`` (or ``--from D1 --to D2``): the tag tables, one ``dt`` partition a day.

Facts are read once per run (one Delta read per fact table, cached) and attributed to OneIDs
through the published ``identity.record_oneid``; every tag of every OneID in
``identity.profiles`` is computed per date and written with ``replaceWhere`` on its dates into
``gold.tags_<group>`` (up to :data:`DAYS_PER_COMMIT` dates in one commit per table), so
re-running a date gives identical rows and a backfill gives the partitions day-by-day runs
give. ``gold.tags_summary`` holds each day's population figures.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.conf import OneIdConfig
from oneid.conf.tags import TagsConf
from oneid.errors import DataContractError
from oneid.tables import read_table_or_none, replace_where, union_all
from oneid.tags.check import check_tags
from oneid.tags.compute import compute_tags, needed_fact_tables
from oneid.tags.currency import load_rates, require_rates
from oneid.tags.facts import attribute_facts
from oneid.tags.tables import tag_tables

logger = logging.getLogger(__name__)
SUMMARY_TABLE = "gold.tags_summary"
DAYS_PER_COMMIT = 7
"""Dates written in one commit per table: a commit has a fixed cost (~1.5 s on small tables),
and a week's tags of every OneID are held (cached, spilled to disk if need be) until written."""


@dataclass
class TagsReport:
    dates: list[dt.date]
    tables: dict[str, int] = field(default_factory=dict)
    """Rows written per table for the last date."""
    summary: dict[dt.date, list[tuple[str, str, int, float]]] = field(default_factory=dict)
    """(metric, key, count, share) per date."""


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise DataContractError(f"--to {end} is before --from {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def run_tags(spark: SparkSession, cfg: OneIdConfig, dates: list[dt.date]) -> TagsReport:
    """Compute and write the tag tables for each date (facts read once for all of them), in
    one atomic run (:mod:`oneid.atomic`)."""
    registry = cfg.pipeline.tags
    if not registry.definitions:
        raise DataContractError("no tags declared: add tags.definitions (conf/tags.yaml)")
    check_tags(spark, cfg.pipeline, max(dates))  # before anything is read or locked
    tables = [*tag_tables(registry), SUMMARY_TABLE]
    label = f"tags {min(dates)}" + (f"..{max(dates)}" if len(dates) > 1 else "")
    with atomic_run(spark, cfg, "tags", label, tables):
        return _run_tags(spark, cfg, registry, dates)


def _run_tags(
    spark: SparkSession, cfg: OneIdConfig, registry: TagsConf, dates: list[dt.date]
) -> TagsReport:
    record_oneid = read_table_or_none(spark, cfg, "identity.record_oneid")
    profiles = read_table_or_none(spark, cfg, "identity.profiles")
    if record_oneid is None or profiles is None:
        raise DataContractError("identity tables are missing: run `oneid identity` first")
    written = _written_days(spark, cfg, dates)
    facts = load_facts(spark, cfg, registry, max(dates), record_oneid)
    oneids = profiles.select("oneid").persist(StorageLevel.MEMORY_AND_DISK)
    report = TagsReport(dates)
    try:
        days = sorted(dates)
        for start in range(0, len(days), DAYS_PER_COMMIT):
            chunk = days[start : start + DAYS_PER_COMMIT]
            new = written.isdisjoint(chunk)
            _write_days(cfg, registry, oneids, facts, chunk, report, new)
    finally:
        for frame in (*facts.values(), oneids):
            frame.unpersist()
    return report


def _written_days(spark: SparkSession, cfg: OneIdConfig, dates: list[dt.date]) -> set[dt.date]:
    """Which of ``dates`` have tags already: the summary has rows for every day a run wrote
    (at least its ``oneids`` count), written in the run that wrote the day's tags."""
    summary = read_table_or_none(spark, cfg, SUMMARY_TABLE)
    if summary is None:
        return set()
    days = summary.where(F.col("dt").isin(dates)).select("dt").distinct().collect()
    return {row.dt for row in days}


def load_facts(
    spark: SparkSession,
    cfg: OneIdConfig,
    registry: TagsConf,
    until: dt.date,
    record_oneid: DataFrame,
) -> dict[str, DataFrame]:
    """Each fact table the registry needs, read once, attributed, in the reporting currency
    and cached."""
    facts = {}
    rates = load_rates(spark, registry.currency, until)
    for name in needed_fact_tables(registry):
        table = f"silver.{name}"
        frame = read_table_or_none(spark, cfg, table)
        if frame is None:
            continue  # compute_tags names the tags that need it
        attributed = attribute_facts(frame, record_oneid, registry, name, until, rates)
        facts[name] = attributed.persist(StorageLevel.MEMORY_AND_DISK)
        require_rates(facts[name], name, registry.currency)
    return facts


def _write_days(
    cfg: OneIdConfig,
    registry: TagsConf,
    oneids: DataFrame,
    facts: dict[str, DataFrame],
    days: list[dt.date],
    report: TagsReport,
    new: bool,
) -> None:
    """Compute the tags of ``days`` and write them in one ``replaceWhere`` commit per table
    (an append when ``new``: none of ``days`` has tags yet)."""
    wide = {
        day: compute_tags(oneids, facts, registry, day).persist(StorageLevel.MEMORY_AND_DISK)
        for day in days
    }
    try:
        condition = "dt IN (" + ", ".join(f"DATE'{day.isoformat()}'" for day in days) + ")"
        label = f"oneid tags {days[0]}" + (f"..{days[-1]}" if len(days) > 1 else "")
        population = {day: frame.count() for day, frame in wide.items()}
        for table, columns in tag_tables(registry).items():
            frame = union_all(
                [
                    tags.select("oneid", *columns).withColumn("dt", F.lit(day))
                    for day, tags in wide.items()
                ]
            )
            replace_where(frame, cfg, table, condition, ("dt",), label, new=new)
            report.tables[table] = population[days[-1]]
        summaries = {
            day: summary_rows(tags, population[day], facts, registry, day).collect()
            for day, tags in wide.items()
        }
        rows = [row for summary in summaries.values() for row in summary]
        frame = oneids.sparkSession.createDataFrame(rows, SUMMARY_SCHEMA)
        replace_where(frame, cfg, SUMMARY_TABLE, condition, ("dt",), label, new=new)
        for day, summary in summaries.items():
            report.summary[day] = [(r["metric"], r["key"], r["count"], r["share"]) for r in summary]
            logger.info("tags for %s written (%d OneIDs)", day, population[day])
        report.tables[SUMMARY_TABLE] = len(summaries[days[-1]])
    finally:
        for frame in wide.values():
            frame.unpersist()


SUMMARY_SCHEMA = "metric string, key string, count bigint, share double, dt date"


def summary_rows(
    wide: DataFrame,
    population: int,
    facts: dict[str, DataFrame],
    registry: TagsConf,
    day: dt.date,
) -> DataFrame:
    """(metric, key, count, share, dt): OneIDs, value counts, shares, unattributed facts.

    Small by construction (one row per value of each ``counts_by`` tag), so it is collected.
    """
    frames = [
        wide.agg(F.count(F.lit(1)).alias("count")).select(
            F.lit("oneids").alias("metric"), F.lit("").alias("key"), "count", F.lit(1.0)
        )
    ]
    for tag in registry.summary.counts_by:
        key = F.coalesce(F.col(tag).cast("string"), F.lit("(none)")).alias("key")
        frames.append(
            wide.groupBy(key)
            .agg(F.count(F.lit(1)).alias("count"))
            .select(F.lit(tag), "key", "count", F.col("count") / F.lit(max(population, 1)))
        )
    for name, share in registry.summary.shares.items():
        frames.append(
            wide.where(F.expr(share.of))
            .agg(
                F.count(F.when(F.expr(share.where), 1)).alias("count"),
                F.count(F.lit(1)).alias("_of"),
            )
            .select(F.lit(name), F.lit(""), "count", F.col("count") / F.nullif("_of", F.lit(0)))
        )
    for name, frame in facts.items():
        unattributed = frame.where(F.col("oneid").isNull() & (F.col("event_date") <= F.lit(day)))
        frames.append(
            unattributed.agg(F.count(F.lit(1)).alias("count")).select(
                F.lit(f"unattributed_{name}"), F.lit(""), "count", F.lit(None).cast("double")
            )
        )
    result = frames[0].toDF("metric", "key", "count", "share")
    for frame in frames[1:]:
        result = result.union(frame.toDF("metric", "key", "count", "share"))
    return result.withColumn("dt", F.lit(day)).orderBy("metric", "key")
