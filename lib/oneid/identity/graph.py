"""The identifier graph: an append-only Long id dictionary, record incidence, and edges."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

NODE_KEY = ["id_type", "value_hash"]


def base_type(id_type_col: str = "id_type"):
    """``wx_openid:app`` -> ``wx_openid``; ``device:idfa`` -> ``device``."""
    return F.split(F.col(id_type_col), ":").getItem(0)


def new_nodes(identifiers: DataFrame, nodes: DataFrame | None, run_id: str) -> DataFrame:
    """Identifiers not yet in the dictionary, numbered after the largest existing id.

    Ids follow first-seen order (event time, then type and hash), so they are deterministic.
    """
    seen = identifiers.groupBy(*NODE_KEY).agg(
        F.first("masked", ignorenulls=True).alias("masked"),
        F.min("event_time").alias("first_seen"),
    )
    start = 0
    if nodes is not None:
        seen = seen.join(nodes.select(*NODE_KEY), NODE_KEY, "left_anti")
        start = nodes.agg(F.coalesce(F.max("node_id"), F.lit(0))).first()[0]
    order = Window.orderBy(F.col("first_seen").asc_nulls_last(), *NODE_KEY)
    return seen.select(
        (F.row_number().over(order) + F.lit(start)).cast("long").alias("node_id"),
        *NODE_KEY,
        "masked",
        "first_seen",
        F.lit(run_id).alias("first_run"),
    )


def record_nodes(identifiers: DataFrame, nodes: DataFrame) -> DataFrame:
    """(source, record_key, node_id, id_type, strength, event_time): which record holds what."""
    return identifiers.join(nodes.select("node_id", *NODE_KEY), NODE_KEY).select(
        "source", "record_key", "node_id", "id_type", "strength", "event_time"
    )


def edges(incidence: DataFrame, hubs: DataFrame) -> DataFrame:
    """Pairs of non-hub identifiers seen in one record (src < dst), with strength and lineage.

    An edge is strong when both ends are strong identifiers in at least one record.
    """
    usable = incidence.join(hubs.select("node_id"), "node_id", "left_anti")
    left = usable.alias("a")
    right = usable.alias("b")
    pairs = left.join(
        right,
        (F.col("a.source") == F.col("b.source"))
        & (F.col("a.record_key") == F.col("b.record_key"))
        & (F.col("a.node_id") < F.col("b.node_id")),
    )
    strong = (F.col("a.strength") == "strong") & (F.col("b.strength") == "strong")
    return pairs.groupBy(F.col("a.node_id").alias("src"), F.col("b.node_id").alias("dst")).agg(
        F.when(F.max(strong.cast("int")) == 1, "strong").otherwise("weak").alias("strength"),
        F.array_sort(F.collect_set("a.source")).alias("sources"),
        F.min(F.least("a.event_time", "b.event_time")).alias("first_seen"),
        F.max(F.greatest("a.event_time", "b.event_time")).alias("last_seen"),
        F.count(F.lit(1)).alias("records"),
    )
