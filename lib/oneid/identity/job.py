"""``oneid identity --run-id R [--full]``: silver.identifiers → stable OneIDs.

Steps: extend the node dictionary; find hubs; build edges; pick the *affected* nodes (all of
them with ``--full``; otherwise the nodes of records that changed since the last run, nodes
whose hub status changed, everything that shared a OneID with them, closed under the current
edges); connected components over strong edges; weak edges within the per-type limits; stable
assignment; gates; publish. Because the affected set is closed under every usable edge, an
incremental run computes exactly what a full rebuild computes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.errors import DataContractError, GateFailedError
from oneid.identity.assign import assign_oneids
from oneid.identity.components import connected_components
from oneid.identity.graph import base_type, edges, new_nodes, record_nodes
from oneid.identity.hubs import find_hubs
from oneid.identity.limits import merge_weak_edges
from oneid.session import remove_checkpoint_dir
from oneid.standardize.hashing import load_key
from oneid.tables import append, overwrite, read_table, read_table_or_none

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
    conf = cfg.pipeline.identity
    identifiers = read_table_or_none(spark, cfg, "silver.identifiers")
    if identifiers is None:
        raise DataContractError("silver.identifiers is missing: run `oneid standardize` first")
    done = read_table_or_none(spark, cfg, "identity.run_stats")
    if done is not None and done.where((F.col("run_id") == run_id) & F.col("passed")).count():
        raise DataContractError(f"identity run {run_id} already published; use a new --run-id")
    try:
        return _run(spark, cfg, identifiers, run_id, full, conf)
    finally:
        remove_checkpoint_dir(spark)


def _run(spark, cfg, identifiers, run_id, full, conf) -> IdentityReport:
    old_nodes = read_table_or_none(spark, cfg, "identity.nodes")
    added = new_nodes(identifiers, old_nodes, run_id).localCheckpoint(eager=True)
    if added.count():
        append(added, cfg, "identity.nodes")
    nodes = read_table(spark, cfg, "identity.nodes")
    incidence = record_nodes(identifiers, nodes).localCheckpoint(eager=True)
    hubs = find_hubs(spark, incidence, nodes, conf, load_key(cfg.env.secrets)).localCheckpoint(
        eager=True
    )
    graph_edges = edges(incidence, hubs).localCheckpoint(eager=True)

    previous_map = read_table_or_none(spark, cfg, "identity.oneid_map")
    first_run = previous_map is None
    usable = nodes.select("node_id").join(hubs.select("node_id"), "node_id", "left_anti")
    if full or first_run:
        affected = usable
    else:
        affected = _affected(spark, cfg, incidence, hubs, graph_edges, previous_map, usable)
    affected = affected.localCheckpoint(eager=True)

    vertices = affected.select(F.col("node_id").alias("id"))
    inside = graph_edges.join(affected.select(F.col("node_id").alias("src")), "src").join(
        affected.select(F.col("node_id").alias("dst")), "dst"
    )
    strong = inside.where(F.col("strength") == "strong")
    components = connected_components(spark, vertices, strong, conf.components)
    labels = components.components.select(
        F.col("id").alias("node_id"), "component"
    ).localCheckpoint(eager=True)
    weak = merge_weak_edges(labels, nodes, inside.where(F.col("strength") == "weak"), conf)

    minted = _minted_so_far(spark, cfg)
    previous = (
        None if first_run else previous_map.select("node_id", "oneid").join(affected, "node_id")
    )
    assignment = assign_oneids(weak.labels, previous, minted)
    recomputed = assignment.mapping.localCheckpoint(eager=True)
    if first_run:
        mapping = recomputed
    else:
        untouched = (
            previous_map.select("node_id", "oneid")
            .join(affected.select("node_id"), "node_id", "left_anti")
            .join(hubs.select("node_id"), "node_id", "left_anti")
        )
        mapping = untouched.unionByName(recomputed)
    mapping = (
        mapping.join(nodes.select("node_id", "id_type", "value_hash"), "node_id")
        .select("node_id", "id_type", "value_hash", "oneid")
        .localCheckpoint(eager=True)
    )
    changes = assignment.changes.localCheckpoint(eager=True)

    records = _record_oneids(incidence, mapping, conf.priority).localCheckpoint(eager=True)
    stats = _stats(
        mapping,
        previous_map,
        nodes,
        records,
        incidence,
        hubs,
        weak.rounds,
        components.rounds,
        components.engine,
        first_run,
        minted,
    )
    gates = _gates(stats, conf.gates, first_run)
    passed = all(ok for ok, _ in gates.values())
    stats_row = spark.createDataFrame(
        [
            (
                run_id,
                full or first_run,
                passed,
                {k: str(v) for k, v in stats.items() if k != "histogram"},
                stats["histogram"],
                {k: ("pass" if ok else "FAIL") + ": " + why for k, (ok, why) in gates.items()},
            )
        ],
        "run_id string, full boolean, passed boolean, metrics map<string,string>, "
        "size_histogram map<string,long>, gates map<string,string>",
    ).withColumn("finished_at", F.current_timestamp())
    audit = _audit(run_id, hubs, nodes, weak.rejected)
    append(audit, cfg, "identity.hub_audit")
    if not passed:
        append(stats_row, cfg, "identity.run_stats")
        failed = "; ".join(f"{k}: {why}" for k, (ok, why) in gates.items() if not ok)
        raise GateFailedError(f"identity run {run_id}: gate(s) failed, nothing published: {failed}")

    overwrite(graph_edges, cfg, "identity.edges")
    overwrite(hubs, cfg, "identity.hubs")
    overwrite(incidence.select("source", "record_key", "node_id"), cfg, "identity.incidence")
    overwrite(mapping, cfg, "identity.oneid_map")
    overwrite(records, cfg, "identity.record_oneid")
    append(changes.withColumn("run_id", F.lit(run_id)), cfg, "identity.oneid_changes")
    overwrite(_profiles(incidence, mapping, nodes, records), cfg, "identity.profiles")
    append(stats_row, cfg, "identity.run_stats")
    counts = {r.kind: r["count"] for r in changes.groupBy("kind").count().collect()}
    logger.info("identity run %s: %s; changes %s", run_id, stats, counts)
    return IdentityReport(run_id, full or first_run, stats, counts)


def _affected(spark, cfg, incidence, hubs, graph_edges, previous_map, usable) -> DataFrame:
    """Nodes whose component may differ from the previous run, closed under current edges."""
    old_incidence = read_table_or_none(spark, cfg, "identity.incidence")
    old_hubs = read_table_or_none(spark, cfg, "identity.hubs")
    now = incidence.select("source", "record_key", "node_id")
    changed_records = (
        now.exceptAll(old_incidence)
        .unionByName(old_incidence.exceptAll(now))
        .select("source", "record_key")
        .distinct()
    )
    touched = (
        now.unionByName(old_incidence)
        .join(changed_records, ["source", "record_key"])
        .select("node_id")
    )
    hub_change = (
        hubs.select("node_id")
        .exceptAll(old_hubs.select("node_id"))
        .unionByName(old_hubs.select("node_id").exceptAll(hubs.select("node_id")))
    )
    # a node whose hub status changed: its neighbours (via records) are touched too
    hub_records = incidence.join(hub_change, "node_id").select("source", "record_key")
    touched = (
        touched.unionByName(incidence.join(hub_records, ["source", "record_key"]).select("node_id"))
        .unionByName(hub_change)
        .distinct()
    )
    old_ids = previous_map.select("node_id", "oneid")
    frontier = touched
    affected = touched
    for _ in range(50):
        grown = (
            frontier.join(old_ids, "node_id")
            .select("oneid")
            .distinct()
            .join(old_ids, "oneid")
            .select("node_id")
            .unionByName(
                frontier.join(
                    graph_edges.select(F.col("src").alias("node_id"), F.col("dst")), "node_id"
                ).select(F.col("dst").alias("node_id"))
            )
            .unionByName(
                frontier.join(
                    graph_edges.select(F.col("dst").alias("node_id"), F.col("src")), "node_id"
                ).select(F.col("src").alias("node_id"))
            )
            .distinct()
        )
        frontier = grown.join(affected, "node_id", "left_anti").localCheckpoint(eager=True)
        if frontier.count() == 0:
            break
        affected = affected.unionByName(frontier).distinct().localCheckpoint(eager=True)
    return affected.join(usable, "node_id")


def _minted_so_far(spark, cfg) -> int:
    """The largest OneID ever minted (kept in run_stats, so ids are never reused)."""
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    if stats is None:
        return 0
    row = (
        stats.where(F.col("passed"))
        .agg(F.max(F.col("metrics")["max_oneid"].cast("long")))
        .first()[0]
    )
    return int(row or 0)


def _record_oneids(
    incidence: DataFrame, mapping: DataFrame, priority: tuple[str, ...]
) -> DataFrame:
    """A record's OneID is that of its highest-priority identifier that has one."""
    rank = F.lit(len(priority))
    for index, name in reversed(list(enumerate(priority))):
        rank = F.when(base_type() == name, F.lit(index)).otherwise(rank)
    ranked = incidence.join(mapping.select("node_id", "oneid"), "node_id").withColumn("_rank", rank)
    best = ranked.groupBy("source", "record_key").agg(
        F.min(F.struct("_rank", "node_id", "oneid")).alias("b")
    )
    return best.select("source", "record_key", F.col("b.oneid").alias("oneid"))


