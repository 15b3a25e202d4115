"""The stateful step of ``oneid realtime``: realtime tags and triggers, many people per state key.

``transformWithStateInPandas`` on Spark 4.1.1 serves every state call through a socket round
trip and builds a pandas frame per grouping key, which cost ~6 ms per key and micro-batch when
each person was a key. So the operator is keyed by a *bucket*, ``pmod(xxhash64(key),
realtime.state_buckets)``, and each bucket holds its people in state:

- ``people``: a map state person key → :class:`KeyState` JSON, with Spark's per-entry TTL of
  ``state_ttl`` (an idle person expires without a timer of ours);
- ``due``: a list state of ``realtime.tags`` rows waiting for the bucket's next tags timer
  (appended in one call per batch; several rows of one person keep only the newest);
- one processing-time timer per bucket at the next multiple of ``tags_every_seconds``.

A bucket with ``n`` people in a micro-batch costs ``2n + 3`` state calls (a ``get`` and an
``update`` per person; the implicit key, the ``due`` append and the timer per bucket) and one
pandas frame; the ``get`` and ``update`` calls are pipelined, a few hundred per round trip
(:mod:`oneid.realtime.statecalls`). Quarantined events go to bucket -1 and touch no state.
Besides triggers, links, quarantine and tags rows the operator emits one ``count`` row per
bucket (events processed and late), not a row per event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from oneid.conf import OneIdConfig
from oneid.realtime import lookup
from oneid.realtime.rules import Fired, KeyState, StreamEvent, _iso, process_events, tag_values
from oneid.realtime.statecalls import PipelinedMapState

QUARANTINE_KEY = "!quarantine"
QUARANTINE_BUCKET = -1
OUTPUT = (
    "kind string, key string, oneid long, event_id string, time_ms long, status string, "
    "reason string, raw string, rule_id string, trigger_id string, body string, "
    "kafka_partition int, kafka_offset long, map_version long, n long"
)
COLUMNS = [f.split()[0] for f in OUTPUT.split(", ")]
PERSON = "key string"
STATE = "state string"
DUE = "key string, time_ms long, body string"


class RealtimeProcessor(StatefulProcessor):
    """Per bucket of people: realtime tags, trigger rules and caps (see the module doc)."""

    def __init__(self, cfg: OneIdConfig) -> None:
        conf = cfg.pipeline.realtime
        self.conf = conf
        self.facts = lookup.BatchFactsReader.for_conf(cfg)
        self.tags_every_ms = max(1, int(conf.tags_every_seconds * 1000))
        self.ttl_ms = conf_ttl_ms(cfg)
        self.masked_ids = conf.webhook.payload_identifiers == "masked"

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.people = handle.getMapState("people", PERSON, STATE, ttlDurationMs=self.ttl_ms)
        self.calls = PipelinedMapState(self.people)
        self.due = handle.getListState("due", DUE)

    def handleInputRows(self, key, rows, timerValues) -> Iterator[pd.DataFrame]:
        (bucket,) = key
        frame = pd.concat(list(rows), ignore_index=True)
        if bucket == QUARANTINE_BUCKET:
            yield _quarantine_rows(frame)
            return
        frame = frame.sort_values(["key", "time_ms", "kafka_partition", "kafka_offset"])
        out: list[dict] = []
        due: list[tuple] = []
        processed = late = 0
        version = int(frame["map_version"].max())
        people: dict[str, list] = {}
        for r in frame.itertuples(index=False):  # one pass: pandas per person costs more
            people.setdefault(r.key, []).append(r)
        keys = [(person,) for person in people]
        stored = self.calls.get_values(keys)
        updates = []
        for (person, group), value in zip(people.items(), stored, strict=True):
            held, fired, late_ids, oneid = self._person(person, group, value)
            updates.append(((person,), (held.dumps(),)))
            late += len(late_ids)
            processed += len(group) - len(late_ids)
            out.extend(self._event_rows(person, oneid, group, fired))
            if len(group) > len(late_ids):  # the tags changed: a realtime.tags row is due
                due.append((person, held.max_ms, _tags_body(self.conf, held)))
        self.calls.update_values(updates)
        links = sum(r["kind"] == "link" for r in out)
        counts = {"processed": processed, "late": late, "link": links}
        out.extend(_counts(str(bucket), counts, version))
        if due:
            self.due.appendList(due)
            now = timerValues.getCurrentProcessingTimeInMs()
            # one timer per bucket and period: registering the same time again is a no-op
            self.handle.registerTimer((now // self.tags_every_ms + 1) * self.tags_every_ms)
        yield pd.DataFrame(out, columns=COLUMNS)

    def _person(self, person: str, group: list, stored: tuple | None):
        """Count one person's events of the batch (rows in event-time order) into their state
        as read from the map (``stored``; the caller writes it back)."""
        held = KeyState.loads(stored[0] if stored else None)
        known = [r.oneid for r in group if not pd.isna(r.oneid)]
        oneid = int(known[-1]) if known else None
        events = [
            StreamEvent(r.event_id, int(r.time_ms), r.name, json.loads(r.props)) for r in group
        ]
        fired, late = process_events(
            self.conf, held, events, oneid, self.facts.get(oneid), key=person
        )
        return held, fired, {e.event_id for e in late}, oneid

    def _event_rows(self, person: str, oneid, group: list, fired: list[Fired]):
        """Link rows of the person's events and their trigger rows (with the webhook body)."""
        ids_by_event = {}
        for r in group:
            ids_by_event[r.event_id] = r.ids
            if isinstance(r.link, str):
                yield _row(
                    "link", person, oneid=oneid, event_id=r.event_id, time_ms=r.time_ms, body=r.link
                )
        for f in fired:
            ids = json.loads(ids_by_event[f.event.event_id]) if self.masked_ids else None
            body = _payload(f, person, oneid, self.conf.rules[f.rule_id].message, ids)
            yield _row(
                "trigger",
                person,
                oneid=oneid,
                event_id=f.event.event_id,
                time_ms=f.event.time_ms,
                status=f.status,
                rule_id=f.rule_id,
                trigger_id=f.trigger_id,
                body=body,
            )

    def handleExpiredTimer(self, key, timerValues, expiredTimerInfo) -> Iterator[pd.DataFrame]:
        """The bucket's due ``realtime.tags`` rows: the newest per person."""
        newest: dict[str, tuple] = {}
        for person, time_ms, body in self.due.get():
            newest[person] = (time_ms, body)  # appended in batch order: the last is the newest
        self.due.clear()
        if newest:
            rows = [_row("tags", p, time_ms=t, body=b) for p, (t, b) in newest.items()]
            rows.extend(_counts(str(key[0]), {"tags": len(rows)}, None))
            yield pd.DataFrame(rows, columns=COLUMNS)

    def close(self) -> None:
        pass


