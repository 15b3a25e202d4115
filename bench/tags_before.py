"""``run_tags`` with fact attribution as it was before commit 7563112, to time both in one run.

Before 7563112 every fact table was joined to all of ``identity.record_oneid`` (which holds the
records of every fact table); since then only the owners of its own sources take part (a
broadcast semi-join on the source names). Everything else is the library's own code. Delete
this file and its case in bench_tags.py once the comparison is no longer wanted.
"""

from __future__ import annotations

import datetime as dt

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.tags import TagsConf
from oneid.tables import read_table_or_none
from oneid.tags import job
from oneid.tags.compute import needed_fact_tables
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
            job._write_day(cfg, registry, oneids, facts, day, report)
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
