"""``oneid demo``'s realtime step: a slice of the demo app events through a local Kafka broker,
the stream and a webhook receiver on loopback, with the triggers fired and their latency.

The slice is the logged-in events of the first :data:`MEMBERS` members of the demo's
``app_events`` source, with their identifiers (member id, device, login phone), names and
properties. Replayed, each member's events are one session on the day after the demo data
ends, :data:`STEP_SECONDS` apart, the sessions starting from 09:00 to midnight Asia/Shanghai
(the late ones fall in the rules' quiet hours). The demo brand sells cosmetics while conf's
example rule is about double-eyelid pages: views of :data:`STAND_IN` (skincare) are replayed
as views of the first rule's category, so that the rule has something to match.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig
from oneid.control_files import local_path
from oneid.realtime.broker import LocalBroker
from oneid.realtime.delivery import load_secret
from oneid.realtime.events import SHANGHAI
from oneid.realtime.job import RealtimeRun, start_realtime
from oneid.realtime.receiver import Received, WebhookReceiver
from oneid.session import warehouse_root
from oneid.spark_settings import session_settings
from oneid.tables import table_path

logger = logging.getLogger(__name__)

MEMBERS = 24
STATE_BUCKETS = 4
STEP_SECONDS = 10
STAND_IN = "护肤"
FIRST_SESSION_HOUR = 9
LAST_SESSION_HOUR = 24
TIMEOUT_SECONDS = 180.0
"""For each of the two waves (the first micro-batch took 110 s at load 17 on 2 cores)."""
TOPIC = "events"
SESSION = {"spark.sql.shuffle.partitions": "2", "spark.sql.codegen.wholeStage": "false"}
"""Session settings while the demo's query starts: a few hundred events need neither 8 state
store partitions (each a RocksDB instance to open and commit per micro-batch) nor generated
code; the query keeps them for its life (a fresh checkpoint)."""


def local_stream_config(
    cfg: OneIdConfig,
    bootstrap_servers: str,
    webhook_url: str,
    checkpoint: str | Path,
    starting_offsets: str = "earliest",
    **settings: object,
) -> OneIdConfig:
    """``cfg`` with its stream pointed at a broker and a webhook receiver on loopback (the
    demo, the tests, the benchmark): a checkpoint of its own, 200 ms micro-batches unless the
    given further ``realtime`` settings say otherwise."""
    env = cfg.env.model_copy(
        update={"kafka": cfg.env.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})}
    )
    conf = cfg.pipeline.realtime
    realtime = conf.model_copy(
        update={
            "webhook": conf.webhook.model_copy(update={"url": webhook_url}),
            "checkpoint_dir": str(checkpoint),
            "starting_offsets": starting_offsets,
            "trigger_seconds": 0.2,
            **settings,
        }
    )
    pipeline = cfg.pipeline.model_copy(update={"realtime": realtime})
    return cfg.model_copy(update={"env": env, "pipeline": pipeline})


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank ``share`` percentile (NaN for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class Replayed:
    """What the demo replay showed: its summary notes, and the idempotency keys of the pushes
    the webhook receiver got (once each: repeats are counted in the notes)."""

    notes: list[str]
    pushed: frozenset[str]


def demo_realtime(spark: SparkSession, cfg: OneIdConfig) -> Replayed:
    """Replay the slice through a fresh broker, receiver and checkpoint.

    The first member's events go first and warm the stream up (Python workers, lookups, state
    stores); the latency is that of the other members' events, sent once those are done."""
    warehouse = local_path(warehouse_root(cfg))
    assert warehouse is not None, "oneid demo runs on a local warehouse (claim_demo_warehouse)"
    folder = warehouse / "_realtime_demo" / uuid.uuid4().hex[:12]
    replay = replay_events(cfg, folder.name)
    first = sum(1 for key, _ in replay if key == replay[0][0])
    signed = _demo_config(cfg)
    try:
        with (
            session_settings(spark, SESSION),
            LocalBroker(cfg, folder / "broker") as broker,
            WebhookReceiver(load_secret(signed.pipeline.realtime.webhook)) as receiver,
        ):
            demo_cfg = local_stream_config(
                signed,
                broker.bootstrap_servers,
                receiver.url,
                folder / "checkpoint",
                # the configured interval: 200 ms batches fall behind on 2 busy cores
                trigger_seconds=signed.pipeline.realtime.trigger_seconds,
            )
            broker.create_topics(TOPIC)
            run = start_realtime(spark, demo_cfg)
            try:
                started = time.monotonic()
                _produce(broker.bootstrap_servers, replay[:first])
                _wait(run, first)
                logger.info("demo: warm-up wave processed in %.1f s", time.monotonic() - started)
                started = time.monotonic()
                produced = _produce(broker.bootstrap_servers, replay[first:])
                counts = _wait(run, len(replay))
                logger.info("demo: main wave processed in %.1f s", time.monotonic() - started)
            finally:
                run.stop()
            received = receiver.received
        statuses = _trigger_statuses(demo_cfg, folder.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent.is_dir() and not any(folder.parent.iterdir()):
            folder.parent.rmdir()
    latencies = [
        (arrived - produced[payload["event"]["event_id"]]) / 1000
        for payload, arrived in received.first.values()
        if payload["event"]["event_id"] in produced
    ]
    notes = _notes(cfg, replay, first, counts, statuses, received, latencies)
    return Replayed(notes, frozenset(received.first))


def _demo_config(cfg: OneIdConfig) -> OneIdConfig:
    """Topic ``events``; signed with the published demo secret unless the environment holds
    one (the receiver checks with the same)."""
    conf = cfg.pipeline.realtime
    webhook = conf.webhook.model_copy(update={"allow_demo_secret": True})
    realtime = conf.model_copy(
        update={"webhook": webhook, "events_topic": TOPIC, "state_buckets": STATE_BUCKETS}
    )
    return cfg.model_copy(
        update={"pipeline": cfg.pipeline.model_copy(update={"realtime": realtime})}
    )


def replay_events(cfg: OneIdConfig, run: str) -> list[tuple[str, str]]:
    """``(Kafka key, event JSON)`` of the slice, in each member's order; event ids get the
    suffix ``run`` (each replay's triggers are new ones)."""
    folder = Path(cfg.pipeline.demo.data_dir) / "sources" / "app_events"
    sessions: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                row = _row(line)
                member = row.get("user_id") if row else None
                if not member or (member not in sessions and len(sessions) >= MEMBERS):
                    continue
                sessions.setdefault(member, []).append(row)
    category = _rule_category(cfg)
    day = dt.datetime.combine(
        max(cfg.pipeline.demo.as_of) + dt.timedelta(days=1), dt.time(), tzinfo=SHANGHAI
    )
    span = (LAST_SESSION_HOUR - FIRST_SESSION_HOUR) * 3600
    replay = []
    for index, (member, rows) in enumerate(sessions.items()):
        start = day + dt.timedelta(
            seconds=FIRST_SESSION_HOUR * 3600 + index * span // max(len(sessions), 1)
        )
        rows.sort(key=lambda r: str(r.get("ts")))
        for step, row in enumerate(rows):
            at = start + dt.timedelta(seconds=step * STEP_SECONDS)
            replay.append((member, json.dumps(_event(row, at, run, category), ensure_ascii=False)))
    return replay


def _row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except ValueError:  # the demo data's malformed lines
        return None
    return row if isinstance(row, dict) else None


def _rule_category(cfg: OneIdConfig) -> str | None:
    """The ``category`` a rule's arriving event must have (the first rule that names one)."""
    for rule in cfg.pipeline.realtime.rules.values():
        wanted = (rule.on_event.where or {}).get("category")
        if wanted:
            return wanted if isinstance(wanted, str) else wanted[0]
    return None


def _event(row: dict, at: dt.datetime, run: str, category: str | None) -> dict:
    ids = {"member_id": row["user_id"]}
    if row.get("device_id") and row.get("device_type"):
        ids[f"device:{row['device_type']}"] = row["device_id"]
    if row.get("phone"):
        ids["phone"] = row["phone"]
    properties = {k: row[k] for k in ("page", "category") if row.get(k)}
    if category and properties.get("category") == STAND_IN:
        properties["category"] = category
    return {
        "event_id": f"{row['event_id']}-{run}",
        "time": at.isoformat(),
        "name": row.get("event"),
        "ids": ids,
        "properties": properties,
    }


def _produce(bootstrap_servers: str, replay: list[tuple[str, str]]) -> dict[str, int]:
    """Send the events keyed by member; each event id's produce time (epoch ms)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 5})
    produced = {}
    for key, value in replay:
        produced[json.loads(value)["event_id"]] = int(time.time() * 1000)
        producer.produce(TOPIC, value.encode("utf-8"), key=key.encode("utf-8"))
    if producer.flush(30):
        raise RuntimeError("the demo events did not all reach the local broker in 30 s")
    return produced


def _wait(run: RealtimeRun, events: int) -> Counter:
    """The sink's counts once it has read ``events`` events (or after the timeout)."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        counts: Counter = Counter()
        for report in list(run.sink.reports):
            counts.update(report.counts)
        read = sum(n for what, n in counts.items() if what.startswith("event:"))
        if read >= events or time.monotonic() > deadline:
            return counts
        if not run.query.isActive:
            raise RuntimeError(f"the realtime stream stopped: {run.query.exception()}")
        time.sleep(0.2)


def _trigger_statuses(cfg: OneIdConfig, run: str) -> Counter:
    """``realtime.triggers`` of this replay (event ids ending in ``-run``) by status, read
    with delta-rs (no Spark job)."""
    from deltalake import DeltaTable, QueryBuilder
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_path(cfg, "realtime.triggers"))
    except TableNotFoundError:  # no trigger yet in this warehouse
        return Counter()
    rows = (
        QueryBuilder()
        .register("t", table)
        .execute(f"SELECT status FROM t WHERE event_id LIKE '%-{run}'")
        .read_all()
    )
    return Counter(rows.column("status").to_pylist())


