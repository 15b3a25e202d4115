"""The realtime stage's pure parts: parsing and quarantine reasons, identity resolution with
provisional keys, windowed tags, trigger rules (caps, quiet hours, holdouts, batch facts),
the webhook's signature and retries, and the conf's checks."""

from __future__ import annotations

import json
import threading

import pytest

from oneid.conf.realtime import TAG_TABLE_COLUMNS, RealtimeConf, RealtimeTagConf
from oneid.errors import ConfigError
from oneid.realtime import lookup
from oneid.realtime.delivery import Secret, deliver
from oneid.realtime.events import Event, parse_event
from oneid.realtime.receiver import WebhookReceiver
from oneid.realtime.rules import (
    CAPPED,
    HOLDOUT,
    QUIET,
    SENT,
    BatchFacts,
    KeyState,
    StreamEvent,
    process_events,
    tag_values,
    trigger_id,
)
from oneid.standardize.hashing import HashKey, keyed_hash
from oneid.standardize.normalize import normalize
from tests.realtime_support import event, shanghai_ms
from tests.support import small_config

KEY = HashKey(b"unit-test-key-0123456789abcdef", 1)
RULES = {
    "tags": [
        {
            "name": "eyelid_10m",
            "kind": "count",
            "event": "view_item",
            "where": {"category": "双眼皮"},
            "window": "10m",
        },
        {"name": "cart_24h", "kind": "sum", "event": "add_cart", "sum": "amount", "window": "24h"},
        {
            "name": "last_category",
            "kind": "last_value",
            "event": "view_item",
            "property": "category",
        },
    ],
    "rules": {
        "consult": {
            "on_event": {"event": "view_item", "where": {"category": "双眼皮"}},
            "when": {
                "and": [
                    {"realtime_tag": "eyelid_10m", "op": "gte", "value": 2},
                    {"not": {"tag": "orders_90d", "op": "gt", "value": 0}},
                ]
            },
            "message": "consult_offer",
            "cap": {"max": 1, "per": "day"},
            "quiet_hours": {"start": "22:00", "end": "08:00"},
        }
    },
}


def conf(**changes) -> RealtimeConf:
    return RealtimeConf.model_validate({**RULES, **changes})


def view(event_id: str, at: str, category: str = "双眼皮") -> StreamEvent:
    return StreamEvent(event_id, shanghai_ms(at), "view_item", {"category": category})


def test_parse_event_normalises_and_hashes_with_the_standardize_code():
    raw = event("e1", "2025-07-01 10:00", "view_item", {"phone": "+86 138-1234-5678"}, n=3)
    parsed = parse_event(raw, KEY, {})
    assert isinstance(parsed, Event)
    value = normalize("phone", "+86 138-1234-5678").value
    assert parsed.identifiers[0].value_hash == keyed_hash(KEY, value)
    assert parsed.identifiers[0].masked == "138****5678"
    assert parsed.time_ms == shanghai_ms("2025-07-01 10:00")
    assert parsed.properties == {"n": "3"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{", "unparseable"),
        ("42", "not_an_object"),
        ('{"time": 1, "name": "x", "ids": {"member_id": "M"}}', "missing_event_id"),
        ('{"event_id": "e", "name": "x", "ids": {"member_id": "M"}}', "missing_time"),
        (
            '{"event_id": "e", "time": "yesterday", "name": "x", "ids": {"member_id": "M"}}',
            "bad_time",
        ),
        ('{"event_id": "e", "time": 1, "ids": {"member_id": "M"}}', "missing_name"),
        ('{"event_id": "e", "time": 1, "name": "x", "ids": {}}', "no_identifier"),
        (
            '{"event_id": "e", "time": 1, "name": "x", "ids": {"qq": "1"}}',
            "unknown_identifier_type",
        ),
        (
            '{"event_id": "e", "time": 1, "name": "x", "ids": {"device:idfa": "0000"}}',
            "no_identifier:invalid_device",
        ),
    ],
)
def test_bad_events_get_a_reason(raw, reason):
    assert parse_event(raw, KEY, {}) == reason


