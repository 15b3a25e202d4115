"""Hub guard: identifiers that must not link people (blocklist and frequency rules).

One shared store phone must not merge ten thousand shoppers: an identifier in more records than
its type allows, or shared by the records of more than ``max_member_ids`` member ids, is a hub.
Hubs keep their node but join no edge; every cut is a row in ``identity.hub_audit``.

Records of an event source (``facts: events``) repeat the same evidence with every event: a
phone a user logged in with is on each of their thousand events. So such records count once
per distinct set of identifiers they hold (per source): a login phone seen on one device is one
record there, while a value typed in many orders or forms counts every one.
"""

from __future__ import annotations

from collections.abc import Collection

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf.pipeline import IdentityConf
from oneid.identity.graph import HELD, base_type
from oneid.standardize.hashing import HashKey, keyed_hash
from oneid.standardize.normalize import normalize

HUB_COLUMNS = "node_id long, rule string, records long, member_ids long, threshold long"


def find_hubs(
    spark: SparkSession,
    groups: DataFrame,
    pairs: DataFrame,
    nodes: DataFrame,
    conf: IdentityConf,
    key: HashKey,
    scope: DataFrame | None = None,
    event_sources: Collection[str] = (),
) -> DataFrame:
    """(node_id, rule, records, member_ids, threshold): one row per hub, first rule that fired.

    ``groups`` and ``pairs``: :func:`~oneid.identity.graph.record_groups` and
    :func:`~oneid.identity.graph.record_pairs` of it. With ``scope`` (distinct node_id), only
    the hubs among those nodes; ``groups`` must then hold every record of the scope's nodes, and
    ``pairs`` every pair with an end in it. Both counts of a node depend on its own records
    only, so a node's hub status can change only when one of its records changes.
    ``event_sources``: the sources whose records count once per set of identifiers.
    """
    stats = node_counts(groups, pairs, scope, event_sources)
    return hubs_among(spark, stats, nodes, conf, key, scope)


def hubs_among(
    spark: SparkSession,
    stats: DataFrame,
    nodes: DataFrame,
    conf: IdentityConf,
    key: HashKey,
    scope: DataFrame | None = None,
) -> DataFrame:
    """The hubs (as :func:`find_hubs`) among the nodes of ``stats`` (:func:`node_counts`) and
    the blocklisted nodes of ``nodes``, only those in ``scope`` when it is given."""
    limits = conf.hubs.max_records
    record_limit = F.lit(limits.get("default", 200))
    for id_type in conf.hubs.account_types:  # only their own entry (below) cuts an account key
        record_limit = F.when(base_type() == id_type, F.lit(None)).otherwise(record_limit)
    for id_type, limit in sorted(limits.items()):
        if id_type != "default":
            record_limit = F.when(base_type() == id_type, F.lit(limit)).otherwise(record_limit)
    listed = nodes if scope is None else nodes.join(scope, "node_id", "left_semi")
    blocked = _blocklisted(spark, listed, conf, key).select("node_id", F.lit(True).alias("_listed"))
    # a listed node may hold no record any more: it is still a hub, with zero counts
    stats = stats.join(blocked, "node_id", "full").fillna(0, ["records", "member_ids"])
    most_ids = F.lit(conf.hubs.max_member_ids)
    over_records = F.coalesce(F.col("records") > record_limit, F.lit(False))
    # the first rule that fires, in this order: blocklist, max_records, max_member_ids
    rule = (
        F.when(F.col("_listed"), F.lit("blocklist"))
        .when(over_records, F.lit("max_records"))
        .when(
            (base_type() != "member_id") & (F.col("member_ids") > most_ids), F.lit("max_member_ids")
        )
    )
    threshold = (
        F.when(F.col("_listed"), F.lit(None)).when(over_records, record_limit).otherwise(most_ids)
    )
    return stats.select(
        "node_id",
        rule.alias("rule"),
        "records",
        "member_ids",
        threshold.cast("long").alias("threshold"),
    ).where(F.col("rule").isNotNull())


