"""What a standardize run must redo: the bronze records that changed since the last run.

Standardize remembers, per source, the bronze version it last read and a fingerprint of all
that shapes silver (the source's conf, the strong types, the junk values, the HMAC key's version
and the normaliser's version) in ``ops.standardize_state``. A run then reads each bronze table's
change feed from the version after that one:

- a source with no new version is skipped;
- when every change is an insert of batches that sort after the last batch read (the daily
  case), the new rows are all standardize needs: they win over older rows of their records;
- otherwise (a replayed batch, a batch id that sorts earlier) the changed records are read
  again from all of bronze, so the latest row of each record wins as in a full run.

A run is full (silver rebuilt from all of bronze) with ``--full``, on the first run, when a
fingerprint differs, when a source was added or removed, or when a change feed does not reach
back to the version read last (it was off, or vacuumed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.tables import (
    FEED_COLUMNS,
    change_feed,
    read_table_or_none,
    read_version,
    union_all,
)

logger = logging.getLogger(__name__)

STATE_TABLE = "ops.standardize_state"


@dataclass(frozen=True)
class SourceChanges:
    """One source's part of a run: ``rows`` to standardize (all of its bronze in a full run),
    ``keys`` (``source``, ``record_key``) whose silver rows they replace (None in a full run)."""

    rows: DataFrame
    keys: DataFrame | None
    version: int
    last_batch: str | None = None
    """The largest batch id read so far, when the run knows it without reading bronze: the
    previous one or the feed's largest (never below the largest in bronze; None: read it)."""


@dataclass(frozen=True)
class Changes:
    """The sources a run standardizes; ``full``: silver is rebuilt (``why`` says why)."""

    full: bool
    why: str
    sources: dict[str, SourceChanges]
    fingerprints: dict[str, str]

    def keys(self) -> DataFrame | None:
        """(source, record_key) of every changed record (None in a full run or with none)."""
        frames = [c.keys for c in self.sources.values() if c.keys is not None]
        return union_all(frames) if frames else None


def fingerprints(cfg: OneIdConfig, key_version: int, normalizer_version: str) -> dict[str, str]:
    """Per source, a digest of everything that shapes its silver rows."""
    common = {
        "strong": list(cfg.pipeline.identity.strong_types),
        "junk": {k: sorted(v) for k, v in cfg.pipeline.standardize.junk_values.items()},
        "key_version": key_version,
        "normalizer": normalizer_version,
    }
    digests = {}
    for name, source in cfg.pipeline.sources.items():
        shape = {"source": source.model_dump(mode="json"), **common}
        text = json.dumps(shape, sort_keys=True, default=str)
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def plan_changes(
    spark: SparkSession,
    cfg: OneIdConfig,
    bronze: Mapping[str, DataFrame],
    digests: Mapping[str, str],
    full: bool,
) -> Changes:
    """What this run standardizes (see the module's docstring)."""
    versions = {name: read_version(spark, cfg, f"bronze.{name}") for name in bronze}
    state = _state(spark, cfg)
    why = _full_because(state, bronze, digests, full)
    if why is None:
        changed: dict[str, SourceChanges] = {}
        for name, frame in bronze.items():
            last = state[name]
            if versions[name] == last["bronze_version"]:
                continue
            feed = change_feed(spark, cfg, f"bronze.{name}", last["bronze_version"], versions[name])
            if feed is None:
                why = f"bronze.{name}'s change feed does not reach back to its last read version"
                break
            changed[name] = _source_changes(frame, feed, last["max_batch_id"], versions[name])
        else:
            return Changes(False, "changes since the last run", changed, dict(digests))
    logger.info("standardize: full run (%s)", why)
    everything = {
        name: SourceChanges(frame, None, versions[name]) for name, frame in bronze.items()
    }
    return Changes(True, why, everything, dict(digests))


def state_rows(
    spark: SparkSession, cfg: OneIdConfig, changes: Changes, bronze: Mapping[str, DataFrame]
) -> DataFrame:
    """``ops.standardize_state`` after this run: per source the bronze version read, its last
    batch id and its fingerprint (sources this run skipped keep their row)."""
    previous = {} if changes.full else _state(spark, cfg)
    last = {name: part.last_batch for name, part in changes.sources.items()}
    read = [name for name in bronze if name in changes.sources and last[name] is None]
    if read:  # the other sources' last batch id in one job
        batches = union_all(
            [bronze[name].select(F.lit(name).alias("_source"), "_batch_id") for name in read]
        )
        for row in batches.groupBy("_source").agg(F.max("_batch_id").alias("b")).collect():
            last[row["_source"]] = row["b"]
    rows = []
    for name in bronze:
        part = changes.sources.get(name)
        if part is None:
            kept = previous[name]
            rows.append((name, kept["bronze_version"], kept["max_batch_id"], kept["fingerprint"]))
        else:
            rows.append((name, part.version, last[name], changes.fingerprints[name]))
    frame = spark.createDataFrame(
        rows, "source string, bronze_version long, max_batch_id string, fingerprint string"
    )
    return frame.withColumn("standardized_at", F.current_timestamp())


def _state(spark: SparkSession, cfg: OneIdConfig) -> dict[str, dict]:
    frame = read_table_or_none(spark, cfg, STATE_TABLE)
    return {} if frame is None else {row["source"]: row.asDict() for row in frame.collect()}


def _full_because(
    state: Mapping[str, dict],
    bronze: Mapping[str, DataFrame],
    digests: Mapping[str, str],
    full: bool,
) -> str | None:
    if full:
        return "--full"
    if not state:
        return "first run"
    if set(state) != set(bronze):
        return f"sources changed: {sorted(set(state) ^ set(bronze))}"
    for name in bronze:
        if state[name]["fingerprint"] != digests[name]:
            return f"{name}: conf, key or normaliser changed since the last run"
    return None


def _source_changes(
    bronze: DataFrame, feed: DataFrame, last_batch: str | None, version: int
) -> SourceChanges:
    """The rows to standardize for one source's changes, and the records they replace."""
    summary = feed.agg(
        F.count(F.when(F.col("_change_type") != "insert", 1)).alias("other"),
        F.min("_batch_id").alias("first_batch"),
        F.max("_batch_id").alias("new_batch"),
    ).first()
    keys = feed.select(F.col("_source").alias("source"), F.col("_record_key").alias("record_key"))
    keys = keys.distinct()
    appended = summary["other"] == 0 and (
        last_batch is None or summary["first_batch"] is None or summary["first_batch"] > last_batch
    )
    if appended:
        rows = feed.where(F.col("_change_type") == "insert").drop(*FEED_COLUMNS)
    else:
        rows = bronze.join(
            keys.select(F.col("record_key").alias("_record_key")), "_record_key", "left_semi"
        )
    # a batch the feed removed whole may leave this above bronze's largest: then a later batch
    # that sorts below it is read like a replay (correct, slower), never the other way round
    batches = [b for b in (last_batch, summary["new_batch"]) if b is not None]
    return SourceChanges(rows, keys, version, max(batches) if batches else None)
