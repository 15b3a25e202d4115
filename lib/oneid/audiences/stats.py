"""The figures of ``audience.stats`` for every audience of a day, from one aggregation.

Each member yields an entry for ``size``, ``holdout`` and each ``stats_by`` tag's value, each
change one for its kind, each member shared with another audience one ``overlap``; one
``groupBy`` sums them, so the Spark jobs do not grow with the number of audiences.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

Counts = dict[tuple[str, str, str], int]
"""``(audience_id, metric, key)`` → value, as ``audience.stats`` holds them."""
FIGURES = ("size", "holdout", "entered", "exited", "remapped")
"""Metrics every audience has a row for (0 when nothing counts), key ``""``."""


def count_stats(
    members: DataFrame, changes: DataFrame, tags: DataFrame, stats_by: list[str]
) -> Counts:
    """Every audience's sizes, changes, ``by:<tag>`` breakdowns and overlaps, in one aggregation.

    Small by construction (audiences x (figures + tag values + audiences)), so it is collected.
    """
    entries = (
        _member_entries(members, tags, stats_by)
        .unionByName(changes.select("audience_id", *_entry(F.col("change"), "", 1)))
        .unionByName(_overlap_entries(members))
    )
    rows = entries.groupBy("audience_id", "metric", "key").agg(F.sum("n").alias("value"))
    return {(r.audience_id, r.metric, r.key): r.value for r in rows.collect()}


def _member_entries(members: DataFrame, tags: DataFrame, stats_by: list[str]) -> DataFrame:
    """``(audience_id, metric, key, n)``: per member, one for size and holdout and per tag."""
    per_member = [
        F.struct(*_entry("size", "", 1)),
        F.struct(*_entry("holdout", "", F.col("holdout").cast("int"))),
        *(F.struct(*_entry(f"by:{tag}", _value_key(tags, tag), 1)) for tag in stats_by),
    ]
    frame = members.join(tags.select("oneid", *stats_by), "oneid", "left") if stats_by else members
    return frame.select("audience_id", F.inline(F.array(*per_member)))


def _overlap_entries(members: DataFrame) -> DataFrame:
    """``(audience_id, "overlap", other audience, n)``: one per member shared with another."""
    other = members.select(F.col("audience_id").alias("key"), "oneid")
    return (
        members.select("audience_id", "oneid")
        .join(other, "oneid")
        .where(F.col("audience_id") != F.col("key"))
        .select("audience_id", *_entry("overlap", F.col("key"), 1))
    )


def _entry(metric: str | Column, key: str | Column, n: int | Column) -> list[Column]:
    """The columns ``metric``, ``key``, ``n`` of one counted entry (plain values as literals)."""
    return [
        (F.lit(metric) if isinstance(metric, str) else metric).alias("metric"),
        (F.lit(key) if isinstance(key, str) else key).alias("key"),
        (F.lit(n) if isinstance(n, int) else n).alias("n"),
    ]


def _value_key(tags: DataFrame, tag: str) -> Column:
    """A tag's value as ``audience.stats`` keys it: its text (booleans ``True`` / ``False``,
    as before) or ``(none)``."""
    value = F.col(tag)
    if isinstance(tags.schema[tag].dataType, BooleanType):
        text = F.when(value, F.lit("True")).when(~value, F.lit("False"))
    else:
        text = value.cast("string")
    return F.coalesce(text, F.lit("(none)"))


def figures(counts: Counts, audience_id: str) -> dict[str, int]:
    """The :data:`FIGURES` of one audience, 0 for what nothing counted."""
    return {metric: counts.get((audience_id, metric, ""), 0) for metric in FIGURES}
