"""Stable OneIDs: components inherit the ids of the previous mapping; every change is lineage.

For each previous OneID X, its *keeper* is the component holding most of X's identifiers
(ties: the smallest component). A component inherits the oldest (smallest) OneID it keeps; the
other OneIDs it keeps are merged into that one. A component that keeps none gets a newly
minted id (``split`` when some of its identifiers had an id before, ``new`` otherwise). An old
OneID that no component keeps is ``retire``d. Ids are never reused: new ids count up from the
largest id ever minted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


@dataclass(frozen=True)
class Assignment:
    mapping: DataFrame
    """(node_id, oneid) for the nodes of ``labels``."""
    changes: DataFrame
    """(kind, from_oneid, to_oneid, identifiers)."""


def assign_oneids(labels: DataFrame, previous: DataFrame | None, minted_so_far: int) -> Assignment:
    """``labels``: (node_id, component); ``previous``: (node_id, oneid) of the same nodes."""
    if previous is None:
        previous = labels.sparkSession.createDataFrame([], "node_id long, oneid long")
    joined = labels.join(previous, "node_id", "left")
    overlap = (
        joined.where(F.col("oneid").isNotNull())
        .groupBy("oneid", "component")
        .agg(F.count(F.lit(1)).alias("shared"))
    )
    keeper_order = Window.partitionBy("oneid").orderBy(F.col("shared").desc(), F.col("component"))
    keepers = (
        overlap.withColumn("_r", F.row_number().over(keeper_order))
        .where("_r = 1")
        .select("oneid", "component", "shared")
    )
    inherit = keepers.groupBy("component").agg(F.min("oneid").alias("inherited"))
    components = labels.select("component").distinct()
    had_ids = overlap.select("component").distinct().withColumn("had_ids", F.lit(True))
    decided = (
        components.join(inherit, "component", "left")
        .join(had_ids, "component", "left")
        .withColumn(
            "_n",
            F.when(
                F.col("inherited").isNull(),
                F.row_number().over(
                    Window.partitionBy(F.col("inherited").isNull()).orderBy("component")
                ),
            ),
        )
        .select(
            "component",
            "inherited",
            F.coalesce("had_ids", F.lit(False)).alias("had_ids"),
            F.coalesce("inherited", F.col("_n") + F.lit(minted_so_far)).cast("long").alias("oneid"),
        )
    )
    mapping = labels.join(decided.select("component", "oneid"), "component").select(
        "node_id", "oneid"
    )

    sizes = labels.groupBy("component").agg(F.count(F.lit(1)).alias("identifiers"))
    minted = decided.where(F.col("inherited").isNull()).join(sizes, "component")
    new_rows = minted.where(~F.col("had_ids")).select(
        F.lit("new").alias("kind"),
        F.lit(None).cast("long").alias("from_oneid"),
        F.col("oneid").alias("to_oneid"),
        "identifiers",
    )
    split_rows = (
        minted.where(F.col("had_ids"))
        .select("component", F.col("oneid").alias("new_oneid"))
        .join(overlap, "component")
        .select(
            F.lit("split").alias("kind"),
            F.col("oneid").alias("from_oneid"),
            F.col("new_oneid").alias("to_oneid"),
            F.col("shared").alias("identifiers"),
        )
    )
    merge_rows = (
        keepers.join(decided.select("component", "inherited"), "component")
        .where(F.col("oneid") != F.col("inherited"))
        .select(
            F.lit("merge").alias("kind"),
            F.col("oneid").alias("from_oneid"),
            F.col("inherited").alias("to_oneid"),
            F.col("shared").alias("identifiers"),
        )
    )
    kept = keepers.select("oneid").distinct()
    retire_rows = (
        previous.select("oneid")
        .distinct()
        .join(kept, "oneid", "left_anti")
        .select(
            F.lit("retire").alias("kind"),
            F.col("oneid").alias("from_oneid"),
            F.lit(None).cast("long").alias("to_oneid"),
            F.lit(0).cast("long").alias("identifiers"),
        )
    )
    changes = new_rows.unionByName(split_rows).unionByName(merge_rows).unionByName(retire_rows)
    return Assignment(mapping, changes)
