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

from oneid.checkpoint import counted, materialize
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentityConf
from oneid.identity.affected import affected_nodes
from oneid.identity.changes import (
    APPEND_OPERATIONS,
    FEED_OPERATIONS,
    Change,
    changed_records,
    incremental_change,
    records_in_feed,
)
from oneid.identity.graph import (
    RECORD_KEY,
    edges,
    held_nodes,
    record_nodes,
    record_pairs,
    touching,
)
from oneid.identity.hubs import find_hubs
from oneid.identity.keys import Keys, hinted
from oneid.identity.outputs import profiles, record_oneids
from oneid.identity.plan import Clock, Plan, Published, extend_nodes
from oneid.identity.publish import MERGE_KEYS, STATE_TABLES, Write
from oneid.identity.stats import changed_identifiers
from oneid.standardize.hashing import load_key
from oneid.tables import (
    change_feed,
    commit_id,
    commit_operations,
    read_table,
    read_version,
    table_exists,
    table_schema,
    table_version,
)

logger = logging.getLogger(__name__)

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
    elif "row_hash" not in table_schema(spark, cfg, "identity.incidence").fieldNames():
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
    vanished = Keys.of(touched.frame.join(held_nodes(change.gathered), "node_id", "left_anti"))
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


@dataclass(frozen=True, kw_only=True)
class IncrementalPlan(Plan):
    """A run that recomputes the affected scope and MERGEs its rows into the tables."""

    change: Change
    scope: Scope
    previous_map: DataFrame
    """The whole previous ``identity.oneid_map``."""
    published_records: DataFrame
    """The previous ``identity.record_oneid``."""
    published_profiles: DataFrame
    """The previous ``identity.profiles``."""
    last: dict
    """Figures of the last published run."""

    @property
    def full(self) -> bool:
        return False

    def outputs(self, recomputed: DataFrame) -> Published:
        """record_oneid rows of every changed record and every record holding a node of the
        closed scope; profiles of the OneIDs with a touched or recomputed identifier, and
        deletes for the OneIDs the closed nodes had (a OneID's identifiers are all in or out)."""
        change, scope = self.change, self.scope
        record_keys = Keys.of(
            change.rows_of_nodes(scope.closed.hint())
            .select(*RECORD_KEY)
            .unionByName(change.records.frame)
        )
        rows = materialize(change.rows_of_records(record_keys.hint()))
        needed = Keys.of(rows.select("node_id"))
        kept_map = self.previous_map.select("node_id", "oneid").join(
            scope.closed.hint(), "node_id", "left_anti"
        )
        lookup = kept_map.join(needed.hint(), "node_id", "left_semi").unionByName(
            recomputed.join(needed.hint(), "node_id", "left_semi")
        )
        records, recomputed_rows = counted(record_oneids(rows, lookup, self.priority))

        kept_ids = kept_map.join(change.touched.hint(), "node_id", "left_semi").select("oneid")
        profile_ids = Keys.of(kept_ids.unionByName(recomputed.select("oneid")))
        members = materialize(
            kept_map.join(profile_ids.hint(), "oneid", "left_semi").unionByName(recomputed)
        )
        member_ids = Keys.of(members.select("node_id")).hint()
        owned = (
            self.published_records.join(profile_ids.hint(), "oneid", "left_semi")
            .join(record_keys.hint(), RECORD_KEY, "left_anti")
            .unionByName(records.join(profile_ids.hint(), "oneid", "left_semi"))
        )
        member_nodes = self.nodes.join(member_ids, "node_id", "left_semi")
        held = change.rows_of_nodes(member_ids)
        rows_profiles = materialize(profiles(held, members, member_nodes, owned))
        profile_keys = Keys.of(
            self.previous_map.join(scope.closed.hint(), "node_id", "left_semi")
            .select("oneid")
            .unionByName(profile_ids.frame)
        )
        all_profiles = (
            self.published_profiles.join(profile_keys.hint(), "oneid", "left_anti")
            .select("oneid", "identifier_counts")
            .unionByName(rows_profiles.select("oneid", "identifier_counts"))
        )
        total, with_oneid = self._records_figures(record_keys, recomputed_rows)
        moved = changed_identifiers(self.previous, recomputed)
        return Published(
            records=records,
            profiles=rows_profiles,
            all_profiles=all_profiles,
            records_total=total,
            records_with_oneid=with_oneid,
            changed_identifiers=moved,
            record_keys=record_keys,
            profile_keys=profile_keys,
        )

    def _records_figures(self, record_keys: Keys, recomputed: int) -> tuple[int, int]:
        """(records, records with a OneID) after the run, from the last figures, the change and
        the ``recomputed`` record_oneid rows."""
        change, last = self.change, self.last
        present = change.rows.select(*RECORD_KEY).distinct().count()
        were = change.old_rows.select(*RECORD_KEY).distinct().count()
        total = int(last["records"]) + present - were
        before = int(last["records"]) - int(last["records_without_oneid"])
        replaced = self.published_records.join(record_keys.hint(), RECORD_KEY, "left_semi").count()
        return total, before - replaced + recomputed

    def writes(self, mapping: DataFrame, published: Published) -> list[Write]:
        """MERGEs of the recomputed rows within the keys the run recomputed (incidence last)."""
        change, scope = self.change, self.scope
        writes = []
        if change.touched.size:
            edge_keys = scope.gone.unionByName(self.edges.select("src", "dst"))
            writes += [
                Write("hubs", self.recomputed_hubs, change.touched.hint()),
                Write("edges", self.edges, edge_keys),
            ]
        if scope.closed.size:
            writes.append(Write("oneid_map", mapping, scope.closed.hint()))
        if published.record_keys.size:
            writes.append(Write("record_oneid", published.records, published.record_keys.hint()))
        if published.profile_keys.size:
            writes.append(Write("profiles", published.profiles, published.profile_keys.frame))
        if change.records.size:
            keys = MERGE_KEYS["incidence"]
            rows = change.rows.select(*keys).unionByName(change.old_rows.select(*keys))
            # no changed record was in incidence (a day of new records): all their keys are new
            new = change.old_rows.isEmpty()
            writes.append(Write("incidence", change.rows, rows, new=new))
        return writes


