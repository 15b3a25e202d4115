"""Who entered, who left: a day's members against the previous snapshot, through OneID lineage.

Identity runs between two snapshots may merge OneIDs (``merge``: from → to) or split them
(``split``: from → a newly minted id). Before comparing, each previous member is followed
through those changes to the OneIDs that hold its identifiers now, so a merge is a
``remapped`` row, never an exit plus an entry.
"""

from __future__ import annotations

from collections.abc import Collection

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.checkpoint import counted

_KEYS = ["audience_id", "oneid"]
MAX_LINEAGE_DEPTH = 64


def follow_lineage(previous: DataFrame, changes: DataFrame, existing: DataFrame) -> DataFrame:
    """``(old, new)``: each OneID of ``previous`` and every existing OneID it became.

    ``changes`` is ``identity.oneid_changes``; ``existing`` holds the OneIDs of the current
    mapping. Merges and splits are followed transitively (ids are never reused, so the whole
    history can be followed); a OneID that still exists maps to itself as well.
    """
    moves = (
        changes.where(F.col("kind").isin("merge", "split"))
        .select(F.col("from_oneid").alias("cur"), F.col("to_oneid").alias("_to"))
        .distinct()
    )
    reach = previous.select(F.col("oneid").alias("old"), F.col("oneid").alias("cur")).distinct()
    size = reach.count()
    for _ in range(MAX_LINEAGE_DEPTH):
        step = reach.join(moves, "cur").select("old", F.col("_to").alias("cur"))
        reach, grown_size = counted(reach.unionByName(step).distinct())
        if grown_size == size:
            break
        size = grown_size
    now = existing.select(F.col("oneid").alias("cur")).distinct()
    return reach.join(now, "cur").select("old", F.col("cur").alias("new"))


def diff_members(
    previous: DataFrame, current: DataFrame, lineage: DataFrame, emit_all: Collection[str] = ()
) -> DataFrame:
    """Rows ``(audience_id, oneid, change, from_oneid, holdout)`` turning ``previous`` into
    ``current``, for every audience at once.

    ``previous`` / ``current``: ``(audience_id, oneid, holdout)`` members; ``lineage``:
    ``(old, new)`` from :func:`follow_lineage`. Per audience, ``entered``: a member no previous
    member became; ``exited``: a previous member none of whose successors is a member (reported
    under its old id); ``remapped``: a member that a different previous member became
    (``from_oneid`` = the old id). In the audiences of ``emit_all`` every current member is
    ``entered`` (first run of a new version); exits and remaps are reported as usual, so a
    destination can drop what it no longer needs.
    """
    carried = (
        previous.select("audience_id", F.col("oneid").alias("old"))
        .join(lineage, "old")
        .join(
            current.select("audience_id", F.col("oneid").alias("new"), "holdout"),
            ["audience_id", "new"],
        )
    )
    continuing = carried.where(~F.col("audience_id").isin(list(emit_all)))  # emit_all: none
    entered = current.join(
        continuing.select("audience_id", F.col("new").alias("oneid")), _KEYS, "left_anti"
    )
    exited = previous.join(
        carried.select("audience_id", F.col("old").alias("oneid")), _KEYS, "left_anti"
    )
    no_source = F.lit(None).cast("bigint").alias("from_oneid")
    return (
        entered.select(*_KEYS, F.lit("entered").alias("change"), no_source, "holdout")
        .unionByName(
            carried.where(F.col("old") != F.col("new")).select(
                "audience_id",
                F.col("new").alias("oneid"),
                F.lit("remapped").alias("change"),
                F.col("old").alias("from_oneid"),
                "holdout",
            )
        )
        .unionByName(exited.select(*_KEYS, F.lit("exited").alias("change"), no_source, "holdout"))
    )
