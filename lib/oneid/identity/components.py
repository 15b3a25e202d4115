"""Connected components on Long vertex ids: GraphFrames, or OneID's native DataFrame engine.

The native engine is the alternating large-star / small-star algorithm of Kiveris et al.,
"Connected Components in MapReduce and Beyond" (SoCC 2014) — the family GraphFrames' own
default algorithm belongs to — written with DataFrame joins and aggregates only. Each vertex's
component is the smallest vertex id in it, as with GraphFrames, so both engines agree exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf.pipeline import ComponentsConf
from oneid.errors import OneIdError
from oneid.session import graphframes_available

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentsResult:
    """``components`` has columns ``id`` (long) and ``component`` (long, the smallest id)."""

    components: DataFrame
    engine: str
    rounds: int


def connected_components(
    spark: SparkSession, vertices: DataFrame, edges: DataFrame, conf: ComponentsConf
) -> ComponentsResult:
    """Components of the graph (``vertices.id``, ``edges.src``/``dst``); isolated ids included."""
    engine = conf.engine
    if engine == "auto":
        engine = "graphframes" if graphframes_available(spark) else "native"
    if engine == "graphframes":
        if not graphframes_available(spark):
            raise OneIdError(
                "identity.components.engine=graphframes but the GraphFrames jars are not on the "
                "classpath (conf jars.graphframes); use engine auto or native"
            )
        return _graphframes(vertices, edges, conf)
    return _native(spark, vertices, edges, conf)


def _graphframes(vertices: DataFrame, edges: DataFrame, conf: ComponentsConf) -> ComponentsResult:
    from graphframes import GraphFrame

    graph = GraphFrame(vertices.select("id"), edges.select("src", "dst"))
    components = graph.connectedComponents(
        algorithm=conf.algorithm,
        checkpointInterval=conf.checkpoint_interval,
        broadcastThreshold=conf.broadcast_threshold,
        max_iter=conf.max_iterations,
    )
    return ComponentsResult(components.select("id", "component"), "graphframes", -1)


def _native(
    spark: SparkSession, vertices: DataFrame, edges: DataFrame, conf: ComponentsConf
) -> ComponentsResult:
    current = (
        edges.select(F.least("src", "dst").alias("u"), F.greatest("src", "dst").alias("v"))
        .where(F.col("u") != F.col("v"))
        .distinct()
    )
    current = materialize(current)
    signature = _signature(current)
    rounds = 0
    while True:
        rounds += 1
        if rounds > conf.max_iterations:
            raise OneIdError(
                f"connected components did not converge in {conf.max_iterations} rounds "
                "(identity.components.max_iterations)"
            )
        current = _small_star(_large_star(current))
        current = materialize(current)
        new_signature = _signature(current)
        logger.info("components round %d: %d edges", rounds, new_signature[0])
        if new_signature == signature:
            break
        signature = new_signature
    # converged: every edge points from a vertex to the smallest id of its component
    labels = current.groupBy(F.col("v").alias("id")).agg(F.min("u").alias("component"))
    roots = current.select(F.col("u").alias("id"), F.col("u").alias("component"))
    labelled = labels.unionByName(roots).groupBy("id").agg(F.min("component").alias("component"))
    result = (
        vertices.select("id")
        .distinct()
        .join(labelled, "id", "left")
        .select("id", F.coalesce("component", "id").alias("component"))
    )
    return ComponentsResult(result, "native", rounds)


def _both_ways(edges: DataFrame) -> DataFrame:
    return edges.select("u", "v").unionByName(
        edges.select(F.col("v").alias("u"), F.col("u").alias("v"))
    )


def _large_star(edges: DataFrame) -> DataFrame:
    """Connect every larger neighbour of u to the smallest vertex of u's neighbourhood."""
    both = _both_ways(edges)
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    linked = both.where(F.col("v") > F.col("u")).join(smallest, "u")
    return linked.select(F.col("m").alias("u"), F.col("v")).where("u != v").distinct()


def _small_star(edges: DataFrame) -> DataFrame:
    """Connect u and its smaller neighbours to the smallest of them."""
    oriented = edges.select(F.least("u", "v").alias("small"), F.greatest("u", "v").alias("big"))
    smallest = oriented.groupBy("big").agg(F.min("small").alias("m"))
    neighbours = oriented.join(smallest, "big").select(
        F.col("m").alias("u"), F.col("small").alias("v")
    )
    selves = smallest.select(F.col("m").alias("u"), F.col("big").alias("v"))
    return neighbours.unionByName(selves).where("u != v").distinct()


def _signature(edges: DataFrame) -> tuple[int, int]:
    row = edges.agg(
        F.count(F.lit(1)).alias("n"),
        F.coalesce(F.bit_xor(F.xxhash64("u", "v")), F.lit(0)).alias("h"),
    ).first()
    return int(row["n"]), int(row["h"])
