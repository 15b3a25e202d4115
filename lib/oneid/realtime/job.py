"""``oneid realtime``: Kafka events → identity → realtime tags and triggers → webhook.

One Structured Streaming query (checkpoint ``realtime.checkpoint_dir``, RocksDB state store):

1. the Kafka source reads ``realtime.events_topic``;
2. a ``mapInArrow`` function parses each event, normalises and keyed-hashes its identifiers
   with the standardize code (:func:`oneid.standardize.hashing.hash_identifier`) and resolves
   them through ``identity.oneid_map`` (:mod:`oneid.realtime.lookup`); bad events get a reason;
3. ``transformWithStateInPandas`` per bucket of keys (OneIDs, provisional keys; the quarantine
   key apart) counts the events into the realtime tags and evaluates the trigger rules
   (:mod:`oneid.realtime.rules`);
4. ``foreachBatch`` delivers the batch's triggers (:mod:`oneid.realtime.delivery`), then
   records them and the rest in Delta from the driver with idempotent appends, a transaction
   ``(app id, batch id)`` each (:mod:`oneid.realtime.records`), and the OneIDs' realtime tags
   in the online store (:mod:`oneid.realtime.online`).

A replayed micro-batch (after a crash) decides the same triggers with the same ids; those the
table already records as delivered are not sent again, and the receiver deduplicates the rest
by their ``Idempotency-Key`` (docs/realtime.md, "Exactly once").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructType,
    TimestampType,
)

from oneid.conf import OneIdConfig
from oneid.conf.models import KafkaConf
from oneid.conf.realtime import RealtimeTagConf
from oneid.delta_log import latest_version
from oneid.errors import ConfigError, DataContractError
from oneid.realtime import lookup
from oneid.realtime.delivery import Secret, WebhookClient, load_secret
from oneid.realtime.events import Event, parse_event
from oneid.realtime.online import OnlineTags
from oneid.realtime.processor import (
    OUTPUT,
    QUARANTINE_BUCKET,
    QUARANTINE_KEY,
    RealtimeProcessor,
)
from oneid.realtime.records import DeltaRecords, arrow_rows, columns
from oneid.realtime.stopping import (
    NOT_STARTED,
    STOPPED_OUTRIGHT,
    BatchStopped,
    quiet_stopped_batches,
    stopped_batch,
)
from oneid.session import warehouse_root
from oneid.standardize.hashing import load_key
from oneid.standardize.records import junk_values
from oneid.tables import table_path

logger = logging.getLogger(__name__)

QUERY_NAME = "oneid_realtime"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
STREAM_CONF = {
    "spark.sql.streaming.stateStore.providerClass": ROCKSDB,
    # a micro-batch commits a changelog of its state changes, not a RocksDB snapshot of every
    # partition (snapshots are taken in the background every few batches)
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
}
"""SQL settings of the realtime query (set on the session before it starts)."""
STRING, LONG, INT = StringType(), LongType(), IntegerType()
BOOL, DOUBLE, TIME = BooleanType(), DoubleType(), TimestampType()
SOURCE = columns(raw=STRING, kafka_partition=INT, kafka_offset=LONG)
RESOLVED = columns(
    key=STRING,
    oneid=LONG,
    event_id=STRING,
    time_ms=LONG,
    name=STRING,
    props=STRING,
    ids=STRING,
    link=STRING,
    reason=STRING,
    map_version=LONG,
)
RESOLVED_EVENTS = StructType([*SOURCE.fields, *RESOLVED.fields])
"""The ``mapInArrow`` output: ``SOURCE`` then ``RESOLVED``."""
TABLES = {
    "realtime.triggers": columns(
        trigger_id=STRING,
        rule_id=STRING,
        key=STRING,
        oneid=LONG,
        event_id=STRING,
        event_time=TIME,
        status=STRING,
        delivered=BOOL,
        attempts=INT,
        http_status=INT,
        error=STRING,
        delivered_at=TIME,
        batch_id=LONG,
    ),
    "realtime.dead_letters": columns(
        trigger_id=STRING,
        rule_id=STRING,
        key=STRING,
        payload=STRING,
        error=STRING,
        attempts=INT,
        failed_at=TIME,
        batch_id=LONG,
    ),
    "realtime.tags": None,  # columns from the tag declarations (tags_schema)
    "realtime.links": columns(
        event_id=STRING,
        key=STRING,
        oneid=LONG,
        identifiers=STRING,
        oneids=STRING,
        event_time=TIME,
        batch_id=LONG,
    ),
    "quarantine.realtime_events": columns(
        raw=STRING, reason=STRING, kafka_partition=INT, kafka_offset=LONG, batch_id=LONG
    ),
    "realtime.batches": columns(
        batch_id=LONG,
        read=LONG,
        processed=LONG,
        late=LONG,
        quarantined=LONG,
        triggers=LONG,
        sent=LONG,
        delivered=LONG,
        dead_letters=LONG,
        skipped_redelivery=LONG,
        map_version=LONG,
        finished_at=TIME,
        query_id=STRING,
    ),
}


def kafka_options(kafka: KafkaConf) -> dict[str, str]:
    """Spark Kafka source options; SASL credentials read from the environment here."""
    import os

    options = {"kafka.bootstrap.servers": kafka.bootstrap_servers}
    options["kafka.security.protocol"] = kafka.security_protocol
    if kafka.sasl_mechanism:
        user = os.environ.get(kafka.sasl_username_env or "", "")
        password = os.environ.get(kafka.sasl_password_env or "", "")
        if not user or not password:
            raise ConfigError(
                "kafka.sasl_mechanism is set: the environment variables named by "
                "kafka.sasl_username_env and kafka.sasl_password_env must hold the credentials"
            )
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if kafka.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        options["kafka.sasl.mechanism"] = kafka.sasl_mechanism
        options["kafka.sasl.jaas.config"] = (
            f'{module} required username="{user}" password="{password}";'
        )
    options.update({f"kafka.{k}": v for k, v in kafka.options.items()})
    return options


def checkpoint_dir(cfg: OneIdConfig) -> str:
    return cfg.pipeline.realtime.checkpoint_dir or f"{warehouse_root(cfg)}/_streaming/realtime"


def resolve_batches(cfg: OneIdConfig):
    """The ``mapInArrow`` function ``SOURCE → SOURCE + RESOLVED`` (Arrow in, Arrow out: no
    pandas frames to build and convert). The raw message stays only on a quarantined event.
    The HMAC key lives only in its closure."""
    key = load_key(cfg.env.secrets)
    junk = junk_values(cfg)
    map_path = table_path(cfg, "identity.oneid_map")
    priority = cfg.pipeline.identity.priority
    refresh = cfg.pipeline.realtime.identity_refresh_seconds

    def one(raw: str | None, version: int, index: dict) -> tuple:
        parsed = parse_event(raw, key, junk)
        if not isinstance(parsed, Event):
            return (QUARANTINE_KEY, None, None, None, None, None, None, None, parsed, version)
        found = lookup.resolve(parsed.identifiers, index, priority)
        ids = [[i.id_type, i.masked] for i in parsed.identifiers]
        link = None
        if len(parsed.identifiers) > 1 and (len(found.oneids) > 1 or not all(found.known)):
            pairs = zip(parsed.identifiers, found.known, strict=True)
            link = json.dumps(
                {
                    "identifiers": [[i.id_type, i.value_hash, known] for i, known in pairs],
                    "oneids": list(found.oneids),
                }
            )
        props = json.dumps(parsed.properties, ensure_ascii=False, sort_keys=True)
        return (
            found.key,
            found.oneid,
            parsed.event_id,
            parsed.time_ms,
            parsed.name,
            props,
            json.dumps(ids, ensure_ascii=False),
            link,
            None,
            version,
        )

    schema = to_arrow_schema(RESOLVED_EVENTS)
    resolved_fields = list(schema)[3:]
    reason = [f.name for f in resolved_fields].index("reason")

    def oneid_resolve_events(batches: Iterator) -> Iterator:
        import pyarrow as pa

        for batch in batches:
            version, index = lookup.shared_cache(refresh).get(
                map_path, lookup.ONEID_MAP_SQL, lookup.oneid_map_index, {}
            )
            raws = batch.column(0).to_pylist()
            rows = [one(raw, version, index) for raw in raws]
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(resolved_fields)
            kept = [
                r if why is not None else None for r, why in zip(raws, columns[reason], strict=True)
            ]
            arrays = [pa.array(kept, pa.string()), batch.column(1), batch.column(2)]
            arrays += [pa.array(c, f.type) for c, f in zip(columns, resolved_fields, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return oneid_resolve_events


def realtime_frame(spark: SparkSession, cfg: OneIdConfig) -> DataFrame:
    """The streaming frame of ``OUTPUT`` rows (before the sink)."""
    conf = cfg.pipeline.realtime
    for key, value in STREAM_CONF.items():
        spark.conf.set(key, value)
    reader = spark.readStream.format("kafka")
    for option, value in kafka_options(cfg.env.kafka).items():
        reader = reader.option(option, value)
    source = (
        reader.option("subscribe", conf.events_topic)
        .option("startingOffsets", conf.starting_offsets)
        .option("maxOffsetsPerTrigger", str(conf.max_offsets_per_trigger))
        .option("failOnDataLoss", "false")
        .load()
    )
    flat = source.select(
        F.col("value").cast("string").alias("raw"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").cast("long").alias("kafka_offset"),
    ).mapInArrow(resolve_batches(cfg), RESOLVED_EVENTS)
    return (
        flat.withColumn("bucket", state_bucket(F.col("key"), conf.state_buckets))
        .groupBy("bucket")
        .transformWithStateInPandas(
            statefulProcessor=RealtimeProcessor(cfg),
            outputStructType=OUTPUT,
            outputMode="Append",
            timeMode="ProcessingTime",
        )
    )


def state_bucket(key, buckets: int):
    """The state key of a person key: ``pmod(xxhash64(key), buckets)``; -1 for quarantine."""
    return F.when(key == QUARANTINE_KEY, F.lit(QUARANTINE_BUCKET)).otherwise(
        F.pmod(F.xxhash64(key), F.lit(buckets)).cast("int")
    )


@dataclass
class BatchReport:
    batch_id: int
    counts: dict[str, int] = field(default_factory=dict)


class Sink:
    """The ``foreachBatch`` sink: deliver, then record (idempotently per batch id).

    One Spark job per micro-batch brings the operator's output to the driver as Arrow (no
    per-event rows: counts per bucket, triggers, links, quarantined events, due tags); the
    triggers go out through one :class:`WebhookClient` kept for the query's life, and every
    table is appended from the driver with delta-rs (:mod:`oneid.realtime.records`)."""

    def __init__(self, spark: SparkSession, cfg: OneIdConfig, secret: Secret) -> None:
        self.spark = spark
        self.cfg = cfg
        self.secret = secret
        self.query_id: str | None = None
        self.query: StreamingQuery | None = None
        self.stopping = threading.Event()
        """Set by :meth:`RealtimeRun.stop`: the next batch waits, before its jobs, for the
        query's stop and then ends as stopped."""
        self.parked = threading.Event()
        """Set when a batch waits so: the query can be stopped without cancelling a job."""
        self.reports: list[BatchReport] = []
        self.last_batch = -1
        self.map_version = -1
        self.map_path = table_path(cfg, "identity.oneid_map")
        self.map_at_start = latest_version(spark, self.map_path)
        """The version of ``identity.oneid_map`` the driver saw before the query started."""
        self.online = OnlineTags(cfg) if cfg.pipeline.realtime.store_tags else None
        self.client = WebhookClient(cfg.pipeline.realtime.webhook, secret)
        self.records: DeltaRecords | None = None
        self.first = True
        quiet_stopped_batches()

    def close(self) -> None:
        self.client.close()

    def _last_recorded_batch(self) -> int:
        """The last batch of this query (its id survives restarts from the checkpoint) that
        ``realtime.batches`` records as finished."""
        rows = self.records.query(
            table_path(self.cfg, "realtime.batches"),
            f"SELECT max(batch_id) AS b FROM t WHERE query_id = '{self.query_id}'",
        )
        found = rows[0]["b"] if rows else None
        return -1 if found is None else int(found)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        if self.query_id is None:
            (query,) = [q for q in self.spark.streams.active if q.name == QUERY_NAME]
            self.query, self.query_id = query, str(query.id)
            self.records = DeltaRecords(f"oneid-realtime:{self.query_id}")
            self.last_batch = self._last_recorded_batch()
        if self.stopping.is_set():
            self._park()
            raise self._stopped(batch_id, NOT_STARTED)
        started = time.monotonic()
        rows = self._collect(frame, batch_id)
        self._write(rows, batch_id, time.monotonic() - started)

    def _collect(self, frame: DataFrame, batch_id: int) -> list[dict]:
        """The batch's rows. A collect that fails once the query is stopped ends the batch as
        stopped: the stop cancelled its job, or interrupted the stream's thread waiting for
        it (py4j runs this callback's JVM calls on that thread)."""
        try:
            return frame.toArrow().to_pylist()
        except Exception:
            if self.query.isActive:
                raise
        raise self._stopped(batch_id, STOPPED_OUTRIGHT)

    def _park(self, timeout: float = 120.0) -> None:
        """Wait, before any job of the batch, until :meth:`RealtimeRun.stop` has stopped the
        query: Spark takes an error for a stop only once the query is marked stopped."""
        self.parked.set()
        deadline = time.monotonic() + timeout
        while self.query.isActive and time.monotonic() < deadline:
            time.sleep(0.02)

    def _stopped(self, batch_id: int, how: str) -> BatchStopped:
        """:mod:`oneid.realtime.stopping`: the error that ends the query as stopped."""
        logger.info("batch %d %s; the next start runs it again", batch_id, how)
        return stopped_batch(batch_id, str(self.query.runId), how)

    def _write(self, rows: list[dict], batch_id: int, compute: float) -> None:
        """Deliver the batch's triggers, then append its rows: triggers (and dead letters),
        quarantined events, links, tags, and last the batch's own row."""
        collected = time.monotonic()
        by_kind: dict[str, list[dict]] = {}
        for r in rows:
            by_kind.setdefault(r["kind"], []).append(r)
        triggers = by_kind.get("trigger", [])
        kinds: dict[tuple[str, str | None], int] = {}
        for r in by_kind.get("count", []):
            what = _counted(r["status"])
            kinds[what] = kinds.get(what, 0) + r["n"]
        for t in triggers:
            kinds[("trigger", t["status"])] = kinds.get(("trigger", t["status"]), 0) + 1
        versions = [r["map_version"] for r in rows if r["map_version"] is not None]
        check_executors_see_the_map(self.map_path, self.map_at_start, versions)
        self.map_version = max(versions, default=-1)
        if not kinds:
            return
        if batch_id <= self.last_batch:
            logger.info("batch %d is already recorded (a replay): nothing to do", batch_id)
            return
        # only the first batch after a (re)start can be a replay of a half-recorded one
        already = self._delivered_before(batch_id) if triggers and self.first else set()
        self.first = False
        to_send = [
            (t["trigger_id"], t["body"].encode("utf-8"))
            for t in triggers
            if t["status"] == "send" and t["trigger_id"] not in already
        ]
        outcomes = {o.trigger_id: o for o in self.client.deliver(to_send)}
        delivered = time.monotonic()
        if triggers:
            self._record_triggers(triggers, outcomes, already, batch_id)
        if quarantined := by_kind.get("event"):
            self._append(
                "quarantine.realtime_events",
                [
                    (q["raw"], q["reason"], q["kafka_partition"], q["kafka_offset"])
                    for q in quarantined
                ],
                batch_id,
                with_batch=True,
            )
        if links := by_kind.get("link"):
            self._append(
                "realtime.links",
                [
                    (
                        k["event_id"],
                        k["key"],
                        k["oneid"],
                        *_link_columns(k["body"]),
                        _ts(k["time_ms"]),
                    )
                    for k in links
                ],
                batch_id,
                with_batch=True,
            )
        if tags := by_kind.get("tags"):
            self._append_table("realtime.tags", tags_table(tags, self.cfg, batch_id), batch_id)
            if self.online is not None:  # after the triggers went out: never holds one up
                self.online.write(tags)
        self._record_batch(kinds, outcomes, len(already), batch_id)
        logger.info(
            "batch %d: %d triggers; compute %.2f s, deliver %.2f s, record %.2f s",
            batch_id,
            len(triggers),
            compute,
            delivered - collected,
            time.monotonic() - delivered,
        )

    def _delivered_before(self, batch_id: int) -> set[str]:
        """Trigger ids of this batch the table records as delivered (a replay after a crash
        between recording the triggers and finishing the batch)."""
        rows = self.records.query(
            table_path(self.cfg, "realtime.triggers"),
            f"SELECT trigger_id FROM t WHERE batch_id = {int(batch_id)} AND delivered",
        )
        return {r["trigger_id"] for r in rows}

    def _record_triggers(self, triggers, outcomes, already: set[str], batch_id: int) -> None:
        rows, dead = [], []
        for t in triggers:
            o = outcomes.get(t["trigger_id"])
            delivered = t["trigger_id"] in already or (o is not None and o.delivered)
            rows.append(
                (
                    t["trigger_id"],
                    t["rule_id"],
                    t["key"],
                    t["oneid"],
                    t["event_id"],
                    _ts(t["time_ms"]),
                    "sent" if delivered else ("dead_letter" if o is not None else t["status"]),
                    delivered,
                    o.attempts if o else 0,
                    o.http_status if o else None,
                    o.error if o else None,
                    _ts(o.delivered_at_ms) if o and o.delivered_at_ms else None,
                    batch_id,
                )
            )
            if o is not None and not o.delivered:
                dead.append(
                    (
                        t["trigger_id"],
                        t["rule_id"],
                        t["key"],
                        t["body"],
                        o.error,
                        o.attempts,
                        _ts(int(time.time() * 1000)),
                        batch_id,
                    )
                )
        self._append("realtime.triggers", rows, batch_id)
        if dead:
            self._append("realtime.dead_letters", dead, batch_id)

    def _record_batch(self, kinds, outcomes, skipped: int, batch_id: int) -> None:
        count = lambda kind, status=None: sum(  # noqa: E731
            n for (k, s), n in kinds.items() if k == kind and (status is None or s == status)
        )
        events = count("event")
        row = (
            batch_id,
            events,
            count("event", "processed") + count("event", "late"),
            count("event", "late"),
            count("event", "quarantine"),
            count("trigger"),
            count("trigger", "send"),
            sum(o.delivered for o in outcomes.values()),
            sum(not o.delivered for o in outcomes.values()),
            skipped,
            self.map_version,
            _ts(int(time.time() * 1000)),
            self.query_id,
        )
        self._append("realtime.batches", [row], batch_id)
        self.last_batch = batch_id
        self.reports.append(BatchReport(batch_id, {f"{k}:{s}": n for (k, s), n in kinds.items()}))

    def _append(
        self, name: str, rows: list[tuple], batch_id: int, with_batch: bool = False
    ) -> None:
        """Append row tuples in ``TABLES[name]``'s column order (``with_batch``: but the last,
        ``batch_id``)."""
        if with_batch:
            rows = [(*r, batch_id) for r in rows]
        self._append_table(name, arrow_rows(rows, to_arrow_schema(TABLES[name])), batch_id)

    def _append_table(self, name: str, rows, batch_id: int) -> None:
        self.records.append(table_path(self.cfg, name), name, rows, batch_id)


