"""Compute every registered tag for every OneID as of one date, in one pass per fact table.

Order of work: (1) :func:`fact_tags`: per fact table, one ``groupBy(oneid)`` holds all its
aggregate tags as conditional aggregates, and its fact builders (``top_value``, ``count_by``)
run on the same cached frame; (2) :func:`derive_tags`: tags declared with ``expr`` or a tag
builder (``rfm_score``, ``rfm_segment``) are added in declaration order over the joined
per-OneID frame. Facts after the as-of date never count: every aggregate is bounded by
``event_date <= as_of``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from oneid.checkpoint import materialize
from oneid.conf.tags import TagConf, TagsConf
from oneid.errors import ConfigError
from oneid.tags.facts import analysis_error

FACT_BUILDERS = ("top_value", "count_by")
ZERO_WHEN_EMPTY = ("count", "count_distinct", "sum")


def compute_tags(
    oneids: DataFrame,
    facts: dict[str, DataFrame],
    registry: TagsConf,
    as_of: dt.date,
    settle: Callable[[DataFrame], DataFrame] = materialize,
) -> DataFrame:
    """One row per OneID of ``oneids`` with a column per tag, typed as declared.

    ``facts`` maps a fact table name to its attributed frame (:func:`attribute_facts`).
    Same as :func:`derive_tags` over :func:`fact_tags`; ``settle`` as there.
    """
    return derive_tags(fact_tags(oneids, facts, registry, as_of), registry, as_of, settle)


def fact_tags(
    oneids: DataFrame, facts: dict[str, DataFrame], registry: TagsConf, as_of: dt.date
) -> DataFrame:
    """One row per OneID of ``oneids`` with the tags read from facts: aggregates and fact
    builders, one pass per fact table, NULL where a OneID has no matching fact."""
    wide = oneids.select("oneid").distinct()
    for name in needed_fact_tables(registry):
        if name not in facts:
            raise ConfigError(
                f"tags need silver.{name}: declare a source with `facts: {name}` or remove the "
                f"tags over it ({', '.join(_tags_over(registry, name))})"
            )
        frame = facts[name].where(
            F.col("oneid").isNotNull() & (F.col("event_date") <= F.lit(as_of))
        )
        for part in _fact_tags(frame, registry, name, as_of):
            wide = wide.join(part, "oneid", "left")
    return wide


def derive_tags(
    per_oneid: DataFrame,
    registry: TagsConf,
    as_of: dt.date,
    settle: Callable[[DataFrame], DataFrame] = materialize,
) -> DataFrame:
    """The fact tags of :func:`fact_tags` filled and typed, then ``expr`` and builder tags in
    declaration order.

    Each ``rfm_score`` reads its input twice (the population ranking and the join back), so
    what came before it is materialised once (``settle``, by default ``localCheckpoint``;
    :mod:`oneid.tags.check`, which only analyses, passes the frame on): the fact aggregations
    behind ``per_oneid`` run once, not once more per score.
    """
    wide = per_oneid.withColumn("as_of_date", F.lit(as_of))
    for tag in registry.definitions:
        if tag.aggregate is not None:
            wide = wide.withColumn(tag.name, _fill(tag).cast(tag.type))
        elif tag.builder in FACT_BUILDERS:
            wide = wide.withColumn(tag.name, F.col(tag.name).cast(tag.type))
        elif tag.builder == "rfm_score":
            # the score ranks the whole population: materialise what came before once, so
            # the facts are not aggregated again for the ranking and for the join back
            wide = _with_rfm_score(settle(wide), tag)
        elif tag.builder == "rfm_segment":
            wide = wide.withColumn(tag.name, _rfm_segment(registry, tag).cast(tag.type))
        else:
            wide = _with_expr(wide, tag)
    return wide.select("oneid", *(tag.name for tag in registry.definitions))


def needed_fact_tables(registry: TagsConf) -> list[str]:
    """Fact tables some tag reads, in a fixed order."""
    return [name for name in ("orders", "events", "contacts") if _tags_over(registry, name)]


def _tags_over(registry: TagsConf, name: str) -> list[str]:
    return [
        tag.name
        for tag in registry.definitions
        if (tag.aggregate and tag.aggregate.facts == name) or tag.params.get("facts") == name
    ]


def _fact_tags(frame: DataFrame, registry: TagsConf, name: str, as_of: dt.date) -> list[DataFrame]:
    """The aggregate tags of one fact table (one groupBy) and its fact builders."""
    aggregates = [t for t in registry.definitions if t.aggregate and t.aggregate.facts == name]
    parts = []
    if aggregates:
        columns = [_aggregate(tag, as_of).alias(tag.name) for tag in aggregates]
        parts.append(
            _analysed(
                lambda: frame.groupBy("oneid").agg(*columns),
                aggregates,
                name,
                alone=lambda tag: frame.groupBy("oneid").agg(_aggregate(tag, as_of)),
            )
        )
    for tag in registry.definitions:
        if tag.builder in FACT_BUILDERS and tag.params.get("facts") == name:
            build = _top_value if tag.builder == "top_value" else _count_by
            parts.append(_analysed(lambda t=tag, b=build: b(frame, t, as_of), [tag], name))
    return parts


def _analysed(
    make: Callable[[], DataFrame],
    tags: list[TagConf],
    facts: str,
    alone: Callable[[TagConf], object] | None = None,
) -> DataFrame:
    """``make()``, or a ConfigError naming the tag that does not fit the fact table: the first
    of ``tags`` that fails ``alone`` (analysing one tag by itself), else the first of them."""
    try:
        return make()
    except AnalysisException as exc:
        culprit, error = tags[0], exc
        for tag in tags if alone else ():
            try:
                alone(tag)
            except AnalysisException as own:
                culprit, error = tag, own
                break
        raise ConfigError(
            f"tags.definitions {culprit.name}: does not fit silver.{facts}: {analysis_error(error)}"
        ) from None


def _in_scope(tag: TagConf, as_of: dt.date, where: str | None) -> Column:
    """The facts a tag counts: its ``where`` and its window of business days."""
    condition = F.lit(True)
    if where:
        condition = condition & F.expr(where)
    if tag.window_days:
        start = as_of - dt.timedelta(days=tag.window_days - 1)
        condition = condition & (F.col("event_date") >= F.lit(start))
    return condition


def _aggregate(tag: TagConf, as_of: dt.date) -> Column:
    agg = tag.aggregate
    assert agg is not None
    scope = _in_scope(tag, as_of, agg.where)
    if agg.fn == "count":
        return F.count(F.when(scope, F.lit(1)))
    value = F.expr(agg.value or "NULL")
    kept = F.when(scope, value)
    if agg.fn in ("first", "last"):
        # earliest / latest fact; ties between facts at one instant: smallest / largest value
        order = F.when(scope & value.isNotNull(), F.struct(F.col("event_time"), value))
        return (F.min_by if agg.fn == "first" else F.max_by)(value, order)
    functions = {
        "sum": F.sum,
        "min": F.min,
        "max": F.max,
        "avg": F.avg,
        "count_distinct": F.count_distinct,
    }
    return functions[agg.fn](kept)


def _fill(tag: TagConf) -> Column:
    """Counts and sums of a OneID with no matching facts are 0, not NULL."""
    assert tag.aggregate is not None
    if tag.aggregate.fn in ZERO_WHEN_EMPTY:
        return F.coalesce(F.col(tag.name), F.lit(0).cast(tag.type))
    return F.col(tag.name)


def _top_value(frame: DataFrame, tag: TagConf, as_of: dt.date) -> DataFrame:
    """Most frequent value per OneID; ties: larger summed ``weight``, then the smaller value."""
    params = tag.params
    value = F.expr(str(params["value"]))
    split = params.get("split")
    if split:
        value = F.explode(F.split(value, re.escape(str(split))))
    weight = F.expr(str(params["weight"])) if params.get("weight") else F.lit(0)
    scoped = frame.where(_in_scope(tag, as_of, _opt(params, "where"))).select(
        "oneid", value.alias("_value"), weight.alias("_weight")
    )
    counted = (
        scoped.where(F.col("_value").isNotNull() & (F.trim("_value") != ""))
        .groupBy("oneid", "_value")
        .agg(F.count(F.lit(1)).alias("_n"), F.sum("_weight").alias("_w"))
    )
    best = Window.partitionBy("oneid").orderBy(
        F.col("_n").desc(), F.col("_w").desc_nulls_last(), F.col("_value")
    )
    return (
        counted.withColumn("_rank", F.row_number().over(best))
        .where("_rank = 1")
        .select("oneid", F.col("_value").alias(tag.name))
    )


def _count_by(frame: DataFrame, tag: TagConf, as_of: dt.date) -> DataFrame:
    """Map of ``key`` → number of facts, entries sorted by key (same bytes on every run)."""
    key = F.expr(str(tag.params["key"]))
    counts = (
        frame.where(_in_scope(tag, as_of, _opt(tag.params, "where")))
        .select("oneid", key.alias("_key"))
        .where(F.col("_key").isNotNull())
        .groupBy("oneid", "_key")
        .agg(F.count(F.lit(1)).alias("_n"))
    )
    return counts.groupBy("oneid").agg(
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("_key", "_n")))).alias(tag.name)
    )


def _with_rfm_score(wide: DataFrame, tag: TagConf) -> DataFrame:
    """Quintile score 1-5 of ``value`` among the population (5 = best).

    Equal values share a score: a OneID's score is ``1 + floor(5 * worse / n)`` where ``worse``
    counts the population members with a strictly worse value and ``n`` the population. Ranking
    runs over the distinct values only, so it stays small when the population is large.
    """
    value = str(tag.params["value"])
    higher = str(tag.params.get("better", "higher")) == "higher"
    population = F.expr(str(tag.params.get("population", "TRUE"))) & F.col(value).isNotNull()
    members = wide.where(population).select(F.col(value).alias("_v"))
    counts = members.groupBy("_v").agg(F.count(F.lit(1)).alias("_c"))
    order = F.col("_v").asc() if higher else F.col("_v").desc()
    before = Window.orderBy(order).rowsBetween(Window.unboundedPreceding, -1)
    total = Window.partitionBy(F.lit(1))
    scores = counts.select(
        "_v",
        (
            F.floor(F.coalesce(F.sum("_c").over(before), F.lit(0)) * 5 / F.sum("_c").over(total))
            + 1
        ).alias("_score"),
    )
    scored = wide.join(scores, wide[value] == scores["_v"], "left")
    return scored.withColumn(tag.name, F.when(population, F.col("_score")).cast(tag.type)).drop(
        "_v", "_score"
    )


def _rfm_segment(registry: TagsConf, tag: TagConf) -> Column:
    if not registry.rfm_segments:
        raise ConfigError(f"tag {tag.name!r} uses builder rfm_segment: declare tags.rfm_segments")
    r, f = F.col(str(tag.params["r"])), F.col(str(tag.params["f"]))
    result = F.lit(None).cast("string")
    for segment in reversed(registry.rfm_segments):
        result = F.when(r.isin(*segment.r) & f.isin(*segment.f), F.lit(segment.name)).otherwise(
            result
        )
    return result


def _with_expr(wide: DataFrame, tag: TagConf) -> DataFrame:
    try:
        return wide.withColumn(tag.name, F.expr(tag.expr or "NULL").cast(tag.type))
    except AnalysisException as exc:
        raise ConfigError(
            f"tags.definitions {tag.name}: expr {tag.expr!r} does not analyse (it may use tags "
            f"declared above it and as_of_date): {analysis_error(exc)}"
        ) from None


def _opt(params: dict, key: str) -> str | None:
    value = params.get(key)
    return str(value) if value is not None else None
