"""``oneid standardize``: bronze → silver, typed and deduplicated, with no raw PII.

- ``silver.identifiers``: one row per (source, record_key, id_type, value_hash), the value
  normalised by :mod:`oneid.standardize.normalize` and keyed-hashed (HMAC-SHA256, key version),
  plus its masked display form.
- ``quarantine.identifiers``: identifiers that were rejected (invalid phone, junk device, ...)
  with the reason; ``ops.standardize_stats`` counts kept and dropped identifiers per reason.
- ``silver.contacts`` / ``silver.orders`` / ``silver.events``: one row per (source, record_key),
  typed fields only; identifier and ``pii`` fields are left out. Duplicates collapse
  deterministically: the latest batch wins, ties broken by the row hash.

A run standardizes the bronze records that changed since the last run and replaces their
silver rows (one MERGE per table); ``--full`` rebuilds silver from all of bronze. Both give the
same rows (:mod:`oneid.standardize.changes`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.checkpoint import counted
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import CURRENCY_COLUMN, SourceConf
from oneid.errors import DataContractError
from oneid.ingest.fields import currency_of, parse_field
from oneid.standardize.changes import STATE_TABLE, fingerprints, plan_changes, state_rows
from oneid.standardize.hashing import HashKey, load_key, normalize_and_hash
from oneid.standardize.normalize import NORMALIZER_VERSION
from oneid.standardize.records import event_time, identifier_rows, junk_values, latest_records
from oneid.tables import (
    append,
    merge_keys,
    overwrite,
    read_table,
    read_table_or_none,
    union_all,
)

logger = logging.getLogger(__name__)

FACT_TABLES = {"contacts": "silver.contacts", "orders": "silver.orders", "events": "silver.events"}


@dataclass(frozen=True)
class StandardizeReport:
    tables: dict[str, int]
    identifiers_by_reason: dict[str, int]
    mode: str = "full"
    """``full: why`` or ``N source(s) changed: ...``."""


STANDARDIZE_TABLES = (
    "silver.identifiers",
    "quarantine.identifiers",
    "ops.standardize_stats",
    STATE_TABLE,
    *FACT_TABLES.values(),
)


def standardize(spark: SparkSession, cfg: OneIdConfig, full: bool = False) -> StandardizeReport:
    """Bring silver up to date with bronze, in one atomic run (:mod:`oneid.atomic`): only the
    records whose bronze rows changed since the last run, or all of them with ``full``
    (:mod:`oneid.standardize.changes` says when a run is full anyway)."""
    with atomic_run(spark, cfg, "standardize", "standardize", STANDARDIZE_TABLES):
        return _standardize(spark, cfg, full)


def _standardize(spark: SparkSession, cfg: OneIdConfig, full: bool) -> StandardizeReport:
    bronze = {
        name: frame
        for name in cfg.pipeline.sources
        if (frame := read_table_or_none(spark, cfg, f"bronze.{name}")) is not None
    }
    if not bronze:
        raise DataContractError("no bronze table found: run `oneid ingest --batch-id B` first")
    sources = cfg.pipeline.sources
    if not any(sources[name].identifiers for name in bronze):
        raise DataContractError(
            "no declared source has identifiers, so no record can reach a person: declare "
            "them under sources.<source>.identifiers"
        )
    key = load_key(cfg.env.secrets)
    changes = plan_changes(
        spark, cfg, bronze, fingerprints(cfg, key.version, NORMALIZER_VERSION), full
    )
    if not changes.full and not changes.sources:
        logger.info("standardize: bronze has not changed since the last run; nothing to do")
        return _report(
            spark,
            cfg,
            _outcomes(read_table(spark, cfg, "ops.standardize_stats")),
            "nothing changed",
        )
    # each source's latest rows feed its identifiers and its facts: read and ranked once, with
    # only the columns silver takes (not _extra, lineage or pii fields)
    latest = {
        name: latest_records(used_columns(part.rows, sources[name])).persist()
        for name, part in changes.sources.items()
    }
    keys = changes.keys()
    write = _Writer(cfg, None if keys is None else keys.persist(), changes.full)
    try:
        strong = cfg.pipeline.identity.strong_types
        extracted = [
            identifier_rows(frame, sources[name], strong)
            for name, frame in latest.items()
            if sources[name].identifiers
        ]
        if extracted:
            _write_identifiers(spark, write, union_all(extracted), key, junk_values(cfg))
        for facts, table in FACT_TABLES.items():
            frames = [
                fact_rows(frame, name, sources[name])
                for name, frame in latest.items()
                if sources[name].facts == facts
            ]
            if frames:
                write.facts(union_all(frames), table)
    finally:
        for frame in [*latest.values(), *([] if write.keys is None else [write.keys])]:
            frame.unpersist()
    overwrite(state_rows(spark, cfg, changes, bronze), cfg, STATE_TABLE)
    mode = "full" if changes.full else f"{len(changes.sources)} source(s) changed"
    return _report(spark, cfg, _write_stats(spark, cfg), f"{mode}: {changes.why}")


def _report(
    spark: SparkSession, cfg: OneIdConfig, by_reason: dict[str, int], mode: str
) -> StandardizeReport:
    tables = {
        "silver.identifiers": by_reason.get("kept", 0),
        "quarantine.identifiers": sum(v for k, v in by_reason.items() if k != "kept"),
    }
    for table in FACT_TABLES.values():
        if (frame := read_table_or_none(spark, cfg, table)) is not None:
            tables[table] = frame.count()
    return StandardizeReport(tables, by_reason, mode)


@dataclass(frozen=True)
class _Writer:
    """Writes a run's rows: whole tables in a full run, else the rows of the changed records
    (``keys``: source, record_key) in one MERGE per table, or one append when none of them
    has rows in the table yet."""

    cfg: OneIdConfig
    keys: DataFrame | None
    full: bool

    def replace(self, rows: DataFrame, name: str, keys: list[str]) -> None:
        current = None if self.full else read_table_or_none(rows.sparkSession, self.cfg, name)
        if current is None:
            # silver's change feed tells identity (and later readers) which records changed
            feed = name.startswith("silver.")
            overwrite(rows, self.cfg, name, deletion_vectors=True, change_feed=feed)
            return
        record = ["source", "record_key"]
        held_here = current.select(*record).join(self.keys, record, "left_semi").distinct()
        held, count = counted(held_here)
        if not count:
            # no changed record has rows here yet (the daily case: new records only): their
            # rows are all inserts, and an append does not read the table as a MERGE does
            append(rows, self.cfg, name)
            return
        scope = held if keys == record else current.join(held, record, "left_semi").select(*keys)
        merge_keys(rows, scope, self.cfg, name, keys)

    def facts(self, rows: DataFrame, name: str) -> None:
        self.replace(rows, name, ["source", "record_key"])


def _write_identifiers(
    spark: SparkSession,
    write: _Writer,
    extracted: DataFrame,
    key: HashKey,
    junk: dict[str, frozenset[str]],
) -> None:
    """``silver.identifiers`` and ``quarantine.identifiers`` of the extracted identifiers."""
    udf = normalize_and_hash(key, junk)
    checked = extracted.withColumn("_h", udf(F.col("id_type"), F.col("raw_value"))).persist()
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
        write.replace(good, "silver.identifiers", ["source", "record_key", "id_type", "value_hash"])
        rejected = (
            checked.where(F.col("_h.reason").isNotNull())
            .groupBy("source", "record_key", "id_type", "raw_value")
            .agg(F.min("_h.reason").alias("reason"), F.max("batch_id").alias("batch_id"))
        )
        write.replace(
            rejected, "quarantine.identifiers", ["source", "record_key", "id_type", "raw_value"]
        )
    finally:
        checked.unpersist()


def _write_stats(spark: SparkSession, cfg: OneIdConfig) -> dict[str, int]:
    """``ops.standardize_stats`` from the tables as they now are; identifiers per outcome.

    The counts (a few rows) are collected once and written from the driver: the tables are
    read once, not again for the outcomes."""
    kept = read_table(spark, cfg, "silver.identifiers").select(
        "source", "id_type", F.lit("kept").alias("outcome")
    )
    dropped = read_table(spark, cfg, "quarantine.identifiers").select(
        "source", "id_type", F.col("reason").alias("outcome")
    )
    counted = kept.unionByName(dropped).groupBy("source", "id_type", "outcome").count()
    rows = counted.collect()
    overwrite(spark.createDataFrame(rows, counted.schema), cfg, "ops.standardize_stats")
    return _totals(rows)


def _outcomes(stats: DataFrame) -> dict[str, int]:
    """Identifiers per outcome (``kept`` or a reason) of the ``ops.standardize_stats`` table."""
    return _totals(stats.collect())


def _totals(rows: list) -> dict[str, int]:
    """Identifiers per outcome of ``ops.standardize_stats`` rows (a few per source and type)."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["outcome"]] = totals.get(row["outcome"], 0) + row["count"]
    return totals


RANKING_COLUMNS = ("_source", "_record_key", "_batch_id", "_row_hash")


def used_columns(bronze: DataFrame, source: SourceConf) -> DataFrame:
    """The columns of a source's bronze rows that standardize reads: the record's key, batch and
    row hash, and every field that is not ``pii`` or that identifiers, the event time or the
    currency refer to."""
    refs = {source.timestamp, source.currency_field}
    for ident in source.identifiers:
        refs |= {ident.field, ident.scope_field, ident.kind_field}
    fields = [c.field for c in source.columns.values() if not c.pii or c.field in refs]
    present = set(bronze.columns)
    return bronze.select(*[c for c in (*RANKING_COLUMNS, *fields) if c in present])


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
