"""Bronze records as standardize reads them: the latest row per record, its identifiers and
event time, and the junk values conf adds to the normaliser's.

Shared by ``oneid standardize`` (which writes silver from them) and ``oneid publish`` (which
reads the raw values of a few records again to build platform match keys), so both read a
record the same way.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentifierConf, SourceConf
from oneid.ingest.fields import parse_field
from oneid.standardize.normalize import DEFAULT_JUNK_VALUES


def junk_values(cfg: OneIdConfig) -> dict[str, frozenset[str]]:
    """Built-in junk values merged with ``standardize.junk_values`` from conf."""
    merged = {key: set(values) for key, values in DEFAULT_JUNK_VALUES.items()}
    for id_type, values in cfg.pipeline.standardize.junk_values.items():
        merged.setdefault(id_type, set()).update(values)
    return {key: frozenset(values) for key, values in merged.items()}


def latest_records(bronze: DataFrame) -> DataFrame:
    """One row per record key: the latest batch wins, ties broken by row hash (deterministic)."""
    order = Window.partitionBy("_record_key").orderBy(
        F.col("_batch_id").desc(), F.col("_row_hash").desc()
    )
    return bronze.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def identifier_rows(
    frame: DataFrame, source: SourceConf, strong_types: tuple[str, ...] = ()
) -> DataFrame:
    """(source, record_key, id_type, raw_value, strength, event_time, batch_id) per identifier.

    One explode per source (not one branch per identifier) keeps the plan small.
    """
    pairs = F.array(
        *[
            F.struct(
                _id_type(ident).alias("id_type"),
                F.col(ident.field).alias("raw_value"),
                F.lit(ident.strength or ("strong" if ident.type in strong_types else "weak")).alias(
                    "strength"
                ),
            )
            for ident in source.identifiers
        ]
    )
    return (
        frame.select(
            F.col("_source").alias("source"),
            F.col("_record_key").alias("record_key"),
            F.explode(pairs).alias("_id"),
            event_time(source).alias("event_time"),
            F.col("_batch_id").alias("batch_id"),
        )
        .select(
            "source",
            "record_key",
            "_id.id_type",
            "_id.raw_value",
            "_id.strength",
            "event_time",
            "batch_id",
        )
        .where(F.col("raw_value").isNotNull() & (F.length(F.trim("raw_value")) > 0))
    )


def event_time(source: SourceConf) -> Column:
    """The record's event time, parsed from the source's ``timestamp`` field (null without one)."""
    if not source.timestamp:
        return F.lit(None).cast("timestamp")
    column = next(c for c in source.columns.values() if c.field == source.timestamp)
    return parse_field(F.col(column.field), column, source.time_zone, source.time_zone_aliases)


def _id_type(ident: IdentifierConf) -> Column:
    """Namespaced identifier type: ``wx_openid:<appid>``, ``device:<kind>``, ``phone``, ..."""
    if ident.type == "device":
        kind = F.lit(ident.kind) if ident.kind else F.lower(F.trim(F.col(ident.kind_field or "")))
        return F.concat(F.lit("device:"), kind)
    if ident.scope:
        return F.lit(f"{ident.type}:{ident.scope}")
    if ident.scope_field:
        return F.concat(F.lit(f"{ident.type}:"), F.trim(F.col(ident.scope_field)))
    return F.lit(ident.type)
