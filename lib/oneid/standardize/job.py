"""``oneid standardize``: bronze → silver, typed and deduplicated, with no raw PII.

- ``silver.identifiers``: one row per (source, record_key, id_type, value_hash), the value
  normalised by :mod:`oneid.standardize.normalize` and keyed-hashed (HMAC-SHA256, key version),
  plus its masked display form; :mod:`oneid.standardize.builtin` evaluates the common cases
  with Spark built-ins, the Python normaliser the rest.
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

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import CURRENCY_COLUMN, SourceConf
from oneid.errors import DataContractError
from oneid.ingest.fields import currency_of, parse_field
from oneid.standardize.builtin import normalized_and_hashed
from oneid.standardize.hashing import load_key
from oneid.standardize.normalize import NORMALIZER_VERSION
from oneid.standardize.records import event_time, identifier_rows, junk_values, latest_records
from oneid.tables import overwrite, read_table_or_none, union_all

logger = logging.getLogger(__name__)

FACT_TABLES = {"contacts": "silver.contacts", "orders": "silver.orders", "events": "silver.events"}


@dataclass(frozen=True)
class StandardizeReport:
    tables: dict[str, int]
    identifiers_by_reason: dict[str, int]


STANDARDIZE_TABLES = (
    "silver.identifiers",
    "quarantine.identifiers",
    "ops.standardize_stats",
    *FACT_TABLES.values(),
)


def standardize(spark: SparkSession, cfg: OneIdConfig) -> StandardizeReport:
    """Rebuild the silver tables from bronze, in one atomic run (:mod:`oneid.atomic`)."""
    with atomic_run(spark, cfg, "standardize", "standardize", STANDARDIZE_TABLES):
        return _standardize(spark, cfg)


def _standardize(spark: SparkSession, cfg: OneIdConfig) -> StandardizeReport:
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
    if not extracted:
        raise DataContractError(
            "no declared source has identifiers, so no record can reach a person: declare "
            "them under sources.<source>.identifiers"
        )
    key = load_key(cfg.env.secrets)
    checked = normalized_and_hashed(spark, union_all(extracted), key, junk_values(cfg)).persist()
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


def fact_rows(frame: DataFrame, name: str, source: SourceConf) -> DataFrame:
    """Typed fields of a record, with its event time; identifier and ``pii`` fields left out."""
    identifying = {ident.field for ident in source.identifiers} | {CURRENCY_COLUMN}
    zone, aliases = source.time_zone, source.time_zone_aliases
    keep = [
        parse_field(F.col(column.field), column, zone, aliases).alias(column.field)
        for column in source.columns.values()
        if not column.pii and column.field not in identifying
    ]
    if source.has_amounts():
        keep.append(currency_of(source).alias(CURRENCY_COLUMN))
    return frame.select(
        F.col("_source").alias("source"),
        F.col("_record_key").alias("record_key"),
        event_time(source).alias("event_time"),
        *keep,
        F.col("_batch_id").alias("batch_id"),
    )