def _counted(status: str) -> tuple[str, str | None]:
    """A ``count`` row's status as the (kind, status) the batch record counts."""
    return ("event", status) if status in ("processed", "late", "quarantine") else (status, None)


TAG_TYPES = {"count": LONG, "sum": DOUBLE, "last_time": TIME, "last_value": STRING}


def tags_schema(tags: Sequence[RealtimeTagConf]) -> StructType:
    """``realtime.tags``' columns: key, provisional, oneid, one per declared tag, as_of, batch_id
    (the names besides the tags' are :data:`oneid.conf.realtime.TAG_TABLE_COLUMNS`)."""
    return columns(
        key=STRING,
        provisional=BOOL,
        oneid=LONG,
        **{t.name: TAG_TYPES[t.kind] for t in tags},
        as_of=TIME,
        batch_id=LONG,
    )


def tags_table(rows: list[dict], cfg: OneIdConfig, batch_id: int):
    """``realtime.tags`` rows (:func:`tags_schema`) of the operator's ``tags`` rows."""
    import datetime as dt

    tags = cfg.pipeline.realtime.tags
    schema = to_arrow_schema(tags_schema(tags))
    out = []
    for r in rows:
        body = json.loads(r["body"])
        values = body["tags"]
        provisional = r["key"].startswith(lookup.PROVISIONAL_PREFIX)
        tag_values = []
        for t in tags:
            value = values.get(t.name)
            if value is not None and t.kind == "last_time":
                value = dt.datetime.fromisoformat(value)
            elif value is not None and t.kind == "count":
                value = int(value)
            elif value is not None and t.kind == "sum":
                value = float(value)
            elif value is not None:
                value = str(value)
            tag_values.append(value)
        oneid = None if provisional else int(r["key"])
        out.append((r["key"], provisional, oneid, *tag_values, _ts(body["as_of_ms"]), batch_id))
    return arrow_rows(out, schema)


