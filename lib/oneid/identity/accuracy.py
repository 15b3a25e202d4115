"""Accuracy of OneIDs against a ground truth: pairwise precision / recall and B-cubed F1.

A record without a OneID counts as a cluster of its own. Pairwise scores count pairs of
records (big people weigh more); B-cubed averages per record (every record weighs the same).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.pipeline import ComponentsConf
from oneid.identity.components import connected_components
from oneid.identity.graph import edges, record_groups, record_nodes, record_pairs
from oneid.identity.outputs import record_oneids
from oneid.identity.plan import whole_graph_plan
from oneid.identity.resolve import resolve


@dataclass(frozen=True)
class Accuracy:
    records: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float

    def as_dict(self) -> dict:
        return asdict(self)


def score(predicted: DataFrame, truth: DataFrame) -> Accuracy:
    """``predicted``: (source, record_key, oneid); ``truth``: (source, record_key, person_id)."""
    truth = truth.select("source", "record_key", "person_id").distinct()
    joined = truth.join(
        predicted.select("source", "record_key", "oneid"), ["source", "record_key"], "left"
    )
    joined = joined.withColumn(
        "cluster",
        F.coalesce(
            F.col("oneid").cast("string"), F.concat_ws(":", F.lit("none"), "source", "record_key")
        ),
    ).cache()
    cells = joined.groupBy("cluster", "person_id").agg(F.count(F.lit(1)).alias("n"))
    clusters = joined.groupBy("cluster").agg(F.count(F.lit(1)).alias("c"))
    persons = joined.groupBy("person_id").agg(F.count(F.lit(1)).alias("p"))

    def pairs(col: str):
        return F.sum(F.col(col) * (F.col(col) - 1) / 2)

    tp = cells.agg(pairs("n")).first()[0] or 0.0
    predicted_pairs = clusters.agg(pairs("c")).first()[0] or 0.0
    true_pairs = persons.agg(pairs("p")).first()[0] or 0.0
    b3 = (
        cells.join(clusters, "cluster")
        .join(persons, "person_id")
        .agg(
            F.sum(F.col("n") * F.col("n") / F.col("c")).alias("precision_sum"),
            F.sum(F.col("n") * F.col("n") / F.col("p")).alias("recall_sum"),
            F.sum("n").alias("records"),
        )
        .first()
    )
    joined.unpersist()
    records = int(b3["records"] or 0)
    precision = tp / predicted_pairs if predicted_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    b3_precision = (b3["precision_sum"] or 0.0) / records if records else 1.0
    b3_recall = (b3["recall_sum"] or 0.0) / records if records else 1.0
    return Accuracy(
        records=records,
        pairwise_precision=round(precision, 4),
        pairwise_recall=round(recall, 4),
        pairwise_f1=round(_f1(precision, recall), 4),
        bcubed_precision=round(b3_precision, 4),
        bcubed_recall=round(b3_recall, 4),
        bcubed_f1=round(_f1(b3_precision, b3_recall), 4),
    )


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def unguarded_record_components(
    spark: SparkSession, identifiers: DataFrame, nodes: DataFrame, conf: ComponentsConf
) -> DataFrame:
    """(source, record_key, oneid) from plain connected components: no blocklist, hub rules or
    per-type limits. What identity resolution would give without its guards (for comparison)."""
    incidence = record_nodes(identifiers, nodes)
    sources = [row.source for row in identifiers.select("source").distinct().collect()]
    pairs = record_pairs(record_groups(incidence), sources)
    graph = edges(pairs, spark.createDataFrame([], "node_id long"))
    vertices = incidence.select(F.col("node_id").alias("id")).distinct()
    labels = connected_components(spark, vertices, graph, conf).components
    return (
        incidence.join(labels.select(F.col("id").alias("node_id"), "component"), "node_id")
        .groupBy("source", "record_key")
        .agg(F.min("component").alias("oneid"))
    )


def resolved_record_oneids(
    spark: SparkSession, cfg: OneIdConfig, identifiers: DataFrame, nodes: DataFrame
) -> DataFrame:
    """(source, record_key, oneid) of a full identity run over ``identifiers`` with the rules of
    ``cfg``, computed without writing any table (every identifier must be in ``nodes``): how
    the published OneIDs would look on other data or under other rules (for comparison)."""
    rows = record_nodes(identifiers, nodes)
    plan = whole_graph_plan(spark, cfg, rows, nodes, None, lambda _phase: None)
    conf = cfg.pipeline.identity
    resolved = resolve(spark, conf, plan.vertices, plan.inside, plan.vertex_nodes, None, 0)
    return record_oneids(plan.rows, resolved.mapping, plan.priority)