def node_counts(
    groups: DataFrame,
    pairs: DataFrame,
    scope: DataFrame | None = None,
    event_sources: Collection[str] = (),
) -> DataFrame:
    """(node_id, id_type, records, member_ids) of every node held in ``groups`` (of ``scope``).

    ``groups``: :func:`~oneid.identity.graph.record_groups`; ``pairs``: its
    :func:`~oneid.identity.graph.record_pairs` (of ``scope``). Each node of a record (once, even
    if the record holds it twice) counts the record, or for an event source its set of
    identifiers (a 64-bit hash of the source and its node ids; a collision can only lower a
    count). A node's member ids are the member-id nodes it is paired with: one pair row each.
    """
    is_event = F.col("source").isin(*sorted(event_sources)) if event_sources else F.lit(False)
    # the record's distinct (node_id, id_type), without the arrays' higher-order functions (no
    # generated code for them in Spark 4.1: one in a stage turns it off for the whole stage)
    nodes = F.array_distinct(
        F.arrays_zip(
            F.col(f"{HELD}.node_id").alias("node_id"), F.col(f"{HELD}.id_type").alias("id_type")
        )
    )
    held = groups.select(
        F.explode(nodes).alias("_node"),
        F.when(is_event, F.xxhash64("source", F.sort_array(f"{HELD}.node_id"))).alias("_set"),
    ).select("_node.node_id", "_node.id_type", "_set")
    if scope is not None:
        held = held.join(scope, "node_id", "left_semi")
    records = held.groupBy("node_id", "id_type").agg(
        (F.count_if(F.col("_set").isNull()) + F.countDistinct("_set")).alias("records")
    )
    partners = [
        pairs.where(base_type(f"{other}_type") == "member_id").select(F.col(end).alias("node_id"))
        for end, other in (("src", "dst"), ("dst", "src"))
    ]
    member_ids = (
        partners[0]
        .unionByName(partners[1])
        .groupBy("node_id")
        .agg(F.count(F.lit(1)).alias("member_ids"))
    )
    return records.join(member_ids, "node_id", "left").fillna(0, ["member_ids"])


def account_key_cuts(audit: DataFrame, conf: IdentityConf) -> dict[str, int]:
    """Hubs that are account keys (``hubs.account_types``) cut by a frequency rule, counted by
    rule, from the run's :func:`audit_rows`: each is a customer who links nothing, so the run
    says so (a blocklist is meant)."""
    types = list(conf.hubs.account_types)
    if not types:
        return {}
    rows = (
        audit.where(F.col("other_node_id").isNull())  # hub rows, not rejected edges
        .where(base_type().isin(types) & (F.col("rule") != "blocklist"))
        .groupBy("rule")
        .count()
        .collect()
    )
    return {row["rule"]: int(row["count"]) for row in rows}


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


def audit_rows(run_id: str, hubs: DataFrame, nodes: DataFrame, rejected: DataFrame) -> DataFrame:
    """``identity.hub_audit`` rows: every hub with its rule, and every weak edge left unused
    (``rejected``: src, dst, reason) with the limit it hit."""
    node_info = nodes.select("node_id", "id_type", "masked")
    hub_rows = hubs.join(node_info, "node_id").select(
        F.lit(run_id).alias("run_id"),
        "rule",
        "node_id",
        "id_type",
        "masked",
        "records",
        "member_ids",
        "threshold",
        F.lit(None).cast("long").alias("other_node_id"),
    )
    edge_rows = rejected.join(node_info, rejected.src == node_info.node_id).select(
        F.lit(run_id).alias("run_id"),
        F.col("reason").alias("rule"),
        F.col("src").alias("node_id"),
        "id_type",
        "masked",
        F.lit(None).cast("long").alias("records"),
        F.lit(None).cast("long").alias("member_ids"),
        F.lit(None).cast("long").alias("threshold"),
        F.col("dst").alias("other_node_id"),
    )
    return hub_rows.unionByName(edge_rows)