def _link_columns(body: str) -> tuple[str, str]:
    """``identifiers`` and ``oneids`` of a ``realtime.links`` row, as JSON, from the event's
    link (:func:`resolve_batches`)."""
    link = json.loads(body)
    return json.dumps(link["identifiers"]), json.dumps(link["oneids"])


def check_executors_see_the_map(path: str, driver_version: int, versions: list[int]) -> None:
    """Raise when a micro-batch was resolved without ``identity.oneid_map`` (version -1) although
    the driver saw it before the stream started: the executors do not reach the warehouse the
    driver does, and every event would get a provisional key (caps per identifier, rules that
    exclude customers firing for them) without another sign."""
    if versions and max(versions) < 0 <= driver_version:
        raise DataContractError(
            f"the executors do not see identity.oneid_map at {path}, which the driver sees "
            f"(version {driver_version}): the warehouse must be a location every node reaches "
            "(a URI, or file:/// on a mount every node shares)"
        )


def _ts(ms: int | None):
    import datetime as dt

    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


@dataclass
class RealtimeRun:
    query: StreamingQuery
    sink: Sink

    def stop(self, wait_seconds: float = 5.0) -> None:
        """Stop the query between two micro-batches (:mod:`oneid.realtime.stopping`): at once
        when no batch is running, else when the next batch waits for it in the sink before its
        jobs; after ``wait_seconds`` without either, outright (cancelling the batch's job).
        Then the webhook client."""
        self.sink.stopping.set()
        started = time.monotonic()
        while self.query.isActive and time.monotonic() < started + wait_seconds:
            if self.sink.parked.is_set() or not self.query.status.get("isTriggerActive", False):
                break
            time.sleep(0.02)
        if self.query.isActive:
            waited = time.monotonic() - started
            logger.info("stopping the query (waited %.1f s for the current batch)", waited)
            self.query.stop()
        self.sink.close()