def _notes(
    cfg: OneIdConfig,
    replay: list[tuple[str, str]],
    first: int,
    counts: Counter,
    statuses: Counter,
    received: Received,
    latencies: list[float],
) -> list[str]:
    members = len({key for key, _ in replay})
    read = sum(n for what, n in counts.items() if what.startswith("event:"))
    processed, late = counts["event:processed"] + counts["event:late"], counts["event:late"]
    triggers = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) or "none"
    day = max(cfg.pipeline.demo.as_of) + dt.timedelta(days=1)
    oneids = sum(1 for payload, _ in received.first.values() if payload.get("oneid") is not None)
    lines = [
        f"realtime: replayed {len(replay)} app events of {members} members into a local Kafka "
        f"broker, re-timed to sessions on {day} {FIRST_SESSION_HOUR:02d}:00-"
        f"{LAST_SESSION_HOUR:02d}:00 Asia/Shanghai",
        f"realtime: read {read} = processed {processed} (late {late}) + quarantined "
        f"{counts['event:quarantine']}; triggers: {triggers}",
        f"realtime: webhook receiver: {len(received.first)} pushes ({oneids} on OneIDs; "
        f"signatures checked, {received.bad_signatures} bad, {len(received.repeats)} repeats), "
        "event->push latency "
        f"p50 {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s "
        f"(produce -> arrival, {len(latencies)} pushes after the first member's {first} "
        "events warmed the stream up)",
    ]
    if read < len(replay):
        lines.append(f"realtime: stopped waiting after {TIMEOUT_SECONDS:.0f} s per wave")
    return lines
