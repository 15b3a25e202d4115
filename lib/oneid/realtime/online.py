"""Realtime tags into the data service's online store, where profiles answer them.

The stream's tag snapshots (``kind = 'tags'`` rows: per key at most one every
``realtime.tags_every_seconds`` after its tags changed, so the store sees that cadence, not one
write per event) of keys resolved to a OneID are upserted per OneID with
:meth:`oneid.serve.store.ProfileStore.put_realtime_tags_many`, outside the store's batch
versions: a batch load or a version swap keeps them. ``updated_at`` is the time of the latest
event counted (the windows end there), so a replayed micro-batch writes the same values.
Provisional keys have no OneID: only ``realtime.tags`` holds theirs.

The store is a copy: one that cannot be reached does not stop the stream (triggers go on); the
failure is logged and the key's next snapshot writes again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.serve.settings import open_store
from oneid.serve.store import ProfileStore, RealtimeTag

logger = logging.getLogger(__name__)


def latest_tags(frame: DataFrame) -> Iterator[tuple[int, list[RealtimeTag]]]:
    """Per OneID of the micro-batch's output, its latest tag snapshot, streamed to the driver."""
    oneid = F.expr("try_cast(key AS BIGINT)")  # provisional and quarantine keys are no OneID
    latest = (
        frame.where(F.col("kind") == "tags")
        .withColumn("oneid", oneid)
        .where(F.col("oneid").isNotNull())
        .groupBy("oneid")
        .agg(F.max_by("body", "time_ms").alias("body"))
    )
    for row in latest.toLocalIterator():
        body = json.loads(row["body"])
        at = dt.datetime.fromtimestamp(body["as_of_ms"] / 1000, dt.timezone.utc)
        updated_at = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        yield row["oneid"], [RealtimeTag(k, v, updated_at) for k, v in body["tags"].items()]


class OnlineTags:
    """The ``foreachBatch`` sink's writer of realtime tags into the online store."""

    def __init__(self, cfg: OneIdConfig) -> None:
        self.cfg = cfg
        self.store: ProfileStore | None = None
        self.written = 0
        self.failures = 0

    def write(self, frame: DataFrame) -> int:
        """Upsert the OneIDs' latest tags of a micro-batch; how many OneIDs (0 on a failure)."""
        try:
            self.store = self.store or open_store(self.cfg)
            written = self.store.put_realtime_tags_many(latest_tags(frame))
        except Exception as error:  # the store is a copy: the stream and its triggers go on
            self.failures += 1
            logger.warning(
                "realtime tags not written to the %s store (%s: %s); the keys' next snapshots "
                "write them",
                self.cfg.env.serve.store,
                type(error).__name__,
                error,
            )
            self._reset()
            return 0
        self.written += written
        return written

    def _reset(self) -> None:
        """Reconnect on the next write (the store may be back)."""
        if self.store is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self.store.close()
            self.store = None
