"""The incremental run's scope and writes: only what the changed records can reach.

A run is incremental when the state of the last published run is current (same identity
conf, incidence written by that run, every state table there) and the graph is large enough for
that to pay (``identity.incremental_min_identifiers``); otherwise it is a full rebuild and logs
why. Published tables are MERGEd on the affected keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentityConf
from oneid.identity.affected import affected_nodes
from oneid.identity.changes import Change
from oneid.identity.graph import RECORD_KEY, touching
from oneid.identity.keys import Keys
from oneid.identity.outputs import profiles, record_oneids
from oneid.tables import merge_keys, read_table, table_exists, table_version

logger = logging.getLogger(__name__)

MERGE_KEYS = {
    "hubs": ["node_id"],
    "edges": ["src", "dst"],
    "oneid_map": ["node_id"],
    "record_oneid": RECORD_KEY,
    "profiles": ["oneid"],
    "incidence": [*RECORD_KEY, "node_id"],
}
"""The identity tables an incremental run reads and MERGEs (in the order it writes them), with
the key it MERGEs them on."""
STATE_TABLES = tuple(MERGE_KEYS)
MOSTLY_UNCHANGED = frozenset({"hubs", "oneid_map", "record_oneid"})
"""Tables where most rows in a run's scope keep their value: compared before the MERGE."""
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


def large_enough(last: dict, conf: IdentityConf) -> bool:
    """Whether the graph is large enough for an incremental run to beat a full rebuild."""
    size = int(last.get("identifiers", 0))
    if size >= conf.incremental_min_identifiers:
        return True
    logger.info(
        "identity: full rebuild (%d identifiers, fewer than identity.incremental_min_identifiers "
        "= %d)",
        size,
        conf.incremental_min_identifiers,
    )
    return False


@dataclass(frozen=True)
class Scope:
    """What an incremental run recomputes."""

    closed: Keys
    """Nodes whose OneID may change: the affected set, hubs and vanished nodes included."""
    usable: Keys
    """``closed`` without hubs and nodes no record holds any more: the graph's vertices."""
    inside: DataFrame
    """(src, dst, strength) of the current edges between usable nodes."""
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
    """The graph changes of the touched nodes, closed by :func:`affected_nodes`."""
    touched = change.touched
    # read by every step below (and twice per closure round): three columns, once, into memory
    old_edges = materialize(
        read_table(spark, cfg, "identity.edges").select("src", "dst", "strength")
    )
    gone = materialize(touching(old_edges, touched.hint()))
    vanished = Keys.of(
        touched.frame.join(change.gathered.select("node_id"), "node_id", "left_anti")
    )
    old_hubs = read_table(spark, cfg, "identity.hubs").select("node_id")
    seeds = structural_seeds(change, previous_map, old_hubs, hub_ids, vanished, gone, new_edges)
    both_ways = old_edges.drop("strength").unionByName(new_edges.select("src", "dst"))
    closed = affected_nodes(seeds, previous_map.select("node_id", "oneid"), both_ways)
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
    # an edge of a touched node outside ``closed`` has both ends outside (closed is edge-closed)
    renewed = new_edges.join(ends.withColumnRenamed("node_id", "src"), "src", "left_semi")
    inside = materialize(kept.unionByName(renewed.select(*old_edges.columns)))
    return Scope(closed, usable, inside, gone.select("src", "dst"))


def structural_seeds(
    change: Change,
    previous_map: DataFrame,
    old_hubs: DataFrame,
    hub_ids: Keys,
    vanished: Keys,
    gone: DataFrame,
    new_edges: DataFrame,
) -> Keys:
    """Touched nodes whose place in the graph changed: the only ones that can change a OneID.

    A node is a seed when an edge at it appeared, vanished or changed strength, when it became
    or stopped being a hub, or when it has no previous OneID (new, or a hub before) or no record
    any more. Components, weak merges and assignment read nothing else (not an edge's records
    or dates), so a touched node without such a change keeps its OneID unless the closure of
    the seeds reaches it.
    """
    touched = change.touched.hint()
    now = new_edges.select("src", "dst", "strength")
    differ = _either_only(gone, now)
    ends = differ.select(F.col("src").alias("node_id")).unionByName(
        differ.select(F.col("dst").alias("node_id"))
    )
    hubs_before = old_hubs.join(touched, "node_id", "left_semi")
    hubs_now = hub_ids.frame.join(touched, "node_id", "left_semi")
    hub_changed = _either_only(hubs_before, hubs_now)
    unmapped = change.touched.frame.join(previous_map.select("node_id"), "node_id", "left_anti")
    seeds = Keys.of(ends.unionByName(hub_changed).unionByName(unmapped).unionByName(vanished.frame))
    logger.info("structural seeds: %d of %d touched nodes", seeds.size, change.touched.size)
    return seeds


