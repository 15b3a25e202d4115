"""Evaluate compiled audiences for one as-of date: one pass over the events, one wide table.

The events are filtered once (widest window, event types in use, nothing after the as-of
day) and aggregated per OneID in a single ``groupBy``; the aggregates are joined to the tags,
each audience's condition becomes a boolean column (in dependency order), exclusions remove
OneIDs, and the members are exploded into ``(audience_id, version, oneid, holdout)`` rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.audiences.compiled import CompiledAudiences
from oneid.audiences.holdout import holdout_flag, holdout_threshold
from oneid.audiences.literals import quote_name
from oneid.audiences.windows import EVENT_COLUMN, TIME_COLUMN, events_filter
from oneid.errors import DataContractError

MEMBERSHIP_SCHEMA = "audience_id string, version int, oneid bigint, holdout boolean"


def audience_input(
    tags: DataFrame, events: DataFrame, compiled: CompiledAudiences, as_of: dt.date
) -> DataFrame:
    """One row per row of ``tags``: ``oneid``, the tags rules use and every event aggregate.

    An aggregate is 0 for a OneID without matching events (a count, or a sum over nothing).
    """
    tag_columns = list(compiled.tag_columns)
    _require_columns(tags, ["oneid", *tag_columns], "tags")
    wide = tags.select("oneid", *(F.col(quote_name(t)) for t in tag_columns))
    if not compiled.aggregates:
        return wide
    needed = ["oneid", TIME_COLUMN, EVENT_COLUMN, *compiled.event_columns]
    _require_columns(events, needed, "events")
    per_oneid = (
        events.where(F.expr(events_filter(compiled.aggregates, as_of)))
        .groupBy("oneid")
        .agg(
            *(
                F.expr(sql).alias(name)
                for name, sql in compiled.aggregate_expressions(as_of).items()
            )
        )
    )
    names = [a.name for a in compiled.aggregates]
    return wide.join(per_oneid, "oneid", "left").select(
        "oneid",
        *(F.col(quote_name(t)) for t in tag_columns),
        *(F.coalesce(F.col(quote_name(n)), F.lit(0)).alias(n) for n in names),
    )


def evaluate_audiences(
    tags: DataFrame, events: DataFrame, compiled: CompiledAudiences, as_of: dt.date
) -> DataFrame:
    """Members of every audience on ``as_of``: ``(audience_id, version, oneid, holdout)``.

    ``tags``: ``oneid`` + tag columns, one row per OneID; ``events``: ``oneid``, ``event_time``
    (UTC timestamp), ``event`` and the property columns. Global exclusions apply to every
    audience; holdout members are rows with ``holdout = true`` (see ``holdout.py``).
    """
    if not compiled.audiences:
        return tags.sparkSession.createDataFrame([], MEMBERSHIP_SCHEMA)
    wide = audience_input(tags, events, compiled, as_of)
    for level in compiled.levels():
        wide = wide.select("*", *(F.expr(a.condition).alias(a.column) for a in level))
    if compiled.exclusion:
        wide = wide.where(~F.expr(compiled.exclusion))
    entries = F.array(
        *(
            F.struct(
                F.lit(a.audience_id).alias("audience_id"),
                F.lit(a.version).cast("int").alias("version"),
                F.lit(holdout_threshold(a.holdout)).alias("holdout_below"),
                F.col(quote_name(a.column)).alias("member"),
            )
            for a in compiled.audiences
        )
    )
    members = wide.select(
        F.col("oneid").cast("bigint").alias("oneid"),
        F.inline(F.filter(entries, lambda entry: entry["member"])),
    )
    return members.select(
        "audience_id",
        "version",
        "oneid",
        holdout_flag(F.col("oneid"), F.col("audience_id"), F.col("holdout_below")).alias("holdout"),
    )


def _require_columns(frame: DataFrame, columns: Sequence[str], label: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"audience rules need column(s) {missing} in the {label} frame "
            f"(it has {sorted(frame.columns)})"
        )
