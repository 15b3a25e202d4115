"""Join weak edges into strong components without breaking the per-type limits.

Strong components (connected components over strong edges) are merged along weak edges in
rounds. In each round every component proposes its best partner (weak edges ordered by the
identifier-type priority of their ends, then by partner id) among those it can merge with
without exceeding any limit; mutual proposals merge. Mutual pairs form a matching, so two
merges of one round can never add up past a limit. Rounds stop when nothing merges. Weak edges
still joining two components at the end were not used: each is reported with the limit it hit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf.pipeline import IdentityConf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeakMergeResult:
    labels: DataFrame
    """(node_id, component) after the weak merges."""
    rejected: DataFrame
    """(src, dst, reason) weak edges left unused."""
    rounds: int


def merge_weak_edges(
    labels: DataFrame, nodes: DataFrame, weak: DataFrame, conf: IdentityConf
) -> WeakMergeResult:
    """``labels``: (node_id, component) of the strong components; ``weak``: (src, dst)."""
    types = nodes.select("node_id", F.split("id_type", ":").getItem(0).alias("t"))
    limited = sorted(conf.limits)
    priority = {t: i for i, t in enumerate(conf.priority)}
    rank_of = _rank_expr(priority)
    edge_rank = materialize(
        weak.join(types.withColumnRenamed("node_id", "src").withColumnRenamed("t", "ts"), "src")
        .join(types.withColumnRenamed("node_id", "dst").withColumnRenamed("t", "td"), "dst")
        .select("src", "dst", F.greatest(rank_of("ts"), rank_of("td")).alias("rank"))
    )

    current = materialize(labels)
    rounds = 0
    while rounds < conf.max_weak_rounds:
        rounds += 1
        counts = _counts(current, types, limited)
        pairs = _component_pairs(edge_rank, current)
        fits = _fits(pairs, counts, limited, conf.limits)
        best = _best_partner(fits)
        mutual = (
            best.alias("x")
            .join(
                best.alias("y"),
                (F.col("x.comp") == F.col("y.partner")) & (F.col("x.partner") == F.col("y.comp")),
            )
            .select(F.col("x.comp").alias("comp"), F.col("x.partner").alias("partner"))
        )
        merges = materialize(
            mutual.where(F.col("comp") > F.col("partner")).select(
                F.col("comp").alias("component"), F.col("partner").alias("into")
            )
        )
        merged = merges.count()
        logger.info("weak merge round %d: %d merges", rounds, merged)
        if merged == 0:
            break
        current = materialize(
            current.join(merges, "component", "left").select(
                "node_id", F.coalesce("into", "component").alias("component")
            )
        )
    counts = _counts(current, types, limited)
    leftover = _component_pairs(edge_rank, current, keep_edges=True)
    rejected = _reasons(leftover, counts, limited, conf.limits)
    return WeakMergeResult(current, rejected, rounds)


def _rank_expr(priority: dict[str, int]):
    def rank(col: str) -> Column:
        expr = F.lit(len(priority))
        for name, index in sorted(priority.items(), key=lambda kv: -kv[1]):
            expr = F.when(F.col(col) == name, F.lit(index)).otherwise(expr)
        return expr

    return rank


def _counts(labels: DataFrame, types: DataFrame, limited: list[str]) -> DataFrame:
    joined = labels.join(types, "node_id")
    aggs = [F.sum((F.col("t") == t).cast("long")).alias(f"n_{t}") for t in limited]
    return joined.groupBy("component").agg(*aggs) if aggs else joined.select("component").distinct()


def _component_pairs(
    edge_rank: DataFrame, labels: DataFrame, keep_edges: bool = False
) -> DataFrame:
    a = labels.select(F.col("node_id").alias("src"), F.col("component").alias("ca"))
    b = labels.select(F.col("node_id").alias("dst"), F.col("component").alias("cb"))
    joined = edge_rank.join(a, "src").join(b, "dst").where(F.col("ca") != F.col("cb"))
    if keep_edges:
        return joined
    return joined.groupBy(F.least("ca", "cb").alias("c1"), F.greatest("ca", "cb").alias("c2")).agg(
        F.min("rank").alias("rank")
    )


def _fits(
    pairs: DataFrame, counts: DataFrame, limited: list[str], limits: dict[str, int]
) -> DataFrame:
    joined = _with_counts(pairs, counts, limited, ("c1", "c2"))
    ok = F.lit(True)
    for t in limited:
        ok = ok & ((F.col(f"a_{t}") + F.col(f"b_{t}")) <= limits[t])
    return joined.where(ok).select("c1", "c2", "rank")


def _with_counts(
    pairs: DataFrame, counts: DataFrame, limited: list[str], ends: tuple[str, str]
) -> DataFrame:
    """Attach each end's per-type counts as ``a_<type>`` and ``b_<type>``."""
    for end, prefix in zip(ends, ("a", "b"), strict=True):
        side = counts.select(
            F.col("component").alias(end),
            *[F.col(f"n_{t}").alias(f"{prefix}_{t}") for t in limited],
        )
        pairs = pairs.join(side, end)
    return pairs


def _best_partner(fits: DataFrame) -> DataFrame:
    both = fits.select(F.col("c1").alias("comp"), F.col("c2").alias("partner"), "rank").unionByName(
        fits.select(F.col("c2").alias("comp"), F.col("c1").alias("partner"), "rank")
    )
    best = both.groupBy("comp").agg(F.min(F.struct("rank", "partner")).alias("b"))
    return best.select("comp", F.col("b.partner").alias("partner"))


def _reasons(
    leftover: DataFrame, counts: DataFrame, limited: list[str], limits: dict[str, int]
) -> DataFrame:
    joined = _with_counts(leftover, counts, limited, ("ca", "cb"))
    reason = F.lit(None).cast("string")
    for t in reversed(limited):
        over = (F.col(f"a_{t}") + F.col(f"b_{t}")) > limits[t]
        reason = F.when(over, F.lit(f"limit:{t}")).otherwise(reason)
    return joined.select("src", "dst", F.coalesce(reason, F.lit("limit:rounds")).alias("reason"))
