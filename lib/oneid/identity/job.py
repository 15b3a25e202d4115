"""``oneid identity --run-id R [--full]``: silver.identifiers → stable OneIDs.

A run reads top to bottom: plan what is recomputed (:mod:`oneid.identity.plan`: every node, or
the scope the changed records can reach, :mod:`oneid.identity.incremental`); resolve it
(components over strong edges, weak edges within the per-type limits, stable assignment); build
the published rows and the run's figures; check the gates; publish through one path
(:mod:`oneid.identity.publish`). Because the affected scope is closed under every usable edge
and every previous OneID, and nothing outside it changed place in the graph, an incremental run
computes exactly what a full rebuild computes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentityConf
from oneid.errors import DataContractError, GateFailedError
from oneid.identity import incremental as inc
from oneid.identity.hubs import account_key_cuts, audit_rows
from oneid.identity.plan import Plan, Published, full_plan
from oneid.identity.publish import STATE_TABLES, publish
from oneid.identity.resolve import Resolution, resolve
from oneid.identity.runs import (
    History,
    largest_run_number,
    published_stats,
    run_history,
    stats_row,
)
from oneid.identity.stats import gates, oneid_sizes, size_figures
from oneid.session import remove_checkpoint_dir
from oneid.tables import append, commit_id, read_table_or_none, read_version, table_version

logger = logging.getLogger(__name__)

IDENTITY_TABLES = (
    "identity.nodes",
    *(f"identity.{table}" for table in STATE_TABLES),
    "identity.oneid_changes",
    "identity.hub_audit",
    "identity.run_stats",
)
"""Every table an identity run writes: rolled back together when it does not finish."""


@dataclass(frozen=True)
class IdentityReport:
    run_id: str
    full: bool
    stats: dict
    changes: dict[str, int]
    skipped: str = ""
    """Why nothing ran (the run id was published already on this silver and these settings)."""


def resolve_identities(
    spark: SparkSession, cfg: OneIdConfig, run_id: str, full: bool = False
) -> IdentityReport:
    """Run identity resolution once, as one atomic run (:mod:`oneid.atomic`); raises
    :class:`GateFailedError` before publishing (its audit and figures are recorded)."""
    try:
        with atomic_run(spark, cfg, "identity", f"identity run {run_id}", IDENTITY_TABLES):
            identifiers = read_table_or_none(spark, cfg, "silver.identifiers")
            if identifiers is None:
                raise DataContractError(
                    "silver.identifiers is missing: run `oneid standardize` first"
                )
            history = run_history(spark, cfg, run_id)
            if history.published is not None:
                return _already_published(spark, cfg, run_id, history)
            return _run(spark, cfg, identifiers, run_id, full, history)
    finally:
        remove_checkpoint_dir(spark)


def _run(
    spark: SparkSession,
    cfg: OneIdConfig,
    identifiers: DataFrame,
    run_id: str,
    full: bool,
    history: History,
) -> IdentityReport:
    conf = cfg.pipeline.identity
    clock = _Clock(run_id)
    previous_map = read_table_or_none(spark, cfg, "identity.oneid_map")
    first_run = previous_map is None
    if first_run or full or not _incremental_pays(spark, cfg, history.last, conf):
        plan = full_plan(spark, cfg, identifiers, run_id, previous_map, clock)
    else:
        plan = inc.incremental_plan(
            spark, cfg, identifiers, run_id, previous_map, clock, history.last
        )

    resolved = resolve(
        spark, conf, plan.vertices, plan.inside, plan.vertex_nodes, plan.previous, history.minted
    )
    mapping = plan.mapping_rows(resolved.mapping)
    clock("components and assignment")

    published = plan.outputs(resolved.mapping)
    before = 0 if first_run else previous_map.count()
    stats = _figures(plan, resolved, published, before, history.minted, conf)
    audit = materialize(audit_rows(run_id, plan.hubs, plan.nodes, resolved.rejected))
    cuts = account_key_cuts(audit, conf)
    stats["account_keys_cut"] = sum(cuts.values())
    if cuts:
        logger.warning(
            "identity run %s: %d account key(s) cut as hubs %s: those customers link nothing; "
            "see identity.hub_audit and identity.hubs in conf",
            run_id,
            stats["account_keys_cut"],
            cuts,
        )
    clock("outputs and figures")

    checks = gates(stats, conf.gates, first_run)
    if not all(ok for ok, _ in checks.values()):
        row = stats_row(spark, run_id, plan.full, False, stats, checks)
        failed = "; ".join(f"{k}: {why}" for k, (ok, why) in checks.items() if not ok)
        raise GateFailedError(
            f"identity run {run_id}: gate(s) failed, nothing published: {failed}",
            record_after_rollback=lambda: _record_failure(cfg, audit, row),
        )
    append(audit, cfg, "identity.hub_audit")

    changes = materialize(resolved.changes)
    publish(cfg, plan.writes(mapping, published), changes.withColumn("run_id", F.lit(run_id)))
    clock("publish")
    stats["incidence_version"] = table_version(spark, cfg, "identity.incidence")
    stats["silver_version"] = read_version(spark, cfg, "silver.identifiers")
    stats["silver_commit"] = commit_id(spark, cfg, "silver.identifiers", stats["silver_version"])
    append(stats_row(spark, run_id, plan.full, True, stats, checks), cfg, "identity.run_stats")
    counts = {r.kind: r["count"] for r in changes.groupBy("kind").count().collect()}
    logger.info("identity run %s: %s; changes %s", run_id, stats, counts)
    return IdentityReport(run_id, plan.full, stats, counts)


def _already_published(
    spark: SparkSession, cfg: OneIdConfig, run_id: str, history: History
) -> IdentityReport:
    """The published run's report when ``run_id`` is the latest run and neither silver nor the
    identity settings changed since (a retry after success writes nothing), else an error: the
    run id names a result that would differ now."""
    row = history.published
    why = "later runs were published"
    if history.last_run == run_id:
        why = _changed_since(spark, cfg, row["metrics"])
    if why:
        raise DataContractError(
            f"identity run {run_id} already published and {why}; use a new --run-id"
        )
    logger.info("identity run %s already published; nothing to do", run_id)
    return IdentityReport(run_id, row["full"], published_stats(row), {}, "already published")


def demo_run_id(spark: SparkSession, cfg: OneIdConfig) -> str:
    """The identity run id of ``oneid demo``: the latest run's when nothing changed since it
    (the demo run again finds it done), else the next ``demo-N``."""
    history = run_history(spark, cfg, "")
    if history.last_run and not _changed_since(spark, cfg, history.last or {}):
        return history.last_run
    return f"demo-{largest_run_number(spark, cfg, 'demo-') + 1}"


def _changed_since(spark: SparkSession, cfg: OneIdConfig, metrics: dict) -> str:
    """What changed since the published run of ``metrics`` that its result depends on ("")."""
    silver = read_version(spark, cfg, "silver.identifiers")
    if metrics.get("silver_commit") != commit_id(spark, cfg, "silver.identifiers", silver):
        return "silver.identifiers changed since"
    if metrics.get("conf_hash") != inc.conf_hash(cfg.pipeline.identity):
        return "the identity settings changed since"
    return ""


def _record_failure(cfg: OneIdConfig, audit: DataFrame, row: DataFrame) -> None:
    append(audit, cfg, "identity.hub_audit")
    append(row, cfg, "identity.run_stats")


def _incremental_pays(
    spark: SparkSession, cfg: OneIdConfig, last: dict | None, conf: IdentityConf
) -> bool:
    """Whether the last run left state to build on and the graph is large enough to gain."""
    return inc.state_is_current(spark, cfg, last, conf) and inc.large_enough(last, conf)


def _figures(
    plan: Plan,
    resolved: Resolution,
    published: Published,
    before: int,
    minted: int,
    conf: IdentityConf,
) -> dict:
    """The run's ``identity.run_stats`` metrics (what the gates check among them)."""
    figures = size_figures(oneid_sizes(published.all_profiles))
    changed = published.changed_identifiers
    return {
        "identifiers": figures["identifiers"],
        "oneids": figures["oneids"],
        "largest_component": figures["largest_component"],
        "multi_member_components": figures["multi_member_components"],
        "hubs": plan.hub_ids.size,
        "records": published.records_total,
        "records_without_oneid": published.records_total - published.records_with_oneid,
        "changed_identifiers": changed,
        "changed_share": round(changed / before, 6) if before else 0.0,
        "components_engine": resolved.engine,
        "components_rounds": resolved.cc_rounds,
        "weak_merge_rounds": resolved.weak_rounds,
        "max_oneid": max(figures["max_oneid"], minted),
        "changed_records": plan.changed_records,
        "changes_from": plan.changes_from,
        "recomputed_identifiers": plan.vertices.size,
        "conf_hash": inc.conf_hash(conf),
        "histogram": figures["histogram"],
    }


class _Clock:
    """Logs how long each phase of a run took (the figures that say where time goes)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        logger.info("identity run %s: %s took %.1f s", self.run_id, phase, now - self.last)
        self.last = now
