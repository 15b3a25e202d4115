"""Platform match keys of OneIDs, from bronze through the record mapping, in memory only.

Silver holds only keyed hashes, which no ad platform can match on. For the OneIDs of an
export, their identifiers' records are found in ``silver.identifiers``, the raw values are read
from those records in bronze, normalised again by the one normaliser, matched to the
published mapping by their keyed hash, and turned into each platform's key (MD5 / SHA-256 of
its format). The normalised value is a column of an in-memory plan and is never written.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.publish.platforms import Digest, key_format, match_key_column, upload_column
from oneid.standardize.hashing import load_key, normalize_for_export
from oneid.standardize.records import identifier_rows, junk_values, latest_records
from oneid.tables import read_table, read_table_or_none


def exportable_types(platform: str, wanted: tuple[str, ...] = ()) -> list[str]:
    """Identifier types sent to ``platform``: hashed keys only (OneID never exports raw ids)."""
    from oneid.publish.platforms import supported_types

    types = [t for t in supported_types(platform) if key_format(platform, t).digest != Digest.NONE]
    if wanted:
        unknown = sorted(set(wanted) - set(types))
        if unknown:
            raise ValueError(
                f"{platform} takes no hashed key for {unknown}; it takes {types} "
                "(raw identifiers are never exported)"
            )
        types = [t for t in types if t in wanted]
    return types


def normalised_identifiers(
    spark: SparkSession, cfg: OneIdConfig, oneids: DataFrame, id_types: list[str]
) -> DataFrame:
    """``(oneid, id_type, value)``: the normalised identifiers of ``oneids`` (column ``oneid``).

    Computed once per publish run for every platform destination; the caller caches it in
    memory and never writes it.
    """
    # the OneIDs' keyed hashes, read once: the holders' lookup and the last join use them
    # (materialising the holders too stopped Spark from finding the caller's cached result)
    mapping = materialize(
        read_table(spark, cfg, "identity.oneid_map")
        .where(F.col("id_type").isin(id_types))
        .join(oneids.select("oneid").distinct(), "oneid")
        .select("oneid", "id_type", "value_hash")
    )
    holders = (
        read_table(spark, cfg, "silver.identifiers")
        .join(mapping.select("id_type", "value_hash"), ["id_type", "value_hash"], "left_semi")
        .select("source", "record_key")
        .distinct()
    )
    raw = _raw_identifiers(spark, cfg, holders, id_types)
    udf = normalize_for_export(load_key(cfg.env.secrets), junk_values(cfg))
    normalised = raw.withColumn("_n", udf(F.col("id_type"), F.col("raw_value"))).select(
        "id_type", F.col("_n.value").alias("value"), F.col("_n.value_hash").alias("value_hash")
    )
    return normalised.join(mapping, ["id_type", "value_hash"]).select("oneid", "id_type", "value")


def match_keys(identifiers: DataFrame, platform: str, id_types: list[str]) -> DataFrame:
    """``(oneid, column, match_key)`` in ``platform``'s format, from normalised identifiers."""
    keyed = None
    for id_type in id_types:
        part = identifiers.where(F.col("id_type") == id_type).select(
            "oneid",
            F.lit(upload_column(platform, id_type)).alias("column"),
            match_key_column(platform, id_type, F.col("value")).alias("match_key"),
        )
        keyed = part if keyed is None else keyed.unionByName(part)
    assert keyed is not None
    return keyed.where(F.col("match_key").isNotNull()).distinct()


def _raw_identifiers(
    spark: SparkSession, cfg: OneIdConfig, holders: DataFrame, id_types: list[str]
) -> DataFrame:
    """``(id_type, raw_value)`` of the holder records, read from their bronze tables."""
    frames = []
    for name, source in cfg.pipeline.sources.items():
        if not source.identifiers:
            continue
        bronze = read_table_or_none(spark, cfg, f"bronze.{name}")
        if bronze is None:
            continue
        wanted = holders.where(F.col("source") == name).select(
            F.col("record_key").alias("_record_key")
        )
        records = latest_records(bronze.join(wanted, "_record_key", "left_semi"))
        rows = identifier_rows(records, source).where(F.col("id_type").isin(id_types))
        frames.append(rows.select("id_type", "raw_value"))
    if not frames:
        return spark.createDataFrame([], "id_type string, raw_value string")
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result.distinct()
