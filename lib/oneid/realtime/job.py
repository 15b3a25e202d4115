"""``oneid realtime``: Kafka events → identity → realtime tags and triggers → webhook.

One Structured Streaming query (checkpoint ``realtime.checkpoint_dir``, RocksDB state store):

1. the Kafka source reads ``realtime.events_topic``;
2. a pandas UDF parses each event, normalises and keyed-hashes its identifiers with the
   standardize code (:func:`oneid.standardize.hashing.hash_identifier`) and resolves them
   through ``identity.oneid_map`` (:mod:`oneid.realtime.lookup`); bad events get a reason;
3. ``transformWithStateInPandas`` per key (OneID, provisional key, or the quarantine key) counts the
   events into the realtime tags and evaluates the trigger rules (:mod:`oneid.realtime.rules`);
4. ``foreachBatch`` delivers the batch's triggers (:mod:`oneid.realtime.delivery`), then
   records them and the rest in Delta with idempotent writes (``txnAppId`` / ``txnVersion``)
   and the OneIDs' realtime tags in the online store (:mod:`oneid.realtime.online`).

A replayed micro-batch (after a crash) decides the same triggers with the same ids; those the
table already records as delivered are not sent again, and the receiver deduplicates the rest
by their ``Idempotency-Key`` (docs/realtime.md, "Exactly once").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import pandas as pd
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.streaming import StreamingQuery

from oneid.conf import OneIdConfig
from oneid.conf.models import KafkaConf
from oneid.errors import ConfigError
from oneid.realtime import lookup
from oneid.realtime.delivery import Secret, deliver, load_secret
from oneid.realtime.events import Event, parse_event
from oneid.realtime.online import OnlineTags
from oneid.realtime.processor import (
    OUTPUT,
    QUARANTINE_BUCKET,
    QUARANTINE_KEY,
    RealtimeProcessor,
)
from oneid.session import warehouse_root
from oneid.standardize.hashing import load_key
from oneid.standardize.records import junk_values
from oneid.tables import table_exists, table_path

logger = logging.getLogger(__name__)

QUERY_NAME = "oneid_realtime"
ARROW = "spark.sql.execution.arrow.pyspark.enabled"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
RESOLVED = (
    "key string, oneid long, event_id string, time_ms long, name string, props string, "
    "ids string, link string, reason string, map_version long"
)
TABLES = {
    "realtime.triggers": (
        "trigger_id string, rule_id string, key string, oneid long, event_id string, "
        "event_time timestamp, status string, delivered boolean, attempts int, "
        "http_status int, error string, delivered_at timestamp, batch_id long"
    ),
    "realtime.dead_letters": (
        "trigger_id string, rule_id string, key string, payload string, error string, "
        "attempts int, failed_at timestamp, batch_id long"
    ),
    "realtime.tags": None,  # columns from the tag declarations (tags_schema)
    "realtime.links": (
        "event_id string, key string, oneid long, identifiers string, oneids string, "
        "event_time timestamp, batch_id long"
    ),
    "quarantine.realtime_events": (
        "raw string, reason string, kafka_partition int, kafka_offset long, batch_id long"
    ),
    "realtime.batches": (
        "batch_id long, read long, processed long, late long, quarantined long, "
        "triggers long, sent long, delivered long, dead_letters long, skipped_redelivery long, "
        "map_version long, finished_at timestamp, query_id string"
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


def resolve_udf(cfg: OneIdConfig):
    """The pandas UDF ``raw JSON → RESOLVED``. The HMAC key lives only in its closure."""
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
            link = json.dumps(
                [
                    [i.id_type, i.value_hash, o]
                    for i, o in zip(parsed.identifiers, found.known, strict=True)
                ]
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

    @pandas_udf(RESOLVED)
    def oneid_resolve_events(raws: pd.Series) -> pd.DataFrame:
        version, index = lookup.shared_cache(refresh).get(
            map_path, lookup.ONEID_MAP_SQL, lookup.oneid_map_index, {}
        )
        rows = [one(raw, version, index) for raw in raws]
        return pd.DataFrame(rows, columns=[f.split()[0] for f in RESOLVED.split(", ")])

    return oneid_resolve_events


def realtime_frame(spark: SparkSession, cfg: OneIdConfig) -> DataFrame:
    """The streaming frame of ``OUTPUT`` rows (before the sink)."""
    conf = cfg.pipeline.realtime
    spark.conf.set("spark.sql.streaming.stateStore.providerClass", ROCKSDB)
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
    resolved = source.select(
        F.col("value").cast("string").alias("raw"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    ).withColumn("r", resolve_udf(cfg)(F.col("raw")))
    flat = resolved.select("raw", "kafka_partition", "kafka_offset", "r.*")
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
    """The ``foreachBatch`` sink: deliver, then record (idempotently per batch id)."""

    def __init__(self, spark: SparkSession, cfg: OneIdConfig, secret: Secret) -> None:
        self.spark = spark
        self.cfg = cfg
        self.secret = secret
        self.query_id: str | None = None
        self.reports: list[BatchReport] = []
        self.last_batch = -1
        self.map_version = -1
        self.online = OnlineTags(cfg) if cfg.pipeline.realtime.store_tags else None
        self.first = True

    def _last_recorded_batch(self) -> int:
        """The last batch of this query (its id survives restarts from the checkpoint) that
        ``realtime.batches`` records as finished."""
        if not table_exists(self.spark, self.cfg, "realtime.batches"):
            return -1
        found = (
            self.spark.read.format("delta")
            .load(table_path(self.cfg, "realtime.batches"))
            .where(F.col("query_id") == self.query_id)
            .agg(F.max("batch_id"))
            .first()[0]
        )
        return -1 if found is None else int(found)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        if self.query_id is None:
            (query,) = [q for q in self.spark.streams.active if q.name == QUERY_NAME]
            self.query_id = str(query.id)
            self.last_batch = self._last_recorded_batch()
        frame = frame.persist()
        try:
            self._write(frame, batch_id)
        finally:
            frame.unpersist()

    def _write(self, frame: DataFrame, batch_id: int) -> None:
        """One Spark job brings the batch's ``count`` and ``trigger`` rows to the driver; the
        rest is written from the cached frame, one Delta commit per table that has rows."""
        started = time.monotonic()
        small = frame.where("kind IN ('count', 'trigger')").collect()
        collected = time.monotonic()
        triggers = [r for r in small if r["kind"] == "trigger"]
        kinds: dict[tuple[str, str | None], int] = {}
        for r in small:
            what = ("trigger", r["status"]) if r["kind"] == "trigger" else _counted(r["status"])
            kinds[what] = kinds.get(what, 0) + (1 if r["kind"] == "trigger" else r["n"])
        versions = [r["map_version"] for r in small if r["map_version"] is not None]
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
        outcomes = {
            o.trigger_id: o
            for o in deliver(self.cfg.pipeline.realtime.webhook, self.secret, to_send)
        }
        delivered = time.monotonic()
        if triggers:
            self._record_triggers(triggers, outcomes, already, batch_id)
        if kinds.get(("event", "quarantine")):
            quarantined = frame.where("kind = 'event' AND status = 'quarantine'")
            self._append(
                quarantined.select("raw", "reason", "kafka_partition", "kafka_offset"),
                "quarantine.realtime_events",
                batch_id,
            )
        if kinds.get(("link", None)):
            links = frame.where("kind = 'link'").select(
                "event_id",
                "key",
                "oneid",
                F.col("body").alias("identifiers"),
                F.lit(None).cast("string").alias("oneids"),
                F.timestamp_millis("time_ms").alias("event_time"),
            )
            self._append(links, "realtime.links", batch_id)
        if kinds.get(("tags", None)):
            self._append(
                tags_rows(frame.where("kind = 'tags'"), self.cfg), "realtime.tags", batch_id
            )
            if self.online is not None:  # after the triggers went out: never holds one up
                self.online.write(frame)
        self._record_batch(kinds, outcomes, len(already), batch_id)
        logger.info(
            "batch %d: %d triggers; compute %.2f s, deliver %.2f s, record %.2f s",
            batch_id,
            len(triggers),
            collected - started,
            delivered - collected,
            time.monotonic() - delivered,
        )

    def _delivered_before(self, batch_id: int) -> set[str]:
        """Trigger ids of this batch the table records as delivered (a replay after a crash
        between recording the triggers and finishing the batch)."""
        if not table_exists(self.spark, self.cfg, "realtime.triggers"):
            return set()
        rows = (
            self.spark.read.format("delta")
            .load(table_path(self.cfg, "realtime.triggers"))
            .where(F.col("batch_id") == batch_id)
            .where("delivered")
            .select("trigger_id")
            .collect()
        )
        return {r[0] for r in rows}

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
        schema = TABLES["realtime.triggers"]
        self._append(
            self._local_frame(rows, schema),
            "realtime.triggers",
            batch_id,
            with_batch=False,
        )
        if dead:
            self._append(
                self._local_frame(dead, TABLES["realtime.dead_letters"]),
                "realtime.dead_letters",
                batch_id,
                with_batch=False,
            )

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
        self._append(
            self._local_frame([row], TABLES["realtime.batches"]),
            "realtime.batches",
            batch_id,
            with_batch=False,
        )
        self.last_batch = batch_id
        self.reports.append(BatchReport(batch_id, {f"{k}:{s}": n for (k, s), n in kinds.items()}))

    def _local_frame(self, rows: list[tuple], schema: str) -> DataFrame:
        """Driver-side rows as a DataFrame through Arrow: the row-by-row conversion took
        seconds for a few thousand triggers on a loaded 2-core machine."""
        names = [f.split()[0] for f in schema.split(", ")]
        before = self.spark.conf.get(ARROW, "false")
        self.spark.conf.set(ARROW, "true")
        try:
            return self.spark.createDataFrame(pd.DataFrame(rows, columns=names), schema)
        finally:
            self.spark.conf.set(ARROW, before)

    def _append(self, frame: DataFrame, name: str, batch_id: int, with_batch: bool = True) -> None:
        t0 = time.monotonic()
        if with_batch:
            frame = frame.withColumn("batch_id", F.lit(batch_id).cast("long"))
        (
            frame.write.format("delta")
            .mode("append")
            .option("mergeSchema", "true")
            .option("txnAppId", f"oneid-realtime:{self.query_id}:{name}")
            .option("txnVersion", batch_id)
            .save(table_path(self.cfg, name))
        )
        logger.debug("%s: appended in %.2f s", name, time.monotonic() - t0)


def _counted(status: str) -> tuple[str, str | None]:
    """A ``count`` row's status as the (kind, status) the batch record counts."""
    return ("event", status) if status in ("processed", "late", "quarantine") else (status, None)


