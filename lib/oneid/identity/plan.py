"""What an identity run recomputes: every node (a full rebuild) or the affected scope.

Both kinds of run give a :class:`Plan` with the same fields: the incidence rows the run read,
the hubs and edges it recomputed, the vertices to resolve with the edges between them, and their
previous OneIDs. A plan then turns the resolved mapping into the rows to publish
(:meth:`Plan.outputs`) and the writes that publish them (:meth:`Plan.writes`), so the run itself
reads the same top to bottom whichever kind it is. :func:`full_plan` (and
:func:`whole_graph_plan`, its part that writes nothing) is here;
:func:`oneid.identity.incremental.incremental_plan` builds the scoped one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.checkpoint import aggregated, counted, materialize
from oneid.conf import OneIdConfig
from oneid.errors import LimitExceededError
from oneid.identity.graph import (
    NODE_BITS,
    edges,
    held_rows,
    new_nodes,
    record_groups,
    record_nodes,
    record_pairs,
)
from oneid.identity.hubs import hubs_among, node_counts
from oneid.identity.keys import DICTIONARY_BROADCAST_ROWS, Keys, hinted
from oneid.identity.outputs import profiles, record_oneids
from oneid.identity.publish import Write
from oneid.identity.stats import changed_identifiers
from oneid.standardize.hashing import load_key
from oneid.tables import append, read_table, read_table_or_none

logger = logging.getLogger(__name__)

Clock = Callable[[str], None]
"""Logs how long the phase just finished took."""


@dataclass(frozen=True)
class Published:
    """The rows a run publishes besides the mapping, and the figures they give."""

    records: DataFrame
    """Recomputed ``identity.record_oneid`` rows."""
    profiles: DataFrame
    """Recomputed ``identity.profiles`` rows."""
    all_profiles: DataFrame
    """(oneid, identifier_counts) of every profile after the run: the size figures."""
    records_total: int
    records_with_oneid: int
    changed_identifiers: int
    """Previous identifiers whose OneID changed or went."""
    record_keys: Keys | None = None
    """The record_oneid keys ``records`` replace; ``None``: the whole table."""
    profile_keys: Keys | None = None
    """The profiles keys ``profiles`` replace; ``None``: the whole table."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A full rebuild: everything is recomputed and every table is rewritten."""

    rows: DataFrame
    """The incidence rows the run read: every row (here, the records' grouped rows exploded
    back, partitioned by record: each record's OneID is picked from them without a shuffle),
    the changed records' (incremental)."""
    nodes: DataFrame
    """The node dictionary."""
    vertex_nodes: DataFrame
    """The dictionary rows of the vertices."""
    hubs: DataFrame
    """Every hub after the run."""
    recomputed_hubs: DataFrame
    """The hubs the run decided (all of them here)."""
    hub_ids: Keys
    edges: DataFrame
    """The edges the run recomputed (all of them here)."""
    vertices: Keys
    """The nodes to resolve: non-hub nodes some record holds."""
    inside: DataFrame
    """(src, dst, strength) of the edges between vertices."""
    previous: DataFrame | None
    """(node_id, oneid) the nodes the run recomputes had; ``None`` on the first run."""
    changed_records: int
    priority: tuple[str, ...]
    changes_from: str = "all"
    """How the run found the changed records: ``all`` (a full run), ``change feed`` or
    ``silver join`` (:mod:`oneid.identity.changes`)."""

    @property
    def full(self) -> bool:
        return True

    def mapping_rows(self, recomputed: DataFrame) -> DataFrame:
        """``identity.oneid_map`` rows of the resolved (node_id, oneid)."""
        named = self.vertex_nodes.select("node_id", "id_type", "value_hash")
        return materialize(
            recomputed.join(named, "node_id").select("node_id", "id_type", "value_hash", "oneid")
        )

    def outputs(self, recomputed: DataFrame) -> Published:
        """record_oneid and profiles of every record and OneID (the mapping sent to every task
        while it is small enough, not shuffled against all incidence rows)."""
        lookup = hinted(recomputed, self.vertices.size, DICTIONARY_BROADCAST_ROWS)
        owners, with_oneid = counted(record_oneids(self.rows, lookup, self.priority))
        rows = materialize(profiles(self.rows, lookup, self.nodes, owners))
        moved = 0 if self.previous is None else changed_identifiers(self.previous, recomputed)
        return Published(owners, rows, rows, self.changed_records, with_oneid, moved)

    def writes(self, mapping: DataFrame, published: Published) -> list[Write]:
        """Every table rewritten whole (incidence last: it marks the records as consumed)."""
        return [
            Write("hubs", self.recomputed_hubs),
            Write("edges", self.edges),
            Write("oneid_map", mapping),
            Write("record_oneid", published.records),
            Write("profiles", published.profiles),
            Write("incidence", self.rows),
        ]


