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
from collections.abc import Iterable, Iterator, Mapping

from oneid.conf import OneIdConfig
from oneid.errors import OneIdError
from oneid.serve.settings import open_store
from oneid.serve.store import ProfileStore, RealtimeTag

logger = logging.getLogger(__name__)


def latest_tags(rows: Iterable[Mapping]) -> Iterator[tuple[int, list[RealtimeTag]]]:
    """Per OneID among a micro-batch's output rows (``kind``, ``key``, ``time_ms``, ``body``),
    its latest tag snapshot."""
    latest: dict[int, tuple[int, str]] = {}
    for row in rows:
        oneid = _oneid(row["key"]) if row["kind"] == "tags" else None
        if oneid is None:
            continue  # provisional and quarantine keys are no OneID
        if oneid not in latest or row["time_ms"] >= latest[oneid][0]:
            latest[oneid] = (row["time_ms"], row["body"])
    for oneid, (_, text) in latest.items():
        body = json.loads(text)
        at = dt.datetime.fromtimestamp(body["as_of_ms"] / 1000, dt.timezone.utc)
        updated_at = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        yield oneid, [RealtimeTag(k, v, updated_at) for k, v in body["tags"].items()]


def _oneid(key: str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


class OnlineTags:
    """The ``foreachBatch`` sink's writer of realtime tags into the online store."""

    def __init__(self, cfg: OneIdConfig) -> None:
        """Opens the store now: a conf or secret error stops the stream's start (not a warning
        per micro-batch for ever); an unreachable store is retried on each write."""
        self.cfg = cfg
        self.store: ProfileStore | None = None
        self.written = 0
        self.failures = 0
        try:
            self.store = open_store(cfg)
        except OneIdError:
            raise
        except Exception as error:  # the store may come back: each write tries again
            logger.warning("the %s store is not reachable yet (%s)", cfg.env.serve.store, error)

    def write(self, rows: Iterable[Mapping]) -> int:
        """Upsert the OneIDs' latest tags among a micro-batch's output rows; how many OneIDs
        (0 on a failure)."""
        try:
            self.store = self.store or open_store(self.cfg)
            written = self.store.put_realtime_tags_many(latest_tags(rows))
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
