"""``oneid standardize``: bronze → silver, typed and deduplicated, with no raw PII.

- ``silver.identifiers``: one row per (source, record_key, id_type, value_hash), the value
  normalised by :mod:`oneid.standardize.normalize` and keyed-hashed (HMAC-SHA256, key version),
  plus its masked display form.
- ``quarantine.identifiers``: identifiers that were rejected (invalid phone, junk device, ...)
  with the reason; ``ops.standardize_stats`` counts kept and dropped identifiers per reason.
- ``silver.contacts`` / ``silver.orders`` / ``silver.events``: one row per (source, record_key),
  typed fields only; identifier and ``pii`` fields are left out. Duplicates collapse
  deterministically: the latest batch wins, ties broken by the row hash.

Silver is rebuilt from all of bronze on every run (one Delta commit per table), so a re-run
gives identical rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.pipeline import IdentifierConf, SourceConf
from oneid.errors import DataContractError
from oneid.ingest.fields import parse_field
from oneid.standardize.hashing import load_key, normalize_and_hash
from oneid.standardize.normalize import DEFAULT_JUNK_VALUES, NORMALIZER_VERSION
from oneid.tables import overwrite, read_table_or_none, union_all

logger = logging.getLogger(__name__)

FACT_TABLES = {"contacts": "silver.contacts", "orders": "silver.orders", "events": "silver.events"}


@dataclass(frozen=True)
class StandardizeReport:
    tables: dict[str, int]
    identifiers_by_reason: dict[str, int]


def standardize(spark: SparkSession, cfg: OneIdConfig) -> StandardizeReport:
    """Rebuild the silver tables from bronze."""
    bronze = {
        name: frame
        for name in cfg.pipeline.sources
        if (frame := read_table_or_none(spark, cfg, f"bronze.{name}")) is not None
    }
    if not bronze:
        raise DataContractError("no bronze table found: run `oneid ingest --batch-id B` first")
    latest = {name: latest_records(frame) for name, frame in bronze.items()}
    sources = cfg.pipeline.sources

    tables: dict[str, int] = {}
    strong = cfg.pipeline.identity.strong_types
    extracted = [
        identifier_rows(frame, sources[name], strong)
        for name, frame in latest.items()
        if sources[name].identifiers
    ]
    key = load_key(cfg.env.secrets)
    udf = normalize_and_hash(key, junk_values(cfg))
    checked = union_all(extracted).withColumn("_h", udf(F.col("id_type"), F.col("raw_value")))
    checked = checked.persist()
    try:
        good = (
            checked.where(F.col("_h.reason").isNull())
            .groupBy("source", "record_key", "id_type", F.col("_h.value_hash").alias("value_hash"))
            .agg(
                F.first("_h.masked").alias("masked"),
                F.min("strength").alias("strength"),
                F.min("event_time").alias("event_time"),
                F.max("batch_id").alias("batch_id"),
            )
            .select(
                "source",
                "record_key",
                "id_type",
                "value_hash",
                F.lit(key.version).alias("key_version"),
                "masked",
                "strength",
                F.lit(NORMALIZER_VERSION).alias("normalizer_version"),
                "event_time",
                "batch_id",
            )
        )
        overwrite(good, cfg, "silver.identifiers")
        rejected = checked.where(F.col("_h.reason").isNotNull()).select(
            "source",
            "record_key",
            "id_type",
            "raw_value",
            F.col("_h.reason").alias("reason"),
            "batch_id",
        )
        overwrite(rejected, cfg, "quarantine.identifiers")
        stats = checked.groupBy(
            "source", "id_type", F.coalesce(F.col("_h.reason"), F.lit("kept")).alias("outcome")
        ).count()
        overwrite(stats, cfg, "ops.standardize_stats")
        by_reason = {
            row["outcome"]: row["n"]
            for row in stats.groupBy("outcome").agg(F.sum("count").alias("n")).collect()
        }
    finally:
        checked.unpersist()
    tables["silver.identifiers"] = by_reason.get("kept", 0)
    tables["quarantine.identifiers"] = sum(v for k, v in by_reason.items() if k != "kept")

    for facts, table in FACT_TABLES.items():
        frames = [
            fact_rows(frame, name, sources[name])
            for name, frame in latest.items()
            if sources[name].facts == facts
        ]
        if not frames:
            continue
        result = union_all(frames)
        overwrite(result, cfg, table)
        tables[table] = read_table_or_none(spark, cfg, table).count()
    return StandardizeReport(tables, by_reason)


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
            _event_time(source).alias("event_time"),
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


def fact_rows(frame: DataFrame, name: str, source: SourceConf) -> DataFrame:
    """Typed fields of a record, with its event time; identifier and ``pii`` fields left out."""
    identifying = {ident.field for ident in source.identifiers}
    keep = [
        parse_field(F.col(column.field), column, source.time_zone).alias(column.field)
        for column in source.columns.values()
        if not column.pii and column.field not in identifying
    ]
    return frame.select(
        F.col("_source").alias("source"),
        F.col("_record_key").alias("record_key"),
        _event_time(source).alias("event_time"),
        *keep,
        F.col("_batch_id").alias("batch_id"),
    )


def _event_time(source: SourceConf) -> Column:
    if not source.timestamp:
        return F.lit(None).cast("timestamp")
    column = next(c for c in source.columns.values() if c.field == source.timestamp)
    return parse_field(F.col(column.field), column, source.time_zone)


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
