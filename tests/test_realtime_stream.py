"""The realtime stage end to end on a real Kafka broker (started from its Maven Central jars)
and a real HTTP receiver on loopback: quarantine and reconciling counts, provisional keys,
realtime tags equal to a computation over the same events, the hand-made trigger case, and
the HMAC key absent from the query plan."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from oneid.realtime import broker as broker_module
from oneid.realtime.broker import LocalBroker
from oneid.realtime.delivery import Secret
from oneid.realtime.job import Sink, start_realtime
from oneid.realtime.receiver import WebhookReceiver
from oneid.realtime.rules import trigger_id
from oneid.realtime.stopping import NOT_STARTED, STOPPED_OUTRIGHT
from oneid.tables import table_path
from tests.realtime_support import (
    HMAC_KEY,
    WEBHOOK_SECRET,
    event,
    produce,
    shanghai_ms,
    stream_config,
    wait_for,
)
from tests.support import delta_records, small_config

pytestmark = pytest.mark.slow

DEVICE_A = {"device:idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}
MEMBER_B = {"member_id": "M-0002"}
PHONE_C = {"phone": "+86 138 1234 5678"}
GOOD = [
    event("a1", "2025-07-01 10:00", "view_item", DEVICE_A, category="双眼皮"),
    event("a2", "2025-07-01 10:05", "view_item", DEVICE_A, category="双眼皮"),  # fires
    event("a3", "2025-07-01 10:07", "view_item", DEVICE_A, category="双眼皮"),  # capped
    event("b1", "2025-07-01 10:01", "view_item", MEMBER_B, category="双眼皮"),  # once only
    event("b2", "2025-07-01 10:02", "add_cart", MEMBER_B, amount=99.5),
    event("b3", "2025-07-01 10:03", "add_cart", MEMBER_B, amount="20"),
    event("c1", "2025-07-01 23:00", "view_item", PHONE_C, category="双眼皮"),
    event("c2", "2025-07-01 23:04", "view_item", PHONE_C, category="双眼皮"),  # quiet hours
]
LATE = event("a4", "2025-07-01 09:40", "view_item", DEVICE_A, category="护肤")
"""Sent after the others were processed: 27 minutes behind its key's latest event."""
BAD = {
    "not json": "unparseable",
    '["a list"]': "not_an_object",
    event("x1", "2025-07-01 10:00", "view_item", {"qq": "12345"}): "unknown_identifier_type",
    event("x2", "2025-07-01 10:00", "view_item", {"phone": "12345"}): "no_identifier:invalid_phone",
    json.dumps({"event_id": "x3", "name": "view_item", "ids": MEMBER_B}): "missing_time",
    json.dumps({"time": "2025-07-01T10:00:00", "name": "v", "ids": MEMBER_B}): "missing_event_id",
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from tests.support import small_config

    folder = tmp_path_factory.mktemp("kafka")
    with LocalBroker(small_config(folder / "warehouse"), folder / "broker") as running:
        yield running


@pytest.fixture(scope="module")
def receiver():
    with WebhookReceiver(Secret(WEBHOOK_SECRET.encode())) as running:
        yield running


@pytest.fixture(scope="module")
def secrets():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONEID_WEBHOOK_SECRET", WEBHOOK_SECRET)
        patch.setenv("ONEID_HMAC_KEY", HMAC_KEY)
        yield


@pytest.fixture(scope="module")
def streamed(spark, broker, receiver, secrets, tmp_path_factory):
    """The hand-made events (and bad ones) through one run of the stream."""
    tmp = tmp_path_factory.mktemp("realtime")
    cfg = stream_config(tmp, broker.bootstrap_servers, receiver.url, "realtime.events_topic=ev1")
    broker.create_topics("ev1")
    produce(broker.bootstrap_servers, "ev1", [*GOOD, *BAD])
    run = start_realtime(spark, cfg)
    try:
        wait_for(lambda: read_so_far(cfg) == len(GOOD) + len(BAD), query=run.query)
        produce(broker.bootstrap_servers, "ev1", [LATE])
        wait_for(lambda: read_so_far(cfg) == len(GOOD) + len(BAD) + 1, query=run.query)
        wait_for(lambda: len(_rows(cfg, "realtime.tags")) >= 3, query=run.query)
    finally:
        run.stop()
    return cfg, run


def _rows(cfg, name: str) -> list[dict]:
    try:
        return delta_records(table_path(cfg, name))
    except Exception:  # not created yet
        return []


def read_so_far(cfg) -> int:
    """events the stream has read (realtime.batches)"""
    return sum(b["read"] for b in _rows(cfg, "realtime.batches"))


def test_counts_reconcile_and_bad_events_are_quarantined_with_reasons(streamed):
    cfg, _ = streamed
    batches = delta_records(table_path(cfg, "realtime.batches"))
    read = sum(b["read"] for b in batches)
    assert read == len(GOOD) + len(BAD) + 1
    assert read == sum(b["processed"] + b["quarantined"] for b in batches)
    assert sum(b["late"] for b in batches) == 1
    quarantined = delta_records(table_path(cfg, "quarantine.realtime_events"))
    assert sorted((q["raw"], q["reason"]) for q in quarantined) == sorted(BAD.items())


def test_the_hand_case_fires_once_and_quiet_hours_hold_it(streamed, receiver):
    cfg, _ = streamed
    fired = receiver.received.first
    assert set(fired) == {trigger_id("a2", "eyelid_consult")}
    payload, _ = fired[trigger_id("a2", "eyelid_consult")]
    assert payload["event"]["event_id"] == "a2"
    assert payload["provisional"] is True and payload["oneid"] is None
    assert payload["realtime_tags"]["eyelid_views_10m"] == 2
    assert payload["identifiers"] == [
        {"type": "device:idfa", "masked": payload["identifiers"][0]["masked"]}
    ]
    assert "6D92078A" not in json.dumps(payload)  # masked, never the raw device id
    assert receiver.received.bad_signatures == 0
    rows = delta_records(table_path(cfg, "realtime.triggers"))
    status = {r["event_id"]: r["status"] for r in rows}
    assert status == {"a2": "sent", "a3": "capped", "c2": "quiet"}


def test_realtime_tags_equal_a_computation_over_the_same_events(streamed):
    cfg, _ = streamed
    rows = delta_records(table_path(cfg, "realtime.tags"))
    latest = {}
    for row in sorted(rows, key=lambda r: r["as_of"]):
        latest[row["key"]] = row
    events = [json.loads(e) for e in GOOD]
    by_key: dict[str, list[dict]] = {}
    for e in events:
        by_key.setdefault(json.dumps(e["ids"]), []).append(e)
    assert len(latest) == 3
    for row in latest.values():
        mine = next(v for v in by_key.values() if _same_key(row, v, latest))
        end = max(shanghai_ms(e["time"][:16].replace("T", " ")) for e in mine)
        views = [e for e in mine if e["name"] == "view_item"]

        def within(es, minutes, end=end):
            return [e for e in es if shanghai_ms(e["time"][:16]) > end - minutes * 60_000]

        eyelid = [e for e in views if e["properties"].get("category") == "双眼皮"]
        carts = [e for e in mine if e["name"] == "add_cart"]
        assert row["views_10m"] == len(within(views, 10))
        assert row["views_1h"] == len(within(views, 60))
        assert row["eyelid_views_10m"] == len(within(eyelid, 10))
        assert row["add_cart_24h"] == len(within(carts, 1440))
        assert row["cart_amount_24h"] == sum(float(e["properties"]["amount"]) for e in carts)
        assert row["last_viewed_category"] == (
            views[-1]["properties"]["category"] if views else None
        )
        assert int(row["last_event_at"].timestamp() * 1000) == end


def _same_key(row, events, latest) -> bool:
    ids = events[0]["ids"]
    if "member_id" in ids:
        return row["add_cart_24h"] == 2
    if "phone" in ids:
        return row["add_cart_24h"] == 0 and row["views_10m"] == 2
    return row["views_10m"] == 3


def test_the_hmac_key_is_not_in_the_query_plan(streamed, spark):
    from oneid.realtime.job import realtime_frame

    cfg, _ = streamed
    frame = realtime_frame(spark, cfg)
    plan = frame._jdf.queryExecution().toString()
    assert "oneid_resolve_events" in plan
    assert HMAC_KEY not in plan and WEBHOOK_SECRET not in plan


DEVICE_D = "0F8A3C4E-1B2D-4E5F-8A9B-0C1D2E3F4A5B"


def test_a_new_identity_run_is_picked_up_mid_stream_and_batch_tags_gate_rules(
    spark, broker, secrets, tmp_path, hdfs_url
):
    """Device D is provisional until an identity run maps it to OneID 42; member M9 (OneID 77)
    bought in the last 90 days (gold.tags_value), so the consultation rule skips them. The
    warehouse and the checkpoint are on HDFS: the workers' lookups and the driver's records go
    through delta-rs's HDFS client, the batch tables and the checkpoint through Hadoop's."""
    from oneid.standardize.hashing import HashKey, keyed_hash
    from oneid.standardize.normalize import normalize

    key = HashKey(HMAC_KEY.encode(), 1)
    device_hash = keyed_hash(key, normalize("device:idfa", DEVICE_D).value)
    member_hash = keyed_hash(key, normalize("member_id", "M9").value)
    phone_hash = keyed_hash(key, normalize("phone", PHONE_C["phone"]).value)
    with WebhookReceiver(Secret(WEBHOOK_SECRET.encode())) as receiver:
        cfg = stream_config(
            tmp_path,
            broker.bootstrap_servers,
            receiver.url,
            "realtime.events_topic=ev2",
            storage=f"{hdfs_url}/realtime-{tmp_path.name}",
        )
        broker.create_topics("ev2")
        device = {"device:idfa": DEVICE_D}
        produce(
            broker.bootstrap_servers,
            "ev2",
            [
                event("d1", "2025-07-01 10:00", "view_item", device, category="双眼皮"),
            ],
        )
        run = start_realtime(spark, cfg)
        try:
            wait_for(lambda: read_so_far(cfg) == 1, query=run.query)
            spark.createDataFrame(
                [(1, "device:idfa", device_hash, 42), (2, "member_id", member_hash, 77)],
                "node_id long, id_type string, value_hash string, oneid long",
            ).write.format("delta").save(table_path(cfg, "identity.oneid_map"))
            spark.sql("SELECT 77L AS oneid, 3L AS orders_90d, DATE'2025-06-30' AS dt").write.format(
                "delta"
            ).save(table_path(cfg, "gold.tags_value"))
            produce(
                broker.bootstrap_servers,
                "ev2",
                [
                    event("d2", "2025-07-01 10:03", "view_item", device, category="双眼皮"),
                    event("d3", "2025-07-01 10:04", "view_item", device, category="双眼皮"),
                    event(
                        "m1",
                        "2025-07-01 10:03",
                        "view_item",
                        {"member_id": "M9"},
                        category="双眼皮",
                    ),
                    event(
                        "m2",
                        "2025-07-01 10:04",
                        "view_item",
                        {"member_id": "M9"},
                        category="双眼皮",
                    ),
                    # two people's OneIDs in one event, and a known with an unknown: links
                    event("l1", "2025-07-01 10:05", "app_open", {**device, "member_id": "M9"}),
                    event("l2", "2025-07-01 10:06", "app_open", {"member_id": "M9", **PHONE_C}),
                ],
            )
            wait_for(lambda: read_so_far(cfg) == 7, query=run.query)
        finally:
            run.stop()
        received = receiver.received.first
    # d1 stayed with the provisional key: the OneID's own count starts at d2 (never merged)
    assert set(received) == {trigger_id("d3", "eyelid_consult")}
    payload, _ = received[trigger_id("d3", "eyelid_consult")]
    assert (payload["oneid"], payload["provisional"], payload["key"]) == (42, False, "42")
    links = {row["event_id"]: row for row in _rows(cfg, "realtime.links")}
    assert sorted(links) == ["l1", "l2"]  # the stream records them and merges nobody
    assert json.loads(links["l1"]["oneids"]) == [42, 77]
    assert json.loads(links["l2"]["oneids"]) == [77]
    assert sorted(tuple(i) for i in json.loads(links["l2"]["identifiers"])) == sorted(
        [("member_id", member_hash, True), ("phone", phone_hash, False)]
    )
    batches = _rows(cfg, "realtime.batches")
    assert max(b["map_version"] for b in batches) == 0
    assert min(b["map_version"] for b in batches if b["read"]) == -1


def test_a_cluster_id_that_starts_with_a_dash_formats_the_broker(tmp_path, monkeypatch):
    """A random cluster id starts with "-" once in 64 starts (URL-safe base64)."""
    monkeypatch.setattr(broker_module, "_cluster_id", lambda: "-" + "A" * 21)
    with LocalBroker(small_config(tmp_path / "w"), tmp_path / "broker") as broker:
        broker.create_topics("dash")
    assert "cluster.id=-AAAA" in (tmp_path / "broker" / "data" / "meta.properties").read_text()


def _linger(batches):
    """A ``mapInPandas`` step that holds its task for a minute (the stop cancels it)."""
    for batch in batches:
        time.sleep(60)
        yield batch


class _WaitingInTheJvm:
    """A batch whose collect waits a minute in a JVM call: py4j runs the sink's JVM calls on
    the stream's thread, so the stop interrupts the wait (``InterruptedException``), as it
    does a collect that waits for its job."""

    def __init__(self, spark) -> None:
        self.jvm = spark.sparkContext._jvm
        self.interrupted = False

    def toArrow(self):
        try:
            self.jvm.java.lang.Thread.sleep(60_000)
        except Exception:
            self.interrupted = True
            raise


@pytest.mark.parametrize("how", ["next-batch", "cancelled-job", "interrupted-wait"])
def test_a_stop_ends_the_query_as_stopped_and_quietly(
    spark, broker, receiver, secrets, tmp_path, monkeypatch, caplog, how
):
    """A stop is made while the next batch waits in the sink before its jobs; a batch whose
    job is held running past the wait is cancelled; a batch that waits in the JVM past the wait
    is interrupted. Each way the query ends as stopped (Spark's check of the error recognises
    a stop: on py4j's whole traceback of a cancelled job or an interrupted call it died of a
    StackOverflowError, leaving its status as it was), py4j logs no traceback, and the sink
    logs one line."""
    topic = f"ev_stop_{how.replace('-', '_')}"
    cfg = stream_config(
        tmp_path, broker.bootstrap_servers, receiver.url, f"realtime.events_topic={topic}"
    )
    broker.create_topics(topic)
    produce(broker.bootstrap_servers, topic, GOOD[:1])
    entered = threading.Event()
    collect = Sink._collect
    outright = how != "next-batch"
    waits: list[_WaitingInTheJvm] = []

    def holding(sink, frame, batch_id):
        entered.set()
        if how == "cancelled-job":
            frame = frame.mapInPandas(_linger, frame.schema)
        elif how == "interrupted-wait":
            frame = _WaitingInTheJvm(spark)
            waits.append(frame)
        return collect(sink, frame, batch_id)

    monkeypatch.setattr(Sink, "_collect", holding)
    run = start_realtime(spark, cfg)
    try:
        assert entered.wait(120), "no batch reached the sink"
        if outright:
            time.sleep(1)  # the held job (or wait) is under way; no batch comes in the 1 s wait
        else:  # the next batch waits in the sink (an idle moment would stop it at once)
            run.sink.stopping.set()
            assert run.sink.parked.wait(120), "no batch waited in the sink"
    finally:
        with caplog.at_level(logging.INFO):
            run.stop(wait_seconds=1)
    assert not run.query.isActive
    assert run.query.exception() is None
    assert run.query.status["message"] == "Stopped"
    assert [w.interrupted for w in waits] == ([True] if how == "interrupted-wait" else [])
    py4j = [r for r in caplog.records if r.name == "py4j.clientserver"]
    assert [r.getMessage() for r in py4j if r.levelno >= logging.WARNING] == []
    told = STOPPED_OUTRIGHT if outright else NOT_STARTED
    assert any(told in r.getMessage() for r in caplog.records), caplog.text
    assert (STOPPED_OUTRIGHT in caplog.text) is outright  # a batch cut short or none
