"""``oneid audiences --as-of D``: daily snapshots, entered / exited diffs and stats.

Membership is recomputed in full from the day's tags (``gold.tags_*``, ``dt = D``) and events;
only the difference against each audience's previous snapshot (the latest ``dt < D``) becomes
``audience.changes``, after mapping old OneIDs through ``identity.oneid_changes``. Every table
is written with ``replaceWhere dt = D``, so re-running a date changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.audiences.changes import diff_members, follow_lineage
from oneid.audiences.compiled import CompiledAudiences
from oneid.audiences.compiler import compile_audiences
from oneid.audiences.evaluate import evaluate_audiences
from oneid.audiences.tables import CHANGES, MEMBERSHIP, STATS, STATS_SCHEMA
from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.errors import DataContractError
from oneid.tables import read_table, read_table_or_none, replace_where
from oneid.tags import day_tags
from oneid.tags.facts import attribute_facts

logger = logging.getLogger(__name__)


@dataclass
class AudiencesReport:
    as_of: dt.date
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    """audience → {size, holdout, entered, exited, remapped, baseline}."""
    overlaps: dict[tuple[str, str], int] = field(default_factory=dict)
    breakdowns: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """audience → tag of ``audiences.stats_by`` → value → members."""
    tables: dict[str, int] = field(default_factory=dict)


def compiled_rules(cfg: OneIdConfig) -> CompiledAudiences:
    """The audience rules of ``cfg`` compiled against the tag registry and the event columns."""
    pipeline = cfg.pipeline
    return compile_audiences(
        cfg.audiences,
        pipeline.tags.tag_types(),
        pipeline.fact_columns("events"),
        pipeline.tags.time_zone,
    )


def explain(cfg: OneIdConfig, audience_id: str, as_of: dt.date) -> str:
    """The standalone SQL of one audience (over views ``tags`` and ``events``)."""
    compiled = compiled_rules(cfg)
    if audience_id not in {a.audience_id for a in compiled.audiences}:
        known = ", ".join(a.audience_id for a in compiled.audiences)
        raise DataContractError(f"unknown audience {audience_id!r}; known: {known}")
    return compiled.explain(audience_id, as_of)


def run_audiences(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> AudiencesReport:
    """Compute the day's membership, changes and stats; write them for ``dt = as_of``."""
    compiled = compiled_rules(cfg)
    if not compiled.audiences:
        raise DataContractError("no audiences declared (pipeline.audiences.rules)")
    needed_tags = list(dict.fromkeys([*compiled.tag_columns, *cfg.pipeline.audiences.stats_by]))
    tags = day_tags(spark, cfg, as_of, needed_tags)
    events = _events(spark, cfg, as_of) if compiled.aggregates else tags.limit(0)
    members = (
        evaluate_audiences(tags, events, compiled, as_of)
        .withColumn("dt", F.lit(as_of))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    condition = f"dt = DATE'{as_of.isoformat()}'"
    report = AudiencesReport(as_of)
    try:
        replace_where(members, cfg, MEMBERSHIP, condition, ("audience_id", "dt"))
        changes, stats = _changes_and_stats(spark, cfg, compiled, members, tags, as_of, report)
        changes = changes.withColumn("dt", F.lit(as_of))
        replace_where(changes, cfg, CHANGES, condition, ("dt",))
        stats_frame = spark.createDataFrame(stats, STATS_SCHEMA).withColumn("dt", F.lit(as_of))
        replace_where(stats_frame, cfg, STATS, condition, ("dt",))
    finally:
        members.unpersist()
    report.tables = {
        MEMBERSHIP: sum(s["size"] for s in report.sizes.values()),
        CHANGES: sum(s["entered"] + s["exited"] + s["remapped"] for s in report.sizes.values()),
        STATS: len(stats),
    }
    return report


def _events(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> DataFrame:
    events = read_table_or_none(spark, cfg, "silver.events")
    if events is None:
        raise DataContractError("audience rules use events but silver.events does not exist")
    owners = read_table(spark, cfg, "identity.record_oneid")
    attributed = attribute_facts(events, owners, cfg.pipeline.tags, "events", as_of)
    return attributed.where(F.col("oneid").isNotNull())


def _previous_snapshots(
    spark: SparkSession, cfg: OneIdConfig, as_of: dt.date
) -> dict[str, tuple[dt.date, int]]:
    """audience → (dt, version) of its latest snapshot before ``as_of``."""
    stats = read_table_or_none(spark, cfg, STATS)
    if stats is None:
        return {}
    rows = (
        stats.where((F.col("metric") == "size") & (F.col("dt") < F.lit(as_of)))
        .groupBy("audience_id")
        .agg(F.max(F.struct("dt", "version")).alias("last"))
        .collect()
    )
    return {row.audience_id: (row.last.dt, row.last.version) for row in rows}


def _changes_and_stats(
    spark: SparkSession,
    cfg: OneIdConfig,
    compiled: CompiledAudiences,
    members: DataFrame,
    tags: DataFrame,
    as_of: dt.date,
    report: AudiencesReport,
) -> tuple[DataFrame, list[tuple]]:
    previous_at = _previous_snapshots(spark, cfg, as_of)
    history = read_table_or_none(spark, cfg, MEMBERSHIP)
    previous_all = None
    if previous_at and history is not None:
        keys = spark.createDataFrame(
            [(a, d) for a, (d, _) in previous_at.items()], "audience_id string, dt date"
        )
        previous_all = (
            history.join(keys, ["audience_id", "dt"])
            .select("audience_id", "oneid", "holdout")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        lineage = follow_lineage(
            previous_all.select("oneid"),
            read_table_or_none(spark, cfg, "identity.oneid_changes")
            or spark.createDataFrame([], "kind string, from_oneid bigint, to_oneid bigint"),
            read_table(spark, cfg, "identity.profiles").select("oneid"),
        ).persist(StorageLevel.MEMORY_AND_DISK)

    frames, stats = [], []
    for audience in compiled.audiences:
        aid, version = audience.audience_id, audience.version
        current = members.where(F.col("audience_id") == aid).select("oneid", "holdout")
        last = previous_at.get(aid)
        new_version = last is None or last[1] != version
        baseline = new_version and audience.on_new_version == "baseline"
        if last is None or previous_all is None:
            previous = current.limit(0)
            lineage_now = spark.createDataFrame([], "old bigint, new bigint")
        else:
            previous = previous_all.where(F.col("audience_id") == aid).select("oneid", "holdout")
            lineage_now = lineage
        if baseline:
            diff = current.limit(0).select(
                "oneid",
                F.lit("entered").alias("change"),
                F.lit(None).cast("bigint").alias("from_oneid"),
                "holdout",
            )
        else:
            diff = diff_members(previous, current, lineage_now, emit_all=new_version)
        diff = materialize(
            diff.select(F.lit(aid).alias("audience_id"), F.lit(version).alias("version"), "*")
        )
        frames.append(diff)
        counts = {row.change: row["count"] for row in diff.groupBy("change").count().collect()}
        size_row = current.agg(F.count(F.lit(1)).alias("n"), F.count_if("holdout").alias("h"))
        sizes = size_row.first()
        figures = {
            "size": sizes.n,
            "holdout": sizes.h or 0,
            "entered": counts.get("entered", 0),
            "exited": counts.get("exited", 0),
            "remapped": counts.get("remapped", 0),
            "baseline": int(baseline),
        }
        report.sizes[aid] = figures
        stats += [(aid, version, metric, "", value) for metric, value in figures.items()]
        for tag in cfg.pipeline.audiences.stats_by:
            by = current.join(tags.select("oneid", tag), "oneid").groupBy(tag).count().collect()
            stats += [
                (
                    aid,
                    version,
                    f"by:{tag}",
                    str(r[tag]) if r[tag] is not None else "(none)",
                    r["count"],
                )
                for r in by
            ]
    stats += _overlaps(members, compiled, report)
    if previous_all is not None:
        previous_all.unpersist()
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result, stats


def _overlaps(members: DataFrame, compiled: CompiledAudiences, report: AudiencesReport) -> list:
    """Members shared by each pair of audiences."""
    versions = {a.audience_id: a.version for a in compiled.audiences}
    left = members.select(F.col("audience_id").alias("a"), "oneid")
    right = members.select(F.col("audience_id").alias("b"), "oneid")
    pairs = (
        left.join(right, "oneid").where(F.col("a") < F.col("b")).groupBy("a", "b").count().collect()
    )
    rows = []
    for row in pairs:
        report.overlaps[(row.a, row.b)] = row["count"]
        rows.append((row.a, versions[row.a], "overlap", row.b, row["count"]))
        rows.append((row.b, versions[row.b], "overlap", row.a, row["count"]))
    return rows


def _key(value: object) -> str:
    return "(none)" if value is None else str(value)