def tags_rows(frame: DataFrame, cfg: OneIdConfig) -> DataFrame:
    """``realtime.tags`` rows: key, provisional, oneid, one column per declared tag, as_of."""
    tags = cfg.pipeline.realtime.tags
    kinds = {"count": "bigint", "sum": "double", "last_time": "string", "last_value": "string"}
    body = F.from_json(
        "body",
        "as_of_ms bigint, tags struct<"
        + ", ".join(f"`{t.name}`: {kinds[t.kind]}" for t in tags)
        + ">",
    )
    columns = [
        (
            F.to_timestamp(F.col(f"b.tags.`{t.name}`"))
            if t.kind == "last_time"
            else F.col(f"b.tags.`{t.name}`")
        ).alias(t.name)
        for t in tags
    ]
    provisional = F.col("key").startswith(lookup.PROVISIONAL_PREFIX)
    return frame.withColumn("b", body).select(
        "key",
        provisional.alias("provisional"),
        F.when(~provisional, F.col("key").cast("long")).alias("oneid"),
        *columns,
        F.timestamp_millis("b.as_of_ms").alias("as_of"),
    )


def _ts(ms: int | None):
    import datetime as dt

    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


@dataclass
class RealtimeRun:
    query: StreamingQuery
    sink: Sink


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
            if run.query.isActive:
                run.query.stop()
        exc = run.query.exception()
        if exc is None:
            return run
        failures = failures + 1 if not run.sink.reports else 1
        if failures > cfg.pipeline.realtime.max_restarts:
            raise exc
        logger.warning("realtime query failed (%s); restarting from its checkpoint", exc)
        time.sleep(min(2.0 * failures, 10.0))
