"""Hub guard: identifiers that must not link people (blocklist and frequency rules).

One shared store phone must not merge ten thousand shoppers: an identifier in more records than
its type allows, or shared by the records of more than ``max_member_ids`` member ids, is a hub.
Hubs keep their node but join no edge; every cut is a row in ``identity.hub_audit``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf.pipeline import IdentityConf
from oneid.identity.graph import base_type
from oneid.standardize.hashing import HashKey, keyed_hash
from oneid.standardize.normalize import normalize

HUB_COLUMNS = "node_id long, rule string, records long, member_ids long, threshold long"


def find_hubs(
    spark: SparkSession,
    incidence: DataFrame,
    nodes: DataFrame,
    conf: IdentityConf,
    key: HashKey,
    scope: DataFrame | None = None,
) -> DataFrame:
    """(node_id, rule, records, member_ids, threshold): one row per hub, first rule that fired.

    With ``scope`` (distinct node_id), only the hubs among those nodes; ``incidence`` must then
    hold every record of the scope's nodes. Both counts of a node depend on its own records
    only, so a node's hub status can change only when one of its records changes.
    """
    held = incidence if scope is None else incidence.join(scope, "node_id", "left_semi")
    # incidence has one row per (record, node): counting rows counts records
    per_node = held.groupBy("node_id", "id_type").agg(F.count(F.lit(1)).alias("records"))
    members = incidence.where(base_type() == "member_id").select(
        "source", "record_key", F.col("node_id").alias("member_node")
    )
    member_counts = (
        held.join(members, ["source", "record_key"])
        .where(F.col("node_id") != F.col("member_node"))
        .groupBy("node_id")
        .agg(F.countDistinct("member_node").alias("member_ids"))
    )
    stats = per_node.join(member_counts, "node_id", "left").fillna(0, ["member_ids"])

    limits = conf.hubs.max_records
    default = limits.get("default", 200)
    threshold = F.lit(default)
    for id_type, limit in sorted(limits.items()):
        if id_type != "default":
            threshold = F.when(base_type() == id_type, F.lit(limit)).otherwise(threshold)
    stats = stats.withColumn("record_limit", threshold)

    listed = nodes if scope is None else nodes.join(scope, "node_id", "left_semi")
    blocked = _blocklisted(spark, listed, conf, key)
    by_records = stats.where(F.col("records") > F.col("record_limit")).select(
        "node_id",
        F.lit("max_records").alias("rule"),
        "records",
        "member_ids",
        F.col("record_limit").cast("long").alias("threshold"),
    )
    by_members = stats.where(
        (base_type() != "member_id") & (F.col("member_ids") > conf.hubs.max_member_ids)
    ).select(
        "node_id",
        F.lit("max_member_ids").alias("rule"),
        "records",
        "member_ids",
        F.lit(conf.hubs.max_member_ids).cast("long").alias("threshold"),
    )
    blocked = blocked.join(
        stats.select("node_id", "records", "member_ids"), "node_id", "left"
    ).select(
        "node_id",
        F.lit("blocklist").alias("rule"),
        F.coalesce("records", F.lit(0)).alias("records"),
        F.coalesce("member_ids", F.lit(0)).alias("member_ids"),
        F.lit(None).cast("long").alias("threshold"),
    )
    rank = {"blocklist": 0, "max_records": 1, "max_member_ids": 2}
    ranked = (
        blocked.unionByName(by_records)
        .unionByName(by_members)
        .withColumn(
            "_rank",
            F.when(F.col("rule") == "blocklist", rank["blocklist"])
            .when(F.col("rule") == "max_records", rank["max_records"])
            .otherwise(rank["max_member_ids"]),
        )
    )
    first = ranked.groupBy("node_id").agg(F.min("_rank").alias("_rank"))
    return ranked.join(first, ["node_id", "_rank"]).drop("_rank")


def _blocklisted(
    spark: SparkSession, nodes: DataFrame, conf: IdentityConf, key: HashKey
) -> DataFrame:
    """Nodes whose value is on the conf blocklist (values hashed here, never stored raw)."""
    rows = []
    for id_type, values in sorted(conf.blocklist.items()):
        for value in values:
            normalised = normalize(id_type, value).value if ":" in id_type or id_type else None
            if normalised:
                rows.append((id_type, keyed_hash(key, normalised)))
    if not rows:
        return spark.createDataFrame([], "node_id long")
    listed = spark.createDataFrame(rows, "list_type string, value_hash string")
    return (
        nodes.join(
            listed,
            (nodes.value_hash == listed.value_hash)
            & ((nodes.id_type == listed.list_type) | (base_type() == listed.list_type)),
        )
        .select("node_id")
        .distinct()
    )
