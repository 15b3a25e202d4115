"""The published rows: a record's OneID and one golden profile per OneID."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.identity.graph import NODE_BITS, base_type

BEST = ("phone", "email")
"""Types whose best identifier (most records, then most recent) a profile shows, masked."""


def record_oneids(incidence: DataFrame, mapping: DataFrame, priority: tuple[str, ...]) -> DataFrame:
    """A record's OneID is that of its highest-priority identifier that has one (the smallest
    node id among equals)."""
    rank = F.lit(len(priority))
    for index, name in reversed(list(enumerate(priority))):
        rank = F.when(base_type() == name, F.lit(index)).otherwise(rank)
    # one long orders (rank, node_id): a hash aggregation, where a struct would need a sort
    order = F.shiftleft(rank.cast("long"), NODE_BITS) + F.col("node_id")
    ranked = incidence.join(mapping.select("node_id", "oneid"), "node_id")
    return ranked.groupBy("source", "record_key").agg(F.min_by("oneid", order).alias("oneid"))


def profiles(
    incidence: DataFrame, mapping: DataFrame, nodes: DataFrame, records: DataFrame
) -> DataFrame:
    """One golden row per OneID: counts per type, best masked phone/email, seen, sources.

    The best phone / email is the one in most records, then the most recently seen.
    ``incidence`` and ``records`` must hold every record of the OneIDs of ``mapping``; a
    node's type comes from ``nodes`` (the dictionary), not from ``incidence``.
    """
    # per node first (folded before the shuffle), then one row per node meets its OneID
    per_node = (
        incidence.groupBy("node_id")
        .agg(
            F.max("event_time").alias("last_seen"),
            F.min("event_time").alias("first_seen"),
            F.count(F.lit(1)).alias("records"),
        )
        .join(mapping.select("node_id", "oneid"), "node_id")
        .join(nodes.select("node_id", "id_type", "masked"), "node_id")
    )

    # one pass: per (OneID, type) the count and the best identifier, then one row per OneID
    per_type = per_node.groupBy("oneid", base_type().alias("t")).agg(
        F.count(F.lit(1)).alias("count"),
        F.max_by("masked", F.struct("records", "last_seen", "node_id")).alias("best"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    summary = per_type.groupBy("oneid").agg(
        *(F.max(F.when(F.col("t") == kind, F.col("best"))).alias(f"best_{kind}") for kind in BEST),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("t", "count")))).alias(
            "identifier_counts"
        ),
    )
    sources = records.groupBy("oneid").agg(
        F.array_sort(F.collect_set("source")).alias("sources"),
        F.count(F.lit(1)).alias("records"),
    )
    return summary.join(sources, "oneid", "left")
