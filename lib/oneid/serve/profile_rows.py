"""The store's rows as Spark frames: identifier → OneID, one profile document per OneID,
retired OneID → the OneID it was merged into, and OneIDs retired without a merge.

A profile document is built as JSON by Spark itself (``to_json``), so the driver only streams
finished strings into the store.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from oneid.serve.documents import PROFILE_FIELDS

JSON_OPTIONS = {"ignoreNullFields": "false"}
"""A tag or field without a value is in the document as ``null``, not left out."""


def identifier_rows(oneid_map: DataFrame) -> DataFrame:
    """``id_type, value_hash, oneid`` of every identifier that has a OneID."""
    return oneid_map.where(F.col("oneid").isNotNull()).select("id_type", "value_hash", "oneid")


def identifiers_by_oneid(oneid_map: DataFrame, nodes: DataFrame, incidence: DataFrame) -> DataFrame:
    """``oneid, identifiers``: per OneID its identifiers, masked, with the sources that hold
    them and when the records were first and last seen."""
    seen = incidence.groupBy("node_id").agg(
        F.sort_array(F.collect_set("source")).alias("sources"),
        F.min("event_time").alias("first_seen"),
        F.max("event_time").alias("last_seen"),
    )
    rows = (
        oneid_map.where(F.col("oneid").isNotNull())
        .select("node_id", "id_type", "oneid")
        .join(nodes.select("node_id", "masked"), "node_id")
        .join(seen, "node_id", "left")
    )
    item = F.struct("id_type", "masked", "sources", "first_seen", "last_seen")
    return rows.groupBy("oneid").agg(F.sort_array(F.collect_list(item)).alias("identifiers"))


def tags_by_oneid(frames: dict[str, tuple[DataFrame, dt.date]]) -> DataFrame | None:
    """``oneid, tags``: every tag of the given group tables (each read at its day) as
    ``{name: {value, as_of}}``. ``frames``: table → (its rows of the day, the day)."""
    wide: DataFrame | None = None
    fields: list[Column] = []
    for frame, day in frames.values():
        columns = [c for c in frame.columns if c not in ("oneid", "dt")]
        as_of = F.lit(day.isoformat())
        fields += [
            F.struct(F.col(c).alias("value"), as_of.alias("as_of")).alias(c) for c in columns
        ]
        part = frame.select("oneid", *columns)
        wide = part if wide is None else wide.join(part, "oneid", "full")
    if wide is None:
        return None
    return wide.select("oneid", F.struct(*fields).alias("tags"))


def audiences_by_oneid(membership: DataFrame, changes: DataFrame | None, day: dt.date) -> DataFrame:
    """``oneid, audiences``: the audiences of the snapshot of ``day`` with the date each member
    entered: its latest ``entered`` (or ``remapped``: its OneID changed) change up to the day,
    else the first snapshot that holds it."""
    up_to = F.col("dt") <= F.lit(day)
    keys = ["audience_id", "oneid"]
    first = membership.where(up_to).groupBy(*keys).agg(F.min("dt").alias("_first"))
    members = membership.where(F.col("dt") == F.lit(day)).join(first, keys, "left")
    entered = F.col("_first")
    if changes is not None:
        latest = (
            changes.where(up_to & F.col("change").isin("entered", "remapped"))
            .groupBy(*keys)
            .agg(F.max("dt").alias("_entered"))
        )
        members = members.join(latest, keys, "left")
        entered = F.coalesce(F.col("_entered"), F.col("_first"))
    item = F.struct(
        "audience_id",
        "version",
        F.date_format(entered, "yyyy-MM-dd").alias("entered_at"),
        "holdout",
    )
    return members.groupBy("oneid").agg(F.sort_array(F.collect_list(item)).alias("audiences"))


def profile_documents(
    profiles: DataFrame,
    identifiers: DataFrame,
    tags: DataFrame | None,
    audiences: DataFrame | None,
    audiences_as_of: dt.date | None,
) -> DataFrame:
    """``oneid, document``: the JSON answer of one OneID's profile."""
    frame = profiles.join(identifiers, "oneid", "left")
    frame = frame.join(tags, "oneid", "left") if tags is not None else frame
    frame = frame.join(audiences, "oneid", "left") if audiences is not None else frame
    no_tags = F.from_json(F.lit("{}"), "map<string,string>")
    tag_value = F.col("tags") if tags is not None else no_tags
    listed = F.col("audiences") if audiences is not None else F.array()
    day = audiences_as_of.isoformat() if audiences_as_of else None
    document = F.struct(
        "oneid",
        F.coalesce("identifiers", F.array()).alias("identifiers"),
        *PROFILE_FIELDS,
        tag_value.alias("tags"),
        F.coalesce(listed, F.array()).alias("audiences"),
        F.lit(day).alias("audiences_as_of"),
    )
    return frame.select("oneid", F.to_json(document, JSON_OPTIONS).alias("document"))


def merge_rows(changes: DataFrame) -> DataFrame:
    """``from_oneid, to_oneid`` of every merge (a OneID is merged away once: ids are never
    reused, so each ``from_oneid`` has one row)."""
    merges = changes.where(F.col("kind") == "merge")
    return merges.groupBy("from_oneid").agg(F.max("to_oneid").alias("to_oneid"))


def retired_rows(changes: DataFrame) -> DataFrame:
    """``from_oneid, split_into`` of every OneID retired without a merge (no component kept
    any of its identifiers), with the OneIDs that splits of earlier runs minted off it."""
    retired = changes.where(F.col("kind") == "retire").select("from_oneid").distinct()
    splits = (
        changes.where((F.col("kind") == "split") & F.col("to_oneid").isNotNull())
        .groupBy("from_oneid")
        .agg(F.sort_array(F.collect_set("to_oneid")).alias("split_into"))
    )
    none = F.array().cast("array<bigint>")
    return retired.join(splits, "from_oneid", "left").select(
        "from_oneid", F.coalesce("split_into", none).alias("split_into")
    )