def _stats(
    mapping,
    previous_map,
    nodes,
    records,
    incidence,
    hubs,
    weak_rounds,
    cc_rounds,
    engine,
    first_run,
    minted,
) -> dict:
    sizes = (
        mapping.groupBy("oneid")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((base_type() == "member_id").cast("int")).alias("members"),
        )
        .localCheckpoint(eager=True)
    )
    agg = sizes.agg(
        F.count(F.lit(1)).alias("oneids"),
        F.max("n").alias("largest"),
        F.max("oneid").alias("max_oneid"),
        F.sum((F.col("members") > 1).cast("int")).alias("multi"),
    ).first()
    buckets = (
        F.when(F.col("n") == 1, "1")
        .when(F.col("n") <= 2, "2")
        .when(F.col("n") <= 5, "3-5")
        .when(F.col("n") <= 10, "6-10")
        .when(F.col("n") <= 50, "11-50")
        .otherwise(">50")
    )
    histogram = {r["b"]: r["count"] for r in sizes.groupBy(buckets.alias("b")).count().collect()}
    changed, before = 0, 0
    if not first_run:
        both = previous_map.select("node_id", F.col("oneid").alias("old")).join(
            mapping.select("node_id", "oneid"), "node_id", "left"
        )
        row = both.agg(
            F.count(F.lit(1)).alias("before"),
            F.sum((F.col("oneid").isNull() | (F.col("oneid") != F.col("old"))).cast("int")).alias(
                "changed"
            ),
        ).first()
        changed, before = int(row["changed"] or 0), int(row["before"])
    total_records = incidence.select("source", "record_key").distinct().count()
    return {
        "identifiers": mapping.count(),
        "oneids": int(agg["oneids"]),
        "largest_component": int(agg["largest"] or 0),
        "multi_member_components": int(agg["multi"] or 0),
        "hubs": hubs.count(),
        "records": total_records,
        "records_without_oneid": total_records - records.count(),
        "changed_identifiers": changed,
        "changed_share": round(changed / before, 6) if before else 0.0,
        "components_engine": engine,
        "components_rounds": cc_rounds,
        "weak_merge_rounds": weak_rounds,
        "max_oneid": max(int(agg["max_oneid"] or 0), minted),
        "histogram": histogram,
    }