def conf_ttl_ms(cfg: OneIdConfig) -> int:
    from oneid.conf.realtime import duration_seconds

    return duration_seconds(cfg.pipeline.realtime.state_ttl) * 1000


def _counts(bucket: str, counts: dict[str, int], version: int | None) -> list[dict]:
    """``count`` rows (status: what, ``n``: how many) for the sink's bookkeeping."""
    return [_row("count", bucket, status=s, n=n, version=version) for s, n in counts.items() if n]


def _quarantine_rows(frame: pd.DataFrame) -> pd.DataFrame:
    out = [
        _row(
            "event",
            QUARANTINE_KEY,
            status="quarantine",
            reason=r.reason,
            raw=r.raw,
            partition=r.kafka_partition,
            offset=r.kafka_offset,
            version=r.map_version,
        )
        for r in frame.itertuples(index=False)
    ]
    version = int(frame["map_version"].max())
    out.extend(_counts(str(QUARANTINE_BUCKET), {"quarantine": len(out)}, version))
    return pd.DataFrame(out, columns=COLUMNS)


def _row(kind: str, key: str, **values) -> dict:
    return {
        "kind": kind,
        "key": key,
        "oneid": values.get("oneid"),
        "event_id": values.get("event_id"),
        "time_ms": values.get("time_ms"),
        "status": values.get("status"),
        "reason": values.get("reason"),
        "raw": values.get("raw"),
        "rule_id": values.get("rule_id"),
        "trigger_id": values.get("trigger_id"),
        "body": values.get("body"),
        "kafka_partition": values.get("partition"),
        "kafka_offset": values.get("offset"),
        "map_version": values.get("version"),
        "n": values.get("n"),
    }


def _tags_body(conf, held: KeyState) -> str:
    return json.dumps({"as_of_ms": held.max_ms, "tags": tag_values(conf, held)}, ensure_ascii=False)


def _payload(fired: Fired, key: str, oneid: int | None, message: str, ids: list | None) -> str:
    """The webhook body: OneID or provisional key, the event, the rule's realtime tags; masked
    identifiers only (or none). Built from event data only, so a resend is byte-identical."""
    body = {
        "trigger_id": fired.trigger_id,
        "rule": fired.rule_id,
        "message": message,
        "oneid": oneid,
        "key": key,
        "provisional": oneid is None,
        "event": {
            "event_id": fired.event.event_id,
            "name": fired.event.name,
            "time": _iso(fired.event.time_ms),
        },
        "realtime_tags": fired.tags,
    }
    if ids is not None:
        body["identifiers"] = [{"type": t, "masked": m} for t, m in ids]
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
