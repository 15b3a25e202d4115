"""The incremental run's scope and writes: only what the changed records can reach.

A run is incremental when the state of the last published run is current (same identity
conf, incidence written by that run, every state table there); otherwise it falls back to a
full rebuild and logs why. Published tables are MERGEd on the affected keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentityConf
from oneid.identity.affected import affected_nodes
from oneid.identity.changes import Change
from oneid.identity.graph import RECORD_KEY, touching
from oneid.identity.keys import Keys
from oneid.identity.outputs import profiles, record_oneids
from oneid.tables import merge_keys, read_table, table_exists, table_version

logger = logging.getLogger(__name__)

STATE_TABLES = ("incidence", "edges", "hubs", "oneid_map", "record_oneid", "profiles")
CONF_FIELDS = {"blocklist", "hubs", "limits", "priority", "max_weak_rounds"}


def conf_hash(conf: IdentityConf) -> str:
    """Fingerprint of the settings that decide the mapping (gates and engine do not)."""
    text = json.dumps(conf.model_dump(include=CONF_FIELDS, mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_is_current(
    spark: SparkSession, cfg: OneIdConfig, last: dict | None, conf: IdentityConf
) -> bool:
    """Whether the last published run left state an incremental run can build on."""
    reason = None
    if last is None:
        reason = "no published run"
    elif last.get("conf_hash") != conf_hash(conf):
        reason = "identity settings changed since the last run"
    elif not all(table_exists(spark, cfg, f"identity.{name}") for name in STATE_TABLES):
        reason = "identity state tables missing"
    elif "row_hash" not in read_table(spark, cfg, "identity.incidence").columns:
        reason = "identity.incidence written by an older version"
    elif str(table_version(spark, cfg, "identity.incidence")) != last.get("incidence_version"):
        reason = "identity.incidence changed after the last published run"
    if reason:
        logger.warning("identity: full rebuild (%s)", reason)
    return reason is None


@dataclass(frozen=True)
class Scope:
    """What an incremental run recomputes."""

    closed: Keys
    """Nodes whose OneID may change: the affected set, hubs and vanished nodes included."""
    usable: Keys
    """``closed`` without hubs and nodes no record holds any more: the graph's vertices."""
    inside: DataFrame
    """Current edges between usable nodes."""
    gone: DataFrame
    """(src, dst) of previous edges with an end in a touched node."""


def affected_scope(
    spark: SparkSession,
    cfg: OneIdConfig,
    change: Change,
    previous_map: DataFrame,
    hub_ids: Keys,
    new_edges: DataFrame,
) -> Scope:
    """Seeds (touched nodes and their previous neighbours) closed by :func:`affected_nodes`."""
    touched = change.touched
    old_edges = read_table(spark, cfg, "identity.edges")
    gone = touching(old_edges.select("src", "dst"), touched.hint()).localCheckpoint(eager=True)
    seeds = Keys.of(
        touched.frame.unionByName(gone.select(F.col("src").alias("node_id"))).unionByName(
            gone.select(F.col("dst").alias("node_id"))
        )
    )
    both_ways = old_edges.select("src", "dst").unionByName(new_edges.select("src", "dst"))
    closed = affected_nodes(seeds, previous_map.select("node_id", "oneid"), both_ways)
    vanished = Keys.of(
        touched.frame.join(change.gathered.select("node_id"), "node_id", "left_anti")
    )
    usable = Keys.of(
        closed.frame.join(hub_ids.hint(), "node_id", "left_anti").join(
            vanished.hint(), "node_id", "left_anti"
        )
    )
    ends = usable.hint()
    kept = (
        old_edges.join(ends.withColumnRenamed("node_id", "src"), "src", "left_semi")
        .join(ends.withColumnRenamed("node_id", "dst"), "dst", "left_semi")
        .join(touched.hint().withColumnRenamed("node_id", "src"), "src", "left_anti")
        .join(touched.hint().withColumnRenamed("node_id", "dst"), "dst", "left_anti")
    )
    inside = kept.unionByName(new_edges).localCheckpoint(eager=True)
    return Scope(closed, usable, inside, gone)


