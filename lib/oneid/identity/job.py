"""``oneid identity --run-id R [--full]``: silver.identifiers → stable OneIDs.

Steps: find the records that changed since the last run (every record with ``--full`` or on
the first run); extend the node dictionary; recompute hub status and edges of the nodes those
records hold; pick the affected nodes: those whose edges or hub status changed, closed under
edges and previous OneIDs (:mod:`oneid.identity.affected`); connected components over strong
edges; weak edges within the per-type limits; stable assignment; gates; publish. Because the
affected set is closed under every usable edge and every previous OneID, and nothing outside it
changed place in the graph, an incremental run computes exactly what a full rebuild computes.
The changed records' own rows (record_oneid, edge lineage, hub counts, their OneIDs' profiles)
are rewritten whether or not their OneIDs change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentityConf
from oneid.errors import DataContractError, GateFailedError
from oneid.identity import incremental as inc
from oneid.identity.assign import assign_oneids
from oneid.identity.changes import changed_records, full_change, incremental_change
from oneid.identity.components import connected_components
from oneid.identity.graph import RECORD_KEY, edges, new_nodes, record_nodes
from oneid.identity.hubs import find_hubs
from oneid.identity.keys import Keys, hinted
from oneid.identity.limits import merge_weak_edges
from oneid.identity.local import resolve_locally
from oneid.identity.outputs import profiles, record_oneids
from oneid.identity.stats import changed_identifiers, gates, oneid_sizes, size_figures
from oneid.session import remove_checkpoint_dir
from oneid.standardize.hashing import load_key
from oneid.tables import append, overwrite, read_table, read_table_or_none, table_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentityReport:
    run_id: str
    full: bool
    stats: dict
    changes: dict[str, int]


def resolve_identities(
    spark: SparkSession, cfg: OneIdConfig, run_id: str, full: bool = False
) -> IdentityReport:
    """Run identity resolution once; raises :class:`GateFailedError` before publishing."""
    identifiers = read_table_or_none(spark, cfg, "silver.identifiers")
    if identifiers is None:
        raise DataContractError("silver.identifiers is missing: run `oneid standardize` first")
    history = _history(spark, cfg, run_id)
    if history.published:
        raise DataContractError(f"identity run {run_id} already published; use a new --run-id")
    try:
        return _run(spark, cfg, identifiers, run_id, full, history)
    finally:
        remove_checkpoint_dir(spark)


def _run(spark, cfg, identifiers, run_id, full, history) -> IdentityReport:
    conf = cfg.pipeline.identity
    last = history.last
    previous_map = read_table_or_none(spark, cfg, "identity.oneid_map")
    first_run = previous_map is None
    incremental = (
        not (full or first_run)
        and inc.state_is_current(spark, cfg, last, conf)
        and inc.large_enough(last, conf)
    )
    clock = _Clock(run_id)

    # the changed records and the node dictionary
    old_nodes = read_table_or_none(spark, cfg, "identity.nodes")
    silver = identifiers
    if incremental:
        old_incidence = read_table(spark, cfg, "identity.incidence")
        changed, silver, old_rows = changed_records(identifiers, old_incidence)
    changed_rows = silver.count() if incremental else None  # materialised: a cheap count
    added = materialize(new_nodes(silver, old_nodes, run_id, changed_rows))
    if added.count():
        append(added, cfg, "identity.nodes")
    nodes = read_table(spark, cfg, "identity.nodes")
    if incremental:
        silver = hinted(silver, changed_rows)
    rows = materialize(record_nodes(silver, nodes))
    if incremental:
        change = incremental_change(rows, old_rows, old_incidence, changed)
    else:
        change = full_change(rows)
    clock("changed records and nodes")
    touched = change.touched.hint() if incremental else None

    # hubs and edges of the touched nodes (of all nodes in a full run)
    found = find_hubs(spark, change.gathered, nodes, conf, load_key(cfg.env.secrets), touched)
    found = materialize(found)
    hubs = found
    if incremental:
        kept = read_table(spark, cfg, "identity.hubs").join(touched, "node_id", "left_anti")
        hubs = materialize(kept.unionByName(found))
    hub_ids = Keys.of(hubs.select("node_id"))
    new_edges = materialize(edges(change.gathered, hub_ids.hint(), touched))
    clock("hubs and edges")

    # components and OneIDs of the affected nodes
    if incremental:
        scope = inc.affected_scope(spark, cfg, change, previous_map, hub_ids, new_edges)
        usable, inside = scope.usable, scope.inside
        scoped_nodes = nodes.join(usable.hint(), "node_id", "left_semi")
        # read by assignment, lineage and figures
        previous = materialize(
            previous_map.select("node_id", "oneid").join(
                scope.closed.hint(), "node_id", "left_semi"
            )
        )
    else:
        usable = Keys.of(change.rows.select("node_id").join(hub_ids.hint(), "node_id", "left_anti"))
        inside, scoped_nodes = new_edges, nodes
        previous = None if first_run else previous_map.select("node_id", "oneid")
    clock("affected nodes")
    resolved = _resolve(spark, conf, usable, inside, scoped_nodes, previous, history.minted)
    recomputed = resolved.mapping
    mapping = materialize(
        recomputed.join(scoped_nodes.select("node_id", "id_type", "value_hash"), "node_id").select(
            "node_id", "id_type", "value_hash", "oneid"
        )
    )

    clock("components and assignment")

    # published rows, figures and gates
    if incremental:
        outputs = inc.scoped_outputs(
            change,
            scope,
            previous_map,
            read_table(spark, cfg, "identity.record_oneid"),
            recomputed,
            nodes,
            conf.priority,
        )
        current_profiles = (
            read_table(spark, cfg, "identity.profiles")
            .join(outputs.profile_keys.hint(), "oneid", "left_anti")
            .select("oneid", "identifier_counts")
            .unionByName(outputs.profiles.select("oneid", "identifier_counts"))
        )
        records, with_oneid = inc.records_figures(spark, cfg, change, outputs, last)
        changed_ids = changed_identifiers(previous, recomputed)
        stats = {"changed_records": change.records.size, "recomputed_identifiers": usable.size}
    else:
        owners = materialize(record_oneids(change.rows, recomputed, conf.priority))
        outputs = inc.Outputs(owners, materialize(profiles(change.rows, recomputed, nodes, owners)))
        current_profiles = outputs.profiles
        records = change.rows.select(*RECORD_KEY).distinct().count()
        with_oneid = owners.count()
        changed_ids = 0 if first_run else changed_identifiers(previous, recomputed)
        stats = {"changed_records": records, "recomputed_identifiers": usable.size}
    before = 0 if first_run else previous_map.count()
    figures = size_figures(oneid_sizes(current_profiles))
    stats = {
        "identifiers": figures["identifiers"],
        "oneids": figures["oneids"],
        "largest_component": figures["largest_component"],
        "multi_member_components": figures["multi_member_components"],
        "hubs": hub_ids.size,
        "records": records,
        "records_without_oneid": records - with_oneid,
        "changed_identifiers": changed_ids,
        "changed_share": round(changed_ids / before, 6) if before else 0.0,
        "components_engine": resolved.engine,
        "components_rounds": resolved.cc_rounds,
        "weak_merge_rounds": resolved.weak_rounds,
        "max_oneid": max(figures["max_oneid"], history.minted),
        **stats,
        "conf_hash": inc.conf_hash(conf),
        "histogram": figures["histogram"],
    }
    clock("outputs and figures")
    checks = gates(stats, conf.gates, first_run)
    passed = all(ok for ok, _ in checks.values())
    append(_audit(run_id, hubs, nodes, resolved.rejected), cfg, "identity.hub_audit")
    if not passed:
        append(
            _stats_row(spark, run_id, not incremental, False, stats, checks),
            cfg,
            "identity.run_stats",
        )
        failed = "; ".join(f"{k}: {why}" for k, (ok, why) in checks.items() if not ok)
        raise GateFailedError(f"identity run {run_id}: gate(s) failed, nothing published: {failed}")

    changes = materialize(resolved.changes)
    if incremental:
        inc.publish(cfg, change, scope, found, new_edges, mapping, outputs)
        append(changes.withColumn("run_id", F.lit(run_id)), cfg, "identity.oneid_changes")
        inc.publish_incidence(cfg, change)
    else:
        for frame, name in (
            (new_edges, "edges"),
            (hubs, "hubs"),
            (mapping, "oneid_map"),
            (outputs.records, "record_oneid"),
            (outputs.profiles, "profiles"),
        ):
            overwrite(frame, cfg, f"identity.{name}", deletion_vectors=True)
        append(changes.withColumn("run_id", F.lit(run_id)), cfg, "identity.oneid_changes")
        overwrite(change.rows, cfg, "identity.incidence", deletion_vectors=True)
    clock("publish")
    stats["incidence_version"] = table_version(spark, cfg, "identity.incidence")
    append(
        _stats_row(spark, run_id, not incremental, True, stats, checks), cfg, "identity.run_stats"
    )
    counts = {r.kind: r["count"] for r in changes.groupBy("kind").count().collect()}
    logger.info("identity run %s: %s; changes %s", run_id, stats, counts)
    return IdentityReport(run_id, not incremental, stats, counts)


class _Clock:
    """Logs how long each phase of a run took (the figures that say where time goes)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        logger.info("identity run %s: %s took %.1f s", self.run_id, phase, now - self.last)
        self.last = now


