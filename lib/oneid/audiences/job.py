"""``oneid audiences --as-of D``: daily snapshots, entered / exited diffs and stats.

Membership is recomputed in full from the day's tags (``gold.tags_*``, ``dt = D``) and events;
only the difference against each audience's previous snapshot (the latest ``dt < D``) becomes
``audience.changes``, after mapping old OneIDs through ``identity.oneid_changes``. Every table
is written with ``replaceWhere dt = D``, so re-running a date changes nothing. A day run before a
later one (a backfill) names that later day, whose changes then need a run of their own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.audiences.changes import diff_members, follow_lineage
from oneid.audiences.compiled import CompiledAudiences
from oneid.audiences.compiler import compile_audiences
from oneid.audiences.evaluate import evaluate_audiences
from oneid.audiences.stats import FIGURES, Counts, count_stats, figures
from oneid.audiences.tables import CHANGES, MEMBERSHIP, STATS, STATS_SCHEMA
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
    tables: dict[str, int] = field(default_factory=dict)
    later: dt.date | None = None
    """The first later day with snapshots (a backfill, or a day run again after a later one):
    its changes were diffed against a snapshot before this day's, until it is run again."""


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
    """Compute the day's membership, changes and stats; write them for ``dt = as_of`` in one
    atomic run (:mod:`oneid.atomic`). When a later day has snapshots already, the report
    names it (``later``) and a warning says to run it again: its changes were diffed against a
    snapshot before this day's. It is not recomputed here, because it would be under today's
    rules, not those it ran with."""
    with atomic_run(spark, cfg, "audiences", f"audiences {as_of}", (MEMBERSHIP, CHANGES, STATS)):
        report = _run_audiences(spark, cfg, as_of)
    if report.later is not None:
        logger.warning(
            "audiences %s: the later day %s has snapshots whose changes were diffed against an "
            "earlier snapshot than this day's: run `oneid audiences --as-of %s` again for them "
            "to follow this day (then `oneid publish --as-of %s --replace` if it was published)",
            as_of,
            report.later,
            report.later,
            report.later,
        )
    return report