def _either_only(a: DataFrame, b: DataFrame) -> DataFrame:
    """Rows in one of ``a`` and ``b`` but not in the other."""
    return a.exceptAll(b).unionByName(b.exceptAll(a))


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
    published_records: DataFrame,
    recomputed: DataFrame,
    nodes: DataFrame,
    priority: tuple[str, ...],
) -> Outputs:
    """record_oneid rows of every changed record and every record holding a node of
    ``scope.closed``; profiles of the OneIDs with a touched or recomputed identifier, and
    deletes for the OneIDs the closed nodes had (a OneID's identifiers are all in or all out)."""
    record_keys = Keys.of(
        change.rows_of_nodes(scope.closed.hint())
        .select(*RECORD_KEY)
        .unionByName(change.records.frame)
    )
    rows = materialize(change.rows_of_records(record_keys.hint()))
    needed = Keys.of(rows.select("node_id"))
    kept_map = previous_map.select("node_id", "oneid").join(
        scope.closed.hint(), "node_id", "left_anti"
    )
    lookup = kept_map.join(needed.hint(), "node_id", "left_semi").unionByName(
        recomputed.join(needed.hint(), "node_id", "left_semi")
    )
    records = materialize(record_oneids(rows, lookup, priority))

    kept_ids = kept_map.join(change.touched.hint(), "node_id", "left_semi").select("oneid")
    profile_ids = Keys.of(kept_ids.unionByName(recomputed.select("oneid")))
    members = materialize(
        kept_map.join(profile_ids.hint(), "oneid", "left_semi").unionByName(recomputed)
    )
    member_ids = Keys.of(members.select("node_id")).hint()
    held = change.rows_of_nodes(member_ids)
    owned = (
        published_records.join(profile_ids.hint(), "oneid", "left_semi")
        .join(record_keys.hint(), RECORD_KEY, "left_anti")
        .unionByName(records.join(profile_ids.hint(), "oneid", "left_semi"))
    )
    member_nodes = nodes.join(member_ids, "node_id", "left_semi")
    rows_profiles = materialize(profiles(held, members, member_nodes, owned))
    profile_keys = Keys.of(
        previous_map.join(scope.closed.hint(), "node_id", "left_semi")
        .select("oneid")
        .unionByName(profile_ids.frame)
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
    if change.touched.size:
        _merge(hubs, change.touched.hint(), cfg, "hubs")
        edge_keys = scope.gone.unionByName(new_edges.select("src", "dst"))
        _merge(new_edges, edge_keys, cfg, "edges")
    if scope.closed.size:
        _merge(mapping, scope.closed.hint(), cfg, "oneid_map")
    if outputs.record_keys.size:
        _merge(outputs.records, outputs.record_keys.hint(), cfg, "record_oneid")
    if outputs.profile_keys.size:
        _merge(outputs.profiles, outputs.profile_keys.frame, cfg, "profiles")


def publish_incidence(cfg: OneIdConfig, change: Change) -> None:
    """The changed records' incidence rows: written last, they mark the change as consumed."""
    if change.records.size:
        keys = change.rows.select(*MERGE_KEYS["incidence"]).unionByName(
            change.old_rows.select(*MERGE_KEYS["incidence"])
        )
        _merge(change.rows, keys, cfg, "incidence")


def _merge(rows: DataFrame, scope: DataFrame, cfg: OneIdConfig, table: str) -> None:
    """:func:`merge_keys` into ``identity.<table>`` on its key; the tables of
    ``MOSTLY_UNCHANGED`` are compared first (their scope hinted for that join by the caller)."""
    skip = table in MOSTLY_UNCHANGED
    merge_keys(rows, scope, cfg, f"identity.{table}", MERGE_KEYS[table], skip_unchanged=skip)


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
