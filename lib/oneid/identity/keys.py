"""Small key sets (changed records, touched nodes) that joins broadcast while they are small."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.checkpoint import counted, materialize

BROADCAST_ROWS = 1_000_000
"""Largest key set sent to every task instead of shuffling the big side of a join."""

DICTIONARY_BROADCAST_ROWS = 2_000_000
"""Largest node dictionary sent to every task when every silver row looks up its node (rows of
~120 bytes: up to ~250 MB built on the driver). At 1.5M nodes and 8.7M silver rows the lookup
took 12 s broadcast against 46 s with both sides shuffled (docs/performance.md). A full run's
resolved mapping (node_id, oneid: two longs a row) is sent to its output joins under the same
bound."""


@dataclass(frozen=True)
class Keys:
    """Distinct key rows, materialised once, and how many there are."""

    frame: DataFrame
    size: int

    @classmethod
    def of(cls, frame: DataFrame) -> Keys:
        return cls(*counted(frame.distinct()))

    def hint(self) -> DataFrame:
        """The key rows, broadcast to joins when there are at most ``BROADCAST_ROWS``."""
        return hinted(self.frame, self.size)

    def union(self, other: Keys) -> Keys:
        return Keys.of(self.frame.unionByName(other.frame))

    def plus(self, other: Keys) -> Keys:
        """The union with a disjoint key set (nothing to deduplicate or count)."""
        frame = materialize(self.frame.unionByName(other.frame))
        return Keys(frame, self.size + other.size)


def hinted(frame: DataFrame, size: int, limit: int = BROADCAST_ROWS) -> DataFrame:
    """``frame`` broadcast-hinted when ``size`` (its rows, or a bound) is at most ``limit``."""
    return F.broadcast(frame) if size <= limit else frame