def _run_audiences(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> AudiencesReport:
    compiled = compiled_rules(cfg)
    if not compiled.audiences:
        raise DataContractError("no audiences declared (pipeline.audiences.rules)")
    stats_by = list(cfg.pipeline.audiences.stats_by)
    tags = day_tags(spark, cfg, as_of, list(dict.fromkeys([*compiled.tag_columns, *stats_by])))
    events = _events(spark, cfg, as_of) if compiled.aggregates else tags.limit(0)
    day = F.lit(as_of)
    condition = f"dt = DATE'{as_of.isoformat()}'"
    previous, rerun, later = _snapshots(spark, cfg, as_of)
    plans = _diff_plans(compiled, previous)
    evaluated = evaluate_audiences(tags, events, compiled, as_of).withColumn("dt", day)
    new = not rerun  # a day not written yet: its rows are appended
    with _cached(evaluated) as members:
        replace_where(members, cfg, MEMBERSHIP, condition, ("audience_id", "dt"), new=new)
        with _cached(_changes(spark, cfg, members, plans)) as changes:
            changes_of_day = changes.withColumn("dt", day)
            replace_where(changes_of_day, cfg, CHANGES, condition, ("dt",), new=new)
            counts = count_stats(members, changes, tags, stats_by)
    stats = _stat_rows(plans, counts)
    frame = spark.createDataFrame(stats, STATS_SCHEMA).withColumn("dt", day)
    replace_where(frame, cfg, STATS, condition, ("dt",), new=new)
    return _report(as_of, plans, counts, len(stats), later)


@dataclass(frozen=True)
class _DiffPlan:
    """How one audience's members today are compared with its previous snapshot."""

    audience_id: str
    version: int
    previous: dt.date | None
    """``dt`` of its latest snapshot before today (None: it has none)."""
    new_version: bool
    """No snapshot of this version yet: every member is ``entered`` ..."""
    baseline: bool
    """... unless ``on_new_version: baseline``: then nothing is published today."""


@contextmanager
def _cached(frame: DataFrame) -> Iterator[DataFrame]:
    """``frame`` persisted for the ``with`` block and released after it."""
    cached = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield cached
    finally:
        cached.unpersist()


def _events(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> DataFrame:
    events = read_table_or_none(spark, cfg, "silver.events")
    if events is None:
        raise DataContractError("audience rules use events but silver.events does not exist")
    owners = read_table(spark, cfg, "identity.record_oneid")
    attributed = attribute_facts(events, owners, cfg.pipeline.tags, "events", as_of)
    return attributed.where(F.col("oneid").isNotNull())


def _snapshots(
    spark: SparkSession, cfg: OneIdConfig, as_of: dt.date
) -> tuple[dict[str, tuple[dt.date, int]], bool, dt.date | None]:
    """audience → (dt, version) of its latest snapshot before ``as_of``; whether ``as_of`` has
    snapshots already (a re-run: the day's rows are replaced, else appended); the first later
    day with snapshots. Every run writes each audience's size row for its day, in the run that
    writes the day's rows."""
    stats = read_table_or_none(spark, cfg, STATS)
    if stats is None:
        return {}, False, None
    day = F.lit(as_of)
    rows = (
        stats.where(F.col("metric") == "size")
        .groupBy("audience_id")
        .agg(
            F.max(F.when(F.col("dt") < day, F.struct("dt", "version"))).alias("last"),
            F.max(F.col("dt") == day).alias("written"),
            F.min(F.when(F.col("dt") > day, F.col("dt"))).alias("later"),
        )
        .collect()
    )
    previous = {row.audience_id: (row.last.dt, row.last.version) for row in rows if row.last}
    later = min((row.later for row in rows if row.later), default=None)
    return previous, any(row.written for row in rows), later


def _diff_plans(
    compiled: CompiledAudiences, previous: dict[str, tuple[dt.date, int]]
) -> list[_DiffPlan]:
    """One plan per audience, from its latest snapshot's ``(dt, version)``."""
    plans = []
    for audience in compiled.audiences:
        last_dt, last_version = previous.get(audience.audience_id, (None, None))
        new_version = last_version != audience.version
        baseline = new_version and audience.on_new_version == "baseline"
        plans.append(
            _DiffPlan(audience.audience_id, audience.version, last_dt, new_version, baseline)
        )
    return plans


def _changes(
    spark: SparkSession, cfg: OneIdConfig, members: DataFrame, plans: list[_DiffPlan]
) -> DataFrame:
    """``(audience_id, version, oneid, change, from_oneid, holdout)`` of every audience at once.

    Baselined audiences publish nothing; the others are diffed against their previous snapshot
    (none: every member enters) through the OneID lineage since then.
    """
    diffed = [p for p in plans if not p.baseline]
    current = members.where(F.col("audience_id").isin([p.audience_id for p in diffed]))
    previous = _previous_members(spark, cfg, [p for p in diffed if p.previous])
    if previous is None:
        previous, lineage = current.limit(0), spark.createDataFrame([], "old bigint, new bigint")
    else:
        lineage = _lineage(spark, cfg, previous)
    keys = ["audience_id", "oneid", "holdout"]
    emit_all = [p.audience_id for p in diffed if p.new_version]
    diff = diff_members(previous.select(*keys), current.select(*keys), lineage, emit_all)
    versions = spark.createDataFrame(
        [(p.audience_id, p.version) for p in plans], "audience_id string, version int"
    )
    return diff.join(F.broadcast(versions), "audience_id").select(
        "audience_id", "version", "oneid", "change", "from_oneid", "holdout"
    )


def _previous_members(
    spark: SparkSession, cfg: OneIdConfig, plans: list[_DiffPlan]
) -> DataFrame | None:
    """``audience.membership`` rows of each planned audience's previous snapshot (None: none)."""
    history = read_table_or_none(spark, cfg, MEMBERSHIP)
    if not plans or history is None:
        return None
    snapshots = spark.createDataFrame(
        [(p.audience_id, p.previous) for p in plans], "audience_id string, dt date"
    )
    return history.join(F.broadcast(snapshots), ["audience_id", "dt"])


def _lineage(spark: SparkSession, cfg: OneIdConfig, previous: DataFrame) -> DataFrame:
    """``(old, new)``: the OneIDs each previous member became (``identity.oneid_changes``)."""
    changes = read_table_or_none(spark, cfg, "identity.oneid_changes")
    if changes is None:
        changes = spark.createDataFrame([], "kind string, from_oneid bigint, to_oneid bigint")
    existing = read_table(spark, cfg, "identity.profiles").select("oneid")
    return follow_lineage(previous.select("oneid"), changes, existing)


def _stat_rows(plans: list[_DiffPlan], counts: Counts) -> list[tuple[str, int, str, str, int]]:
    """``audience.stats`` rows: each audience's figures, baseline flag, breakdowns, overlaps."""
    others: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for (audience_id, metric, key), value in counts.items():
        if metric not in FIGURES:
            others[audience_id].append((metric, key, value))
    rows = []
    for plan in plans:
        fixed = _figures(plan, counts)
        rows += [(plan.audience_id, plan.version, m, "", v) for m, v in fixed.items()]
        rows += [(plan.audience_id, plan.version, *other) for other in others[plan.audience_id]]
    return rows


def _figures(plan: _DiffPlan, counts: Counts) -> dict[str, int]:
    """size, holdout, entered, exited, remapped (0 when absent) and baseline (0 / 1)."""
    return {**figures(counts, plan.audience_id), "baseline": int(plan.baseline)}


def _report(
    as_of: dt.date,
    plans: list[_DiffPlan],
    counts: Counts,
    stat_rows: int,
    later: dt.date | None,
) -> AudiencesReport:
    """The run's figures per audience, overlaps per pair and rows written per table."""
    sizes = {plan.audience_id: _figures(plan, counts) for plan in plans}
    overlaps = {
        (audience_id, other): value
        for (audience_id, metric, other), value in counts.items()
        if metric == "overlap" and audience_id < other
    }
    tables = {
        MEMBERSHIP: sum(f["size"] for f in sizes.values()),
        CHANGES: sum(f["entered"] + f["exited"] + f["remapped"] for f in sizes.values()),
        STATS: stat_rows,
    }
    return AudiencesReport(as_of, sizes, overlaps, tables=tables, later=later)