def test_resolution_prefers_identity_priority_and_keys_the_unknown_provisionally():
    parsed = parse_event(
        event(
            "e",
            "2025-07-01 10:00",
            "v",
            {"member_id": "M1", "device:idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
        ),
        KEY,
        {},
    )
    member, device = sorted(parsed.identifiers, key=lambda i: i.id_type != "member_id")
    index = {(device.id_type, device.value_hash): 7, (member.id_type, member.value_hash): 9}
    priority = small_config("/tmp/unused").pipeline.identity.priority
    found = lookup.resolve(parsed.identifiers, index, priority)
    assert (found.key, found.oneid, found.oneids) == ("9", 9, (7, 9))  # a conflict, not merged
    unknown = lookup.resolve(parsed.identifiers, {}, priority)
    assert unknown.oneid is None and unknown.key.startswith(lookup.PROVISIONAL_PREFIX)
    assert unknown == lookup.resolve(parsed.identifiers, {}, priority)  # stable


def test_the_hand_case_fires_once_a_day_and_not_for_customers():
    c = conf()
    state = KeyState()
    fired, late = process_events(
        c,
        state,
        [
            view("v1", "2025-07-01 10:00"),
            view("v2", "2025-07-01 10:05"),
            view("v3", "2025-07-01 10:06"),
            view("v0", "2025-07-01 09:40"),
        ],
        oneid=5,
        batch=BatchFacts(),
    )
    assert [(f.event.event_id, f.status) for f in fired] == [("v2", SENT), ("v3", CAPPED)]
    assert fired[0].trigger_id == trigger_id("v2", "consult")
    assert [e.event_id for e in late] == ["v0"]
    # the next Shanghai day the cap is free again; 11 minutes apart is not "twice in 10 min"
    fired, _ = process_events(
        c, state, [view("w1", "2025-07-02 10:00"), view("w2", "2025-07-02 10:11")], 5, BatchFacts()
    )
    assert fired == []
    fired, _ = process_events(c, state, [view("w3", "2025-07-02 10:12")], 5, BatchFacts())
    assert [(f.event.event_id, f.status) for f in fired] == [("w3", SENT)]
    customer = BatchFacts(tags={"orders_90d": 2})
    fired, _ = process_events(
        c, KeyState(), [view("x1", "2025-07-01 10:00"), view("x2", "2025-07-01 10:01")], 6, customer
    )
    assert fired == []


def test_quiet_hours_and_holdouts_record_but_do_not_send():
    fired, _ = process_events(
        conf(),
        KeyState(),
        [view("q1", "2025-07-01 23:00"), view("q2", "2025-07-01 23:01")],
        1,
        BatchFacts(),
    )
    assert [f.status for f in fired] == [QUIET]
    everyone = conf(
        rules={"consult": {**RULES["rules"]["consult"], "holdout": 0.5, "quiet_hours": None}}
    )
    statuses = set()
    for oneid in range(40):
        fired, _ = process_events(
            everyone,
            KeyState(),
            [view("h1", "2025-07-01 10:00"), view("h2", "2025-07-01 10:01")],
            oneid,
            BatchFacts(),
        )
        statuses.add(fired[0].status)
    assert statuses == {SENT, HOLDOUT}


def test_tags_over_sliding_windows_and_state_round_trip():
    c = conf()
    state = KeyState()
    events = [
        view("a", "2025-07-01 10:00"),
        StreamEvent("b", shanghai_ms("2025-07-01 10:02"), "add_cart", {"amount": "10.5"}),
        view("c", "2025-07-01 10:11", "护肤"),
        StreamEvent("d", shanghai_ms("2025-07-02 09:00"), "add_cart", {"amount": "2"}),
    ]
    process_events(c, state, events, 1, BatchFacts())
    state = KeyState.loads(state.dumps())
    assert tag_values(c, state) == {"eyelid_10m": 0, "cart_24h": 12.5, "last_category": "护肤"}


def test_conf_rejects_unknown_realtime_tags_and_bad_windows():
    with pytest.raises(ValueError, match="unknown realtime_tag"):
        conf(
            rules={
                "r": {
                    "on_event": {"event": "x"},
                    "message": "m",
                    "when": {"realtime_tag": "nope", "op": "gt", "value": 1},
                }
            }
        )
    with pytest.raises(ValueError, match="duration"):
        conf(tags=[{"name": "t", "kind": "count", "window": "ten minutes"}])
    with pytest.raises(ValueError, match="'oneid' is a column of realtime\\.tags"):
        conf(tags=[{"name": "oneid", "kind": "count", "window": "1d"}])
    with pytest.raises(ValueError, match="at most 64 characters"):
        conf(tags=[{"name": "t" * 65, "kind": "count", "window": "1d"}])
    # the names the check refuses are those of the table's other columns
    from oneid.realtime.job import tags_schema

    declared = RealtimeTagConf(name="views_1d", kind="count", window="1d")
    assert [f.name for f in tags_schema([declared]).fields if f.name != "views_1d"] == list(
        TAG_TABLE_COLUMNS
    )
    with pytest.raises(ConfigError, match="on_event"):
        small_config("/tmp/unused", "realtime.rules.r.message=m")


def test_webhook_is_signed_and_retried_and_a_lost_cause_is_a_dead_letter():
    secret = Secret(b"s3cret-for-the-test")
    with WebhookReceiver(secret, fail_first=2) as receiver:
        webhook = conf().webhook.model_copy(update={"url": receiver.url, "backoff_seconds": 0.01})
        body = json.dumps({"trigger_id": "t1"}).encode()
        (outcome,) = deliver(webhook, secret, [("t1", body)])
        assert (outcome.delivered, outcome.attempts) == (True, 3)
        assert receiver.received.bodies == {"t1": body}
        wrong = deliver(webhook, Secret(b"not-the-secret"), [("t2", body)])
        assert (wrong[0].delivered, wrong[0].http_status, wrong[0].attempts) == (False, 401, 1)
    assert "s3cret" not in repr(secret)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_state_calls_fall_back_to_the_public_api_without_pyspark_internals():
    from oneid.realtime.statecalls import PipelinedMapState

    class Plain:  # a map state without the 4.1.1 client internals
        def __init__(self):
            self.values = {("a",): ("1",)}

        def getValue(self, key):
            return self.values.get(key)

        def updateValue(self, key, value):
            self.values[key] = value

    state = Plain()
    calls = PipelinedMapState(state, chunk=1)
    assert not calls.pipelined
    assert calls.get_values([("a",), ("b",)]) == [("1",), None]
    calls.update_values([(("b",), ("2",))])
    assert state.values == {("a",): ("1",), ("b",): ("2",)}


def test_records_are_appended_once_per_batch_and_read_back(tmp_path):
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    from oneid.realtime.job import TABLES
    from oneid.realtime.records import DeltaRecords, arrow_rows
    from tests.support import delta_records

    path = str(tmp_path / "batches")
    schema = to_arrow_schema(TABLES["realtime.batches"])
    assert (schema.field("read").type, schema.field("finished_at").type) == (
        pa.int64(),
        pa.timestamp("us", tz="UTC"),  # as Spark writes a timestamp
    )
    row = (3, 5, 4, 0, 1, 2, 2, 2, 0, 0, -1, None, "q1")
    records = DeltaRecords("oneid-realtime:q1")
    assert records.query(path, "SELECT count(*) AS n FROM t") == []  # no table yet
    assert records.append(path, "realtime.batches", arrow_rows([row], schema), 3)
    again = DeltaRecords("oneid-realtime:q1")  # a restarted stream replays batch 3
    assert not again.append(path, "realtime.batches", arrow_rows([row], schema), 3)
    assert again.append(path, "realtime.batches", arrow_rows([(4, *row[1:])], schema), 4)
    assert [r["batch_id"] for r in delta_records(path)] in ([3, 4], [4, 3])
    found = again.query(path, "SELECT max(batch_id) AS b FROM t WHERE query_id = 'q1'")
    assert found == [{"b": 4}]


def test_a_stream_whose_executors_do_not_see_the_map_stops():
    from oneid.errors import DataContractError
    from oneid.realtime.job import check_executors_see_the_map

    check_executors_see_the_map("/w/identity/oneid_map", -1, [-1, -1])  # no identity run yet
    check_executors_see_the_map("/w/identity/oneid_map", 3, [3, 4])
    check_executors_see_the_map("/w/identity/oneid_map", 3, [])  # nothing resolved
    with pytest.raises(DataContractError, match=r"the executors do not see identity\.oneid_map"):
        check_executors_see_the_map("/w/identity/oneid_map", 3, [-1, -1])


def test_the_sink_stops_at_a_batch_resolved_without_the_map_the_driver_saw(spark, tmp_path):
    """The check is wired: the driver saw identity.oneid_map at version 0 before the start,
    a micro-batch's rows say their executors resolved without it (map_version -1)."""
    from oneid.errors import DataContractError
    from oneid.realtime.demo import local_stream_config
    from oneid.realtime.job import Sink
    from oneid.tables import table_path

    cfg = small_config(tmp_path / "warehouse")
    cfg = local_stream_config(cfg, "127.0.0.1:9", "http://127.0.0.1:9/hook", tmp_path / "cp")
    spark.createDataFrame(
        [(1, "phone", "h1", 7)], "node_id long, id_type string, value_hash string, oneid long"
    ).write.format("delta").save(table_path(cfg, "identity.oneid_map"))
    sink = Sink(spark, cfg, Secret(b"s3cret-for-the-test"))
    try:
        assert sink.map_at_start == 0
        sink._write([{"kind": "resolved", "map_version": 0}], batch_id=0, compute=0.0)
        with pytest.raises(DataContractError, match=r"executors do not see identity\.oneid_map"):
            sink._write([{"kind": "resolved", "map_version": -1}], batch_id=1, compute=0.0)
    finally:
        sink.close()


class _ScriptedQuery:
    """Spark's ``StreamingQuery`` handle as ``RealtimeRun.stop`` sees it: a micro-batch runs for
    ``busy_polls`` status polls (``None``: for ever), then the trigger is idle."""

    def __init__(self, busy_polls: int | None) -> None:
        self.busy_polls, self.polls, self.isActive = busy_polls, 0, True
        self.stopped_at_poll: int | None = None

    @property
    def status(self) -> dict:
        self.polls += 1
        return {"isTriggerActive": self.busy_polls is None or self.polls <= self.busy_polls}

    def stop(self) -> None:
        self.stopped_at_poll, self.isActive = self.polls, False


class _Sink:
    def __init__(self) -> None:
        self.stopping, self.parked, self.closed = threading.Event(), threading.Event(), False

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("busy_polls", "stopped_at"), [(0, 1), (3, 4)])
def test_a_stop_waits_for_the_pause_between_micro_batches(busy_polls, stopped_at):
    from oneid.realtime.job import RealtimeRun

    query, sink = _ScriptedQuery(busy_polls), _Sink()
    RealtimeRun(query, sink).stop(wait_seconds=5.0)
    assert query.stopped_at_poll == stopped_at and sink.closed  # stopped at the first pause
    assert sink.stopping.is_set()


def test_a_stop_is_made_while_the_sink_holds_the_next_batch():
    from oneid.realtime.job import RealtimeRun

    query, sink = _ScriptedQuery(None), _Sink()
    sink.parked.set()  # the next batch waits in the sink before its jobs
    RealtimeRun(query, sink).stop(wait_seconds=5.0)
    assert sink.stopping.is_set() and sink.closed
    assert query.stopped_at_poll == 0  # at once: no wait for a pause that never comes


def test_a_stop_during_a_batch_that_never_ends_stops_after_the_wait():
    import time

    from oneid.realtime.job import RealtimeRun

    query, sink = _ScriptedQuery(None), _Sink()
    started = time.monotonic()
    RealtimeRun(query, sink).stop(wait_seconds=0.2)
    assert not query.isActive and sink.closed and query.polls > 1
    assert time.monotonic() - started < 2.0  # bounded by the 0.2 s asked, not the 5 s default
