"""``run_tags`` as it was before branch ``bench`` changed it, to time both in the same run.

The library at commit 3162461 differed in two places, restored here (everything else is the
library's own code): facts were joined to all of ``identity.record_oneid`` (not only the owners
of their own sources), and the per-OneID frame was not cached before the RFM scores, so the
score joins ran the fact aggregations again. Delete this file and its case in bench_tags.py
once the comparison is no longer wanted.
"""

from __future__ import annotations

import datetime as dt

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.tags import TagsConf
from oneid.tables import read_table_or_none, replace_where
from oneid.tags import job
from oneid.tags.compute import compute_tags, needed_fact_tables
from oneid.tags.facts import business_date


def run_tags_before(spark: SparkSession, cfg: OneIdConfig, dates: list[dt.date]) -> job.TagsReport:
    registry = cfg.pipeline.tags
    record_oneid = read_table_or_none(spark, cfg, "identity.record_oneid")
    profiles = read_table_or_none(spark, cfg, "identity.profiles")
    assert record_oneid is not None and profiles is not None
    facts = {}
    for name in needed_fact_tables(registry):
        frame = read_table_or_none(spark, cfg, f"silver.{name}")
        if frame is not None:
            attributed = _attribute_facts(frame, record_oneid, registry, name, max(dates))
            facts[name] = attributed.persist(StorageLevel.MEMORY_AND_DISK)
    oneids = profiles.select("oneid").persist(StorageLevel.MEMORY_AND_DISK)
    report = job.TagsReport(dates)
    try:
        for day in sorted(dates):
            _write_day(cfg, registry, oneids, facts, day, report)
    finally:
        for frame in (*facts.values(), oneids):
            frame.unpersist()
    return report


def _attribute_facts(
    facts: DataFrame, record_oneid: DataFrame, registry: TagsConf, name: str, until: dt.date
) -> DataFrame:
    owners = record_oneid.select("source", "record_key", "oneid")
    frame = (
        facts.where(F.col("event_time").isNotNull())
        .withColumn("event_date", business_date(F.col("event_time"), registry.time_zone))
        .where(F.col("event_date") <= F.lit(until))
        .join(owners, ["source", "record_key"], "left")
    )
    for column, sql in registry.derived_columns.get(name, {}).items():  # type: ignore[call-overload]
        frame = frame.withColumn(column, F.expr(sql))
    return frame


def _write_day(cfg, registry, oneids, facts, day, report) -> None:
    wide = compute_tags(oneids, facts, registry, day).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        condition = f"dt = DATE'{day.isoformat()}'"
        population = wide.count()
        for table, columns in job.tag_tables(registry).items():
            frame = wide.select("oneid", *columns).withColumn("dt", F.lit(day))
            replace_where(frame, cfg, table, condition, ("dt",), f"oneid tags {day}")
            report.tables[table] = population
        summary = job.summary_rows(wide, population, facts, registry, day).collect()
        frame = wide.sparkSession.createDataFrame(summary, job.SUMMARY_SCHEMA)
        replace_where(frame, cfg, job.SUMMARY_TABLE, condition, ("dt",), f"oneid tags {day}")
        report.tables[job.SUMMARY_TABLE] = len(summary)
    finally:
        wide.unpersist()