def start_realtime(spark: SparkSession, cfg: OneIdConfig) -> RealtimeRun:
    """Start the query (from its checkpoint when one exists); the caller waits or stops it."""
    conf = cfg.pipeline.realtime
    secret = load_secret(conf.webhook)
    sink = Sink(spark, cfg, secret)
    writer = (
        realtime_frame(spark, cfg)
        .writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", checkpoint_dir(cfg))
        .foreachBatch(sink)
        .trigger(processingTime=f"{int(conf.trigger_seconds * 1000)} milliseconds")
    )
    query = writer.start()
    logger.info("realtime query %s started (checkpoint %s)", query.id, checkpoint_dir(cfg))
    return RealtimeRun(query, sink)


def run_realtime(
    spark: SparkSession,
    cfg: OneIdConfig,
    seconds: float | None = None,
    stop: threading.Event | None = None,
) -> RealtimeRun:
    """Run until ``seconds`` pass or ``stop`` is set. A query that fails is restarted from its
    checkpoint up to ``realtime.max_restarts`` times in a row (Spark 4.1.1's Kafka source fails
    the first batch retried after a crash while reporting progress, SPARK-55271; the batch is
    committed by then, so the restart goes on from the next one); then the error is raised."""
    started = time.monotonic()
    failures = 0
    while True:
        run = start_realtime(spark, cfg)
        try:
            while run.query.isActive:
                if stop is not None and stop.is_set():
                    return run
                if seconds is not None and time.monotonic() - started >= seconds:
                    return run
                try:
                    run.query.awaitTermination(0.5)
                except StreamingQueryException:
                    break  # handled below, from query.exception()
        finally:
            run.stop()
        exc = run.query.exception()
        if exc is None:
            return run
        failures = failures + 1 if not run.sink.reports else 1
        if failures > cfg.pipeline.realtime.max_restarts:
            raise exc
        logger.warning("realtime query failed (%s); restarting from its checkpoint", exc)
        time.sleep(min(2.0 * failures, 10.0))