@dataclass(frozen=True)
class Outputs:
    """New published rows and, for an incremental run, the keys they replace."""

    records: DataFrame
    profiles: DataFrame
    record_keys: Keys | None = None
    profile_keys: Keys | None = None


def scoped_outputs(
    change: Change,
    scope: Scope,
    previous_map: DataFrame,
    recomputed: DataFrame,
    nodes: DataFrame,
    priority: tuple[str, ...],
) -> Outputs:
    """record_oneid rows of every record holding a node of ``scope.closed`` (or changed), and
    profiles of the OneIDs those nodes had or have (a OneID's identifiers are all in scope)."""
    record_keys = Keys.of(
        change.rows_of_nodes(scope.closed.hint())
        .select(*RECORD_KEY)
        .unionByName(change.records.frame)
    )
    rows = change.rows_of_records(record_keys.hint()).localCheckpoint(eager=True)
    needed = Keys.of(rows.select("node_id"))
    lookup = (
        previous_map.select("node_id", "oneid")
        .join(needed.hint(), "node_id", "left_semi")
        .join(scope.closed.hint(), "node_id", "left_anti")
        .unionByName(recomputed.join(needed.hint(), "node_id", "left_semi"))
    )
    records = record_oneids(rows, lookup, priority).localCheckpoint(eager=True)
    new_ids = recomputed.select("oneid").distinct()
    owned = records.join(new_ids, "oneid", "left_semi")
    held = change.rows_of_nodes(scope.usable.hint())
    rows_profiles = profiles(held, recomputed, nodes, owned).localCheckpoint(eager=True)
    profile_keys = Keys.of(
        previous_map.join(scope.closed.hint(), "node_id", "left_semi")
        .select("oneid")
        .unionByName(recomputed.select("oneid"))
    )
    return Outputs(records, rows_profiles, record_keys, profile_keys)


def publish(
    cfg: OneIdConfig,
    change: Change,
    scope: Scope,
    hubs: DataFrame,
    new_edges: DataFrame,
    mapping: DataFrame,
    outputs: Outputs,
) -> None:
    """MERGE the recomputed rows into the state and published tables (incidence last)."""
    touched = change.touched.frame
    if change.touched.size:
        merge_keys(hubs, touched, cfg, "identity.hubs", ["node_id"])
        edge_keys = scope.gone.unionByName(new_edges.select("src", "dst"))
        merge_keys(new_edges, edge_keys, cfg, "identity.edges", ["src", "dst"])
    if scope.closed.size:
        merge_keys(mapping, scope.closed.frame, cfg, "identity.oneid_map", ["node_id"])
    if outputs.record_keys.size:
        merge_keys(
            outputs.records, outputs.record_keys.frame, cfg, "identity.record_oneid", RECORD_KEY
        )
    if outputs.profile_keys.size:
        merge_keys(
            outputs.profiles, outputs.profile_keys.frame, cfg, "identity.profiles", ["oneid"]
        )


def publish_incidence(cfg: OneIdConfig, change: Change) -> None:
    """The changed records' incidence rows: written last, they mark the change as consumed."""
    if change.records.size:
        keys = change.rows.select(*RECORD_KEY, "node_id").unionByName(
            change.old_rows.select(*RECORD_KEY, "node_id")
        )
        merge_keys(change.rows, keys, cfg, "identity.incidence", [*RECORD_KEY, "node_id"])


def records_figures(spark, cfg, change: Change, outputs: Outputs, last: dict) -> tuple[int, int]:
    """(records, records with a OneID) after the run, from the last run's figures and the change."""
    present = change.rows.select(*RECORD_KEY).distinct().count()
    were = change.old_rows.select(*RECORD_KEY).distinct().count()
    total = int(last["records"]) + present - were
    before = int(last["records"]) - int(last["records_without_oneid"])
    replaced = (
        read_table(spark, cfg, "identity.record_oneid")
        .join(outputs.record_keys.hint(), RECORD_KEY, "left_semi")
        .count()
    )
    return total, before - replaced + outputs.records.count()