def _gates(stats: dict, gates, first_run: bool) -> dict[str, tuple[bool, str]]:
    result = {
        "max_component_identifiers": (
            stats["largest_component"] <= gates.max_component_identifiers,
            f"largest component {stats['largest_component']} <= {gates.max_component_identifiers}",
        ),
        "max_multi_member_components": (
            stats["multi_member_components"] <= gates.max_multi_member_components,
            f"{stats['multi_member_components']} components with >1 member id "
            f"<= {gates.max_multi_member_components}",
        ),
    }
    result["max_changed_share"] = (
        first_run or stats["changed_share"] <= gates.max_changed_share,
        f"changed share {stats['changed_share']} <= {gates.max_changed_share}"
        + (" (first run exempt)" if first_run else ""),
    )
    return result


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


def _profiles(incidence, mapping, nodes, records) -> DataFrame:
    """One golden row per OneID: counts per type, best masked phone/email, seen, sources.

    The best phone / email is the one in most records, then the most recently seen.
    """
    holders = incidence.join(mapping.select("node_id", "oneid"), "node_id").join(
        nodes.select("node_id", "masked"), "node_id"
    )
    per_node = holders.groupBy("oneid", "node_id", "id_type", "masked").agg(
        F.max("event_time").alias("last_seen"),
        F.min("event_time").alias("first_seen"),
        F.count(F.lit(1)).alias("records"),
    )

    def best(kind: str):
        rank = F.when(base_type() == kind, F.struct("records", "last_seen", "node_id"))
        return F.max_by(F.when(base_type() == kind, F.col("masked")), rank).alias(f"best_{kind}")

    summary = per_node.groupBy("oneid").agg(
        best("phone"),
        best("email"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    by_type = (
        per_node.groupBy("oneid", base_type().alias("t"))
        .count()
        .groupBy("oneid")
        .agg(
            F.map_from_entries(F.array_sort(F.collect_list(F.struct("t", "count")))).alias(
                "identifier_counts"
            )
        )
    )
    sources = records.groupBy("oneid").agg(
        F.array_sort(F.collect_set("source")).alias("sources"),
        F.count(F.lit(1)).alias("records"),
    )
    return summary.join(by_type, "oneid").join(sources, "oneid", "left")
