"""What changed since the last run: records whose silver rows differ from identity.incidence.

``silver.identifiers``' change feed names them when it covers every commit since the last run
and those were MERGEs or appends of an incremental standardize (:func:`records_in_feed`).
Otherwise every incidence row keeps the hash of the silver row it came from (type, keyed hash,
strength, event time), so one join of the two tables on (record, row hash) finds the records
that are new, gone or different, without looking up any identifier (:func:`changed_records`).
Everything else a run recomputes is reached from these records.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.checkpoint import aggregated, materialize
from oneid.identity.graph import RECORD_KEY, record_groups, row_hash
from oneid.identity.keys import Keys


def changed_records(silver: DataFrame, incidence: DataFrame) -> tuple[Keys, DataFrame, DataFrame]:
    """Records added, removed or changed since ``incidence`` was written.

    Returns their (source, record_key), silver rows and previous incidence rows. The
    comparison shuffles two longs per row (record hash, row hash), not the key strings; a
    record-hash collision can only add an unchanged record to the result, never hide a change.
    """
    record = F.xxhash64(*RECORD_KEY).alias("_record")
    now = silver.select(record, row_hash().alias("row_hash"), F.lit(True).alias("_now"))
    before = incidence.select(record, "row_hash", F.lit(True).alias("_before"))
    # both sides are large and the keys unique: hashing beats sorting them (~20% here)
    before = before.hint("shuffle_hash")
    differ = now.join(before, ["_record", "row_hash"], "full_outer").where(
        F.col("_now").isNull() | F.col("_before").isNull()
    )
    hashes = Keys.of(differ.select("_record"))
    rows = materialize(
        silver.withColumn("_record", record)
        .join(hashes.hint(), "_record", "left_semi")
        .drop("_record")
    )
    old_rows = materialize(
        incidence.withColumn("_record", record)
        .join(hashes.hint(), "_record", "left_semi")
        .drop("_record")
    )
    records = Keys.of(rows.select(*RECORD_KEY).unionByName(old_rows.select(*RECORD_KEY)))
    return records, rows, old_rows


FEED_OPERATIONS = frozenset({"MERGE", "WRITE Append", "SET TBLPROPERTIES"})
"""Commits of ``silver.identifiers`` whose change feed names exactly the records they changed
(a full rewrite names every record: then :func:`changed_records` is cheaper)."""
APPEND_OPERATIONS = frozenset({"WRITE Append", "SET TBLPROPERTIES"})
"""Commits whose change feed holds every row of the records it names: standardize appends a
batch only when none of its records has a row in silver yet (otherwise it MERGEs)."""


def records_in_feed(
    feed: DataFrame, silver: DataFrame, incidence: DataFrame, appended: bool
) -> tuple[Keys, DataFrame, DataFrame]:
    """As :func:`changed_records`, for the records that ``silver.identifiers``' change ``feed``
    names: no pass over every row of both tables. A record the feed names without a change
    (rewritten the same) is recomputed the same; none is missed.

    ``appended``: every commit of the feed appended (:data:`APPEND_OPERATIONS`), so its rows
    are all the silver rows of records that had none in the version the last run read, and
    none in its incidence: neither table is read.
    """
    if appended:
        rows = materialize(feed.where(F.col("_change_type") == "insert").select(*silver.columns))
        return Keys.of(rows.select(*RECORD_KEY)), rows, incidence.limit(0)
    records = Keys.of(feed.select(*RECORD_KEY))
    rows = materialize(silver.join(records.hint(), RECORD_KEY, "left_semi"))
    old_rows = materialize(incidence.join(records.hint(), RECORD_KEY, "left_semi"))
    return records, rows, old_rows


@dataclass(frozen=True)
class Change:
    """The changed records of an incremental run and the incidence rows around them."""

    records: Keys
    """The changed records."""
    rows: DataFrame
    """Current incidence rows of the changed records."""
    old_rows: DataFrame
    """Previous incidence rows of the changed records."""
    touched: Keys
    """Nodes in ``rows`` or ``old_rows``: the only ones whose records changed."""
    gathered: DataFrame
    """Every record that holds a touched node, with its current incidence rows
    (:func:`~oneid.identity.graph.record_groups`)."""
    previous: DataFrame
    """The previous ``identity.incidence``."""
    sources: tuple[str, ...]
    """The sources of the records in ``gathered``."""

    def rows_of_nodes(self, ids: DataFrame) -> DataFrame:
        """Current incidence rows of the nodes ``ids`` (distinct node_id, hinted by the caller)."""
        return self._current(lambda frame: frame.join(ids, "node_id", "left_semi"))

    def rows_of_records(self, keys: DataFrame) -> DataFrame:
        """Current incidence rows of the records ``keys`` (distinct source, record_key)."""
        return self._current(lambda frame: frame.join(keys, RECORD_KEY, "left_semi"))

    def _current(self, pick) -> DataFrame:
        kept = pick(self.previous).join(self.records.hint(), RECORD_KEY, "left_anti")
        return kept.unionByName(pick(self.rows))


def incremental_change(
    rows: DataFrame, old_rows: DataFrame, previous: DataFrame, records: Keys
) -> Change:
    """``rows`` / ``old_rows``: current / previous incidence rows of the changed ``records``;
    ``previous``: the table."""
    touched = Keys.of(rows.select("node_id").unionByName(old_rows.select("node_id")))
    holders = Keys.of(
        previous.join(touched.hint(), "node_id", "left_semi")
        .select(*RECORD_KEY)
        .join(records.hint(), RECORD_KEY, "left_anti")
    )
    kept = previous.join(holders.hint(), RECORD_KEY, "left_semi")
    gathered, figures = aggregated(record_groups(kept.unionByName(rows)), F.collect_set("source"))
    return Change(records, rows, old_rows, touched, gathered, previous, tuple(figures[0]))
