"""The nodes an incremental run recomputes: closed under the edges and the previous OneIDs.

Seeds are the nodes of changed records whose place in the graph changed: an edge at them
appeared, vanished (possibly because a node became a hub) or changed strength, their hub status
changed, or they are new or gone (:func:`oneid.identity.incremental.structural_seeds`). The
affected set then grows by the current and previous edges (a component must be computed whole)
and by the previous OneIDs (a OneID's identifiers are all recomputed or none is, so no id is
inherited twice). Nodes outside it keep their OneIDs: their edges and hub status are those of
the last run, which gave them their ids.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.identity.keys import BROADCAST_ROWS, Keys

logger = logging.getLogger(__name__)


def affected_nodes(seeds: Keys, previous: DataFrame, graph_edges: DataFrame) -> Keys:
    """Close ``seeds`` (node_id) under ``graph_edges`` (src, dst) and ``previous`` (node_id, oneid).

    Breadth first from the seeds: each round looks up only the newest nodes, with their keys
    broadcast, so a round reads the tables once and shuffles nothing of their size.
    """
    affected, frontier = seeds, seeds
    rounds = 0
    while frontier.size:
        rounds += 1
        ids = frontier.hint()
        oneids = previous.join(ids, "node_id", "left_semi").select("oneid").distinct()
        if frontier.size <= BROADCAST_ROWS:  # no more OneIDs than nodes
            oneids = F.broadcast(oneids)
        same_oneid = previous.join(oneids, "oneid", "left_semi").select("node_id")
        grown = (
            same_oneid.unionByName(_neighbours(graph_edges, ids))
            .distinct()
            .join(affected.hint(), "node_id", "left_anti")
        )
        frontier = Keys.of(grown)
        if frontier.size:
            affected = affected.plus(frontier)
    logger.info("affected nodes: %d from %d seeds in %d rounds", affected.size, seeds.size, rounds)
    return affected


def _neighbours(graph_edges: DataFrame, ids: DataFrame) -> DataFrame:
    forward = graph_edges.join(ids.withColumnRenamed("node_id", "src"), "src", "left_semi")
    backward = graph_edges.join(ids.withColumnRenamed("node_id", "dst"), "dst", "left_semi")
    return forward.select(F.col("dst").alias("node_id")).unionByName(
        backward.select(F.col("src").alias("node_id"))
    )