def full_plan(
    spark: SparkSession,
    cfg: OneIdConfig,
    identifiers: DataFrame,
    run_id: str,
    previous_map: DataFrame | None,
    clock: Clock,
) -> Plan:
    """Every silver row, every hub and edge; the previous mapping is all there is to keep."""
    nodes, largest = extend_nodes(spark, cfg, identifiers, run_id)
    dictionary = hinted(nodes, largest, DICTIONARY_BROADCAST_ROWS)
    # looked up as they are grouped by record (the next phase), not kept apart
    rows = record_nodes(identifiers, dictionary)
    clock("changed records and nodes")
    previous = None if previous_map is None else previous_map.select("node_id", "oneid")
    return whole_graph_plan(spark, cfg, rows, nodes, previous, clock)


def whole_graph_plan(
    spark: SparkSession,
    cfg: OneIdConfig,
    rows: DataFrame,
    nodes: DataFrame,
    previous: DataFrame | None,
    clock: Clock,
) -> Plan:
    """The plan over every incidence row in ``rows`` (nodes of ``nodes``): writes nothing.
    ``rows`` is read once, as it is grouped by record; the plan's rows are the grouped ones."""
    conf = cfg.pipeline.identity
    key = load_key(cfg.env.secrets)
    events = cfg.pipeline.sources_of("events")
    groups, figures = aggregated(
        record_groups(rows), F.count(F.lit(1)), F.collect_set("source"), partitioned=True
    )
    records, sources = int(figures[0]), figures[1]
    pairs = materialize(record_pairs(groups, sources))
    counts = materialize(node_counts(groups, pairs, event_sources=events))  # a row per held node
    hubs = materialize(hubs_among(spark, counts, nodes, conf, key))
    hub_ids = Keys.of(hubs.select("node_id"))
    graph_edges = materialize(edges(pairs, hub_ids.hint()))
    clock("hubs and edges")
    held = counts.select("node_id").join(hub_ids.hint(), "node_id", "left_anti")
    vertices = Keys(*counted(held))
    clock("vertices")
    return Plan(
        rows=held_rows(groups),
        nodes=nodes,
        vertex_nodes=nodes,
        hubs=hubs,
        recomputed_hubs=hubs,
        hub_ids=hub_ids,
        edges=graph_edges,
        vertices=vertices,
        inside=graph_edges,
        previous=previous,
        changed_records=records,
        priority=conf.priority,
    )


def extend_nodes(
    spark: SparkSession,
    cfg: OneIdConfig,
    silver: DataFrame,
    run_id: str,
    rows: int | None = None,
) -> tuple[DataFrame, int]:
    """Append the identifiers of ``silver`` new to ``identity.nodes``; the whole dictionary and
    its largest node id (a bound on its rows, known without counting them).

    ``rows``: how many rows ``silver`` has when the caller knows (a few changed records' rows
    are looked up in the dictionary rather than the dictionary shuffled against them).
    """
    old = read_table_or_none(spark, cfg, "identity.nodes")
    added, start = new_nodes(silver, old, run_id, rows)
    added, size = counted(added)
    if start + size >= 1 << NODE_BITS:
        raise LimitExceededError(
            f"identity.nodes would number past 2**{NODE_BITS} - 1 (largest id {start + size}): "
            "a record's OneID is chosen on node ids below that bound"
        )
    if size:
        append(added, cfg, "identity.nodes")
    return read_table(spark, cfg, "identity.nodes"), start + size
