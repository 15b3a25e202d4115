"""The one way an identity run writes its state and published tables.

A run hands over a list of :class:`Write`: a full rebuild rewrites each table whole, an
incremental run MERGEs its rows on the table's key within the keys it recomputed (or appends
them when none of those keys is in the table yet). Lineage is appended before
``identity.incidence``, which is written last because it marks the changed records as consumed
(the next run diffs silver against it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame

from oneid.conf import OneIdConfig
from oneid.identity.graph import RECORD_KEY
from oneid.tables import append, merge_keys, overwrite

MERGE_KEYS = {
    "hubs": ["node_id"],
    "edges": ["src", "dst"],
    "oneid_map": ["node_id"],
    "record_oneid": RECORD_KEY,
    "profiles": ["oneid"],
    "incidence": [*RECORD_KEY, "node_id"],
}
"""The identity tables a run rewrites or MERGEs (in the order it writes them), with their key."""
STATE_TABLES = tuple(MERGE_KEYS)
MOSTLY_UNCHANGED = frozenset({"hubs", "oneid_map", "record_oneid"})
"""Tables where most rows in a run's scope keep their value: compared before the MERGE."""


@dataclass(frozen=True)
class Write:
    """``rows`` for ``identity.<table>``: the whole table, or the rows of ``keys`` in it."""

    table: str
    rows: DataFrame
    keys: DataFrame | None = None
    """The key rows that ``rows`` replace (hinted by the caller where small); ``None``: all."""
    new: bool = False
    """No key of ``rows`` or ``keys`` is in the table yet: ``rows`` are appended (an append
    does not read the table, as a MERGE does to find the files it touches)."""


def publish(cfg: OneIdConfig, writes: list[Write], changes: DataFrame) -> None:
    """Carry out ``writes`` in order, with ``changes`` (lineage rows) appended before
    incidence (or last when the run writes no incidence)."""
    last = [write for write in writes if write.table == "incidence"]
    for write in [write for write in writes if write.table != "incidence"]:
        _write(cfg, write)
    append(changes, cfg, "identity.oneid_changes")
    for write in last:
        _write(cfg, write)


def _write(cfg: OneIdConfig, write: Write) -> None:
    name = f"identity.{write.table}"
    if write.new:
        append(write.rows, cfg, name)
    elif write.keys is None:
        overwrite(write.rows, cfg, name, deletion_vectors=True)
    else:
        skip = write.table in MOSTLY_UNCHANGED
        merge_keys(write.rows, write.keys, cfg, name, MERGE_KEYS[write.table], skip)
