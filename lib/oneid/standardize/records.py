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
from oneid.standardize.normalize import DEFAULT_JUNK_VALUES, UNDETECTED_KIND


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


DEVICE_SHAPES = (
    ("imei", r"^[0-9]{14,15}$"),
    ("idfa", r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$"),
    ("oaid", r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    ("oaid", r"^[0-9A-Fa-f]{64}$"),
    ("android_id", r"^[0-9A-Fa-f]{16}$"),
)
"""Device id kinds by the shape of the value, first match wins: an IMEI is 14-15 digits
(separators aside); Apple writes an IDFA as an upper-case UUID, Huawei's OAID is a lower-case
one; 64 hex digits are a vivo / OPPO OAID; 16 hex digits an Android id (a 16-digit Xiaomi OAID
has the same shape: declare ``kind_field`` where both occur)."""


def device_kind(raw: Column) -> Column:
    """The kind of a device id by its shape (:data:`DEVICE_SHAPES`), else ``undetected`` (which
    standardize rejects as ``undetected_device``)."""
    value = F.trim(raw)
    digits = F.regexp_replace(value, r"[\s/-]", "")
    kind = F.when(digits.rlike(DEVICE_SHAPES[0][1]), F.lit(DEVICE_SHAPES[0][0]))
    for name, shape in DEVICE_SHAPES[1:]:
        kind = kind.when(value.rlike(shape), F.lit(name))
    return kind.otherwise(F.lit(UNDETECTED_KIND))


def _id_type(ident: IdentifierConf) -> Column:
    """Namespaced identifier type: ``wx_openid:<appid>``, ``device:<kind>``, ``phone``, ...

    A device's kind is ``kind``, else the ``kind_field`` cell, else (``kind: auto`` or an empty
    cell) detected from the value."""
    if ident.type == "device":
        detected = device_kind(F.col(ident.field))
        if ident.kind and ident.kind != "auto":
            kind = F.lit(ident.kind)
        elif ident.kind_field:
            cell = F.lower(F.trim(F.col(ident.kind_field)))
            kind = F.when(F.length(cell) > 0, cell).otherwise(detected)
        else:
            kind = detected
        return F.concat(F.lit("device:"), kind)
    if ident.scope:
        return F.lit(f"{ident.type}:{ident.scope}")
    if ident.scope_field:
        return F.concat(F.lit(f"{ident.type}:"), F.trim(F.col(ident.scope_field)))
    return F.lit(ident.type)
