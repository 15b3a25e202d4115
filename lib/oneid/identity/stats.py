"""Run figures (``identity.run_stats.metrics``) and the gates checked before publishing."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from oneid.conf.pipeline import GatesConf


def oneid_sizes(profiles: DataFrame) -> DataFrame:
    """(oneid, n, members) from the profiles: identifiers and member ids per OneID."""
    counts = F.col("identifier_counts")
    return profiles.select(
        "oneid",
        F.aggregate(F.map_values(counts), F.lit(0).cast("long"), lambda a, x: a + x).alias("n"),
        F.coalesce(counts["member_id"], F.lit(0)).alias("members"),
    )


SIZE_BUCKETS = ("1", "2", "3-5", "6-10", "11-50", ">50")
"""Histogram buckets of identifiers per OneID (:func:`_size_bucket`)."""


def _size_bucket(n: Column) -> Column:
    """The :data:`SIZE_BUCKETS` name of ``n`` identifiers."""
    return (
        F.when(n == 1, "1")
        .when(n <= 2, "2")
        .when(n <= 5, "3-5")
        .when(n <= 10, "6-10")
        .when(n <= 50, "11-50")
        .otherwise(">50")
    )


def size_figures(sizes: DataFrame) -> dict:
    """Identifiers, OneIDs, largest component, multi-member components, size histogram (only
    the buckets that hold a OneID), in one pass over ``sizes``."""
    bucket = _size_bucket(F.col("n"))
    row = sizes.agg(
        F.coalesce(F.sum("n"), F.lit(0)).alias("identifiers"),
        F.count(F.lit(1)).alias("oneids"),
        F.max("n").alias("largest"),
        F.max("oneid").alias("max_oneid"),
        F.sum((F.col("members") > 1).cast("int")).alias("multi"),
        *[F.count_if(bucket == name).alias(f"bucket_{i}") for i, name in enumerate(SIZE_BUCKETS)],
    ).first()
    histogram = {
        name: int(row[f"bucket_{i}"]) for i, name in enumerate(SIZE_BUCKETS) if row[f"bucket_{i}"]
    }
    return {
        "identifiers": int(row["identifiers"]),
        "oneids": int(row["oneids"]),
        "largest_component": int(row["largest"] or 0),
        "multi_member_components": int(row["multi"] or 0),
        "max_oneid": int(row["max_oneid"] or 0),
        "histogram": histogram,
    }


def changed_identifiers(previous: DataFrame, mapping: DataFrame) -> int:
    """How many nodes of ``previous`` (node_id, oneid) have another OneID or none in ``mapping``."""
    both = previous.select("node_id", F.col("oneid").alias("old")).join(
        mapping.select("node_id", "oneid"), "node_id", "left"
    )
    moved = (F.col("oneid").isNull() | (F.col("oneid") != F.col("old"))).cast("int")
    return int(both.agg(F.sum(moved)).first()[0] or 0)


def gates(stats: dict, conf: GatesConf, first_run: bool) -> dict[str, tuple[bool, str]]:
    """Gate name -> (passed, why)."""
    return {
        "max_component_identifiers": (
            stats["largest_component"] <= conf.max_component_identifiers,
            f"largest component {stats['largest_component']} <= {conf.max_component_identifiers}",
        ),
        "max_multi_member_components": (
            stats["multi_member_components"] <= conf.max_multi_member_components,
            f"{stats['multi_member_components']} components with >1 member id "
            f"<= {conf.max_multi_member_components}",
        ),
        "max_changed_share": (
            first_run or stats["changed_share"] <= conf.max_changed_share,
            f"changed share {stats['changed_share']} <= {conf.max_changed_share}"
            + (" (first run exempt)" if first_run else ""),
        ),
    }