@dataclass(frozen=True)
class _Resolved:
    """New OneIDs of the usable affected nodes, lineage, unused weak edges, engine figures."""

    mapping: DataFrame
    changes: DataFrame
    rejected: DataFrame
    weak_rounds: int
    cc_rounds: int
    engine: str


def _resolve(
    spark: SparkSession,
    conf: IdentityConf,
    usable: Keys,
    inside: DataFrame,
    nodes: DataFrame,
    previous: DataFrame | None,
    minted: int,
) -> _Resolved:
    """Strong components, weak merges within the limits, stable assignment (on the driver when
    the scope is small: :mod:`oneid.identity.local`)."""
    if usable.size == 0:
        empty = spark.createDataFrame([], "node_id long, component long")
        assignment = assign_oneids(empty, previous, minted)
        rejected = spark.createDataFrame([], "src long, dst long, reason string")
        return _Resolved(assignment.mapping, assignment.changes, rejected, 0, 0, "none")
    if usable.size <= conf.local_max_identifiers:
        local = resolve_locally(spark, usable.frame, inside, nodes, previous, minted, conf)
        return _Resolved(
            materialize(local.mapping),
            local.changes,
            local.rejected,
            local.weak_rounds,
            0,
            "local",
        )
    vertices = usable.frame.select(F.col("node_id").alias("id"))
    strong = inside.where(F.col("strength") == "strong")
    components = connected_components(spark, vertices, strong, conf.components)
    labels = materialize(components.components.select(F.col("id").alias("node_id"), "component"))
    weak = merge_weak_edges(labels, nodes, inside.where(F.col("strength") == "weak"), conf)
    assignment = assign_oneids(weak.labels, previous, minted)
    return _Resolved(
        materialize(assignment.mapping),
        assignment.changes,
        weak.rejected,
        weak.rounds,
        components.rounds,
        components.engine,
    )


