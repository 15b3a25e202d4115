"""Silver facts attributed to OneIDs, with their business-day date, read once per run.

A fact belongs to the OneID of its record (``identity.record_oneid``); facts of records without
a OneID (all their identifiers were hubs or rejected) are kept with a NULL ``oneid`` so the
summary can count them. ``event_date`` is the fact's date in the business time zone; facts
without an event time cannot be placed in time and never count.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from oneid.conf.tags import TagsConf
from oneid.errors import ConfigError
from oneid.tags.currency import in_reporting_currency

FACT_TABLES = ("orders", "events", "contacts")


def business_date(event_time: Column, time_zone: str) -> Column:
    """The date of a UTC instant in the business time zone."""
    return F.to_date(F.from_utc_timestamp(event_time, time_zone))


def attribute_facts(
    facts: DataFrame,
    record_oneid: DataFrame,
    registry: TagsConf,
    name: str,
    until: dt.date,
    rates: DataFrame | None = None,
) -> DataFrame:
    """``facts`` up to the end of ``until`` with ``oneid``, ``event_date``, amounts in the
    reporting currency (``rates``: :func:`oneid.tags.currency.load_rates`; a fact without a rate
    is marked ``_no_rate``, see :func:`~oneid.tags.currency.require_rates`) and derived columns.

    Only the owners of records from this table's sources take part in the join (a broadcast
    semi-join on the few source names): ``record_oneid`` holds the records of every fact table,
    and the join would otherwise shuffle all of it once per fact table.
    """
    sources = F.broadcast(facts.select("source").distinct())
    owners = record_oneid.join(sources, "source", "left_semi").select(
        "source", "record_key", "oneid"
    )
    frame = (
        facts.where(F.col("event_time").isNotNull())
        .withColumn("event_date", business_date(F.col("event_time"), registry.time_zone))
        .where(F.col("event_date") <= F.lit(until))
        .join(owners, ["source", "record_key"], "left")
        .transform(lambda frame: in_reporting_currency(frame, registry.currency, rates))
    )
    for column, sql in registry.derived_columns.get(name, {}).items():  # type: ignore[call-overload]
        try:
            frame = frame.withColumn(column, F.expr(sql))
        except AnalysisException as exc:
            raise ConfigError(
                f"tags.derived_columns.{name}.{column}: {sql!r} does not fit silver.{name}: "
                f"{analysis_error(exc)}"
            ) from None
    return frame


def analysis_error(exc: AnalysisException) -> str:
    """What Spark could not resolve, in one line (``column `x` is not there; it has ...``)."""
    parameters = exc.getMessageParameters() or {}
    if (exc.getCondition() or "").startswith("UNRESOLVED_COLUMN"):
        offered = parameters.get("proposal")
        there = f"; did you mean one of {offered}?" if offered else ""
        return f"column {parameters.get('objectName')} is not there{there}"
    return str(exc).splitlines()[0]