@dataclass(frozen=True)
class SilverFeed:
    """``silver.identifiers``' changes since the version the last run read."""

    rows: DataFrame
    appended: bool
    """Every commit of the range appended (:data:`APPEND_OPERATIONS`)."""

    @property
    def label(self) -> str:
        """How the run found its changed records (``run_stats.metrics.changes_from``)."""
        return "change feed (appends)" if self.appended else "change feed"


def _silver_feed(spark: SparkSession, cfg: OneIdConfig, last: dict) -> SilverFeed | None:
    """``silver.identifiers``' changes since the silver version the last run read, when its
    change feed gives them (:data:`FEED_OPERATIONS`) and the table is the one that run read:
    its commit of that version is the one the run recorded (a table deleted and written anew,
    or copied in from elsewhere, numbers its commits from 0 again)."""
    since, read = last.get("silver_version"), last.get("silver_commit")
    if since is None or read is None:
        return None
    name = "silver.identifiers"
    if commit_id(spark, cfg, name, int(since)) != read:
        logger.info(
            "identity: %s is not the table the last run read (its commit %s is another or gone)",
            name,
            since,
        )
        return None
    now = read_version(spark, cfg, name)
    operations = commit_operations(spark, cfg, name, int(since), now)
    feed = None
    if operations <= FEED_OPERATIONS:
        feed = change_feed(spark, cfg, name, int(since), now)
    else:
        logger.info("identity: %s commits %s name every record", name, operations - FEED_OPERATIONS)
    logger.info(
        "identity: changed records %s",
        "by a join with silver" if feed is None else f"from the change feed ({operations})",
    )
    return None if feed is None else SilverFeed(feed, operations <= APPEND_OPERATIONS)


def incremental_plan(
    spark: SparkSession,
    cfg: OneIdConfig,
    identifiers: DataFrame,
    run_id: str,
    previous_map: DataFrame,
    clock: Clock,
    last: dict,
) -> IncrementalPlan:
    """The changed records, the hubs and edges of the nodes they touch, the affected scope."""
    conf = cfg.pipeline.identity
    old_incidence = read_table(spark, cfg, "identity.incidence")
    feed = _silver_feed(spark, cfg, last)
    changes_from = "silver join" if feed is None else feed.label
    if feed is None:
        changed, silver, old_rows = changed_records(identifiers, old_incidence)
    else:
        changed, silver, old_rows = records_in_feed(
            feed.rows, identifiers, old_incidence, feed.appended
        )
    changed_rows = silver.count()  # materialised: a cheap count
    nodes, _ = extend_nodes(spark, cfg, silver, run_id, changed_rows)
    rows = materialize(record_nodes(hinted(silver, changed_rows), nodes))
    change = incremental_change(rows, old_rows, old_incidence, changed)
    clock("changed records and nodes")

    touched = change.touched.hint()
    key = load_key(cfg.env.secrets)
    events = cfg.pipeline.sources_of("events")
    pairs = materialize(record_pairs(change.gathered, change.sources, touched))
    found = materialize(find_hubs(spark, change.gathered, pairs, nodes, conf, key, touched, events))
    kept = read_table(spark, cfg, "identity.hubs").join(touched, "node_id", "left_anti")
    hubs = materialize(kept.unionByName(found))
    hub_ids = Keys.of(hubs.select("node_id"))
    new_edges = materialize(edges(pairs, hub_ids.hint()))
    clock("hubs and edges")

    scope = affected_scope(spark, cfg, change, previous_map, hub_ids, new_edges)
    # read by assignment, lineage and figures
    previous = materialize(
        previous_map.select("node_id", "oneid").join(scope.closed.hint(), "node_id", "left_semi")
    )
    clock("affected nodes")
    return IncrementalPlan(
        rows=rows,
        nodes=nodes,
        vertex_nodes=nodes.join(scope.usable.hint(), "node_id", "left_semi"),
        hubs=hubs,
        recomputed_hubs=found,
        hub_ids=hub_ids,
        edges=new_edges,
        vertices=scope.usable,
        inside=scope.inside,
        previous=previous,
        changed_records=change.records.size,
        priority=conf.priority,
        changes_from=changes_from,
        change=change,
        scope=scope,
        previous_map=previous_map,
        published_records=read_table(spark, cfg, "identity.record_oneid"),
        published_profiles=read_table(spark, cfg, "identity.profiles"),
        last=last,
    )