@dataclass(frozen=True)
class _History:
    """What the published runs so far say."""

    last: dict | None
    """Metrics of the latest published run."""
    minted: int
    """The largest OneID ever minted (so ids are never reused)."""
    published: bool
    """Whether this run id was published already."""


def _history(spark: SparkSession, cfg: OneIdConfig, run_id: str) -> _History:
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    if stats is None:
        return _History(None, 0, False)
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
    return _History(last, int(row["minted"] or 0), bool(row["published"]))


def _stats_row(spark, run_id, full, passed, stats, checks) -> DataFrame:
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


def _audit(run_id, hubs, nodes, rejected) -> DataFrame:
    node_info = nodes.select("node_id", "id_type", "masked")
    hub_rows = hubs.join(node_info, "node_id").select(
        F.lit(run_id).alias("run_id"),
        "rule",
        "node_id",
        "id_type",
        "masked",
        "records",
        "member_ids",
        "threshold",
        F.lit(None).cast("long").alias("other_node_id"),
    )
    edge_rows = rejected.join(node_info, rejected.src == node_info.node_id).select(
        F.lit(run_id).alias("run_id"),
        F.col("reason").alias("rule"),
        F.col("src").alias("node_id"),
        "id_type",
        "masked",
        F.lit(None).cast("long").alias("records"),
        F.lit(None).cast("long").alias("member_ids"),
        F.lit(None).cast("long").alias("threshold"),
        F.col("dst").alias("other_node_id"),
    )
    return hub_rows.unionByName(edge_rows)
