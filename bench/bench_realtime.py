"""Realtime stage: event → push latency and throughput at fixed event rates.

A load generator produces ``view_item`` events to the local Kafka broker at a fixed rate, each
stamped with its send time as event time and a new member id, and a rule pushes every one of
them; the local webhook receiver records each push's arrival. Latency = arrival − send time
(producer, broker, micro-batch, identity lookup, state, webhook). ``python
bench/bench_realtime.py`` runs it alone; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness import Benchmark, Case

RATES = (200, 1000, 5000)
SECONDS = 20
DRAIN_SECONDS = 60
SECRET = "bench-webhook-secret-0123456789"


def _load(bootstrap: str, topic: str, rate: int, seconds: float, prefix: str) -> int:
    """Send ``rate`` events per second for ``seconds``, in 10 ms ticks; returns the count."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            member = f"{prefix}-{sent}"
            body = {
                "event_id": member,
                "time": int(time.time() * 1000),
                "name": "view_item",
                "ids": {"member_id": member},
                "properties": {"category": "双眼皮"},
            }
            producer.produce(topic, json.dumps(body).encode(), key=member)
            sent += 1
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(30)
    return sent


def _state_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "state").rglob("*") if p.is_file())


def _cases(work: Path) -> list[Case]:
    from oneid.conf import load_config
    from oneid.realtime.broker import LocalBroker
    from oneid.realtime.delivery import Secret
    from oneid.realtime.demo import local_stream_config, percentile
    from oneid.realtime.job import start_realtime
    from oneid.realtime.receiver import WebhookReceiver
    from oneid.session import build_session

    def small_config(warehouse: Path, *extra: str):
        return load_config(
            "local",
            Path(__file__).resolve().parents[1] / "conf",
            [
                f"warehouse={warehouse}",
                "spark.master=local[2]",
                "spark.shuffle_partitions=2",
                "spark.driver_memory=3g",
                *extra,
            ],
        )

    os.environ.setdefault("ONEID_WEBHOOK_SECRET", SECRET)
    cfg0 = small_config(work / "warehouse")
    spark = build_session(cfg0, app_name="oneid-bench-realtime")

    def case(rate: int) -> Case:
        def run() -> dict:
            folder = work / f"rate_{rate}"
            shutil.rmtree(folder, ignore_errors=True)  # an old checkpoint would replay old events
            with (
                LocalBroker(cfg0, folder / "broker") as broker,
                WebhookReceiver(Secret(os.environ["ONEID_WEBHOOK_SECRET"].encode())) as receiver,
            ):
                broker.create_topics("events")
                cfg = local_stream_config(
                    small_config(
                        folder / "warehouse",
                        "realtime.rules={push_every_view: {on_event: {event: view_item}, "
                        "message: bench, cap: {max: 1, per: day}}}",
                    ),
                    broker.bootstrap_servers,
                    receiver.url,
                    folder / "checkpoint",
                    starting_offsets="latest",
                )
                run = start_realtime(spark, cfg)
                try:
                    time.sleep(8)  # the query has its offsets; the warm-up events follow
                    _load(broker.bootstrap_servers, "events", 50, 2, f"warm{rate}")
                    deadline = time.monotonic() + 120
                    while len(receiver.received.first) < 100 and time.monotonic() < deadline:
                        time.sleep(0.5)
                    warm = set(receiver.received.first)
                    load_started = time.time()
                    load = os.getloadavg()[0]
                    sent = _load(broker.bootstrap_servers, "events", rate, SECONDS, f"r{rate}")
                    deadline = time.monotonic() + DRAIN_SECONDS
                    while (
                        len(receiver.received.first) - len(warm) < sent
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.5)
                    state = _state_bytes(folder / "checkpoint")
                finally:
                    run.query.stop()
                pushes = {k: v for k, v in receiver.received.first.items() if k not in warm}
            latencies, last = [], load_started
            for payload, arrived_ms in pushes.values():
                at = dt.datetime.fromisoformat(payload["event"]["time"]).timestamp()
                latencies.append(arrived_ms / 1000 - at)
                last = max(last, arrived_ms / 1000)
            return {
                "rate": rate,
                "sent": sent,
                "pushed": len(pushes),
                "p50_s": round(percentile(latencies, 0.50), 2),
                "p95_s": round(percentile(latencies, 0.95), 2),
                "p99_s": round(percentile(latencies, 0.99), 2),
                "pushes_per_s": round(len(pushes) / max(last - load_started, 1e-9)),
                "state_mb": round(state / 1e6, 1),
                "load_avg_1m": round(load, 1),
            }

        return Case(f"{rate} events/s for {SECONDS} s", run)

    return [case(rate) for rate in RATES]


BENCHMARK = Benchmark(
    name="realtime",
    title="Realtime: event → push latency at fixed rates",
    description=(
        "Kafka 4.1.1 broker on loopback, `oneid realtime` (`local[2]`, micro-batch trigger "
        "200 ms, RocksDB state, `transformWithStateInPandas` keyed by 64 buckets of people), a "
        "rule that pushes every "
        "`view_item` of a new member, and a webhook receiver on loopback. Latency is the push's "
        "arrival minus the event's send time; `pushes_per_s` is pushes over the time from the "
        "load's start to the last push (below the rate: the stream fell behind; then that is "
        "the throughput ceiling). `state_mb`: the checkpoint's state store files. The machine "
        "(2 cores) is shared with two other engineers' work: `load_avg_1m` is its load when the "
        "case started."
    ),
    cases=_cases,
    runs=1,
    warmup=0,
    notes=[
        "One run per rate (a load test, not a timing): the time column is the case's wall "
        "time (broker start, warm-up, 20 s of load, drain).",
        "Spark 4.1 real-time mode (`trigger(realTime=...)`, SPARK-53736) runs long-lived tasks "
        "and gives millisecond latency, but in 4.1 only for stateless queries from Kafka to "
        "Kafka / `foreach` sinks: no `foreachBatch`, no stateful operators, no Python "
        "`transformWithState` (JVM stateful support arrives in 4.3), and it needs as many free "
        "cores as Kafka partitions. Our stateless part (parse, normalise, keyed hash, identity "
        "lookup) could run that way into an intermediate topic, saving the micro-batch "
        "scheduling of that part (a few hundred ms) at the price of a second query and a "
        "second Kafka hop; the tags, caps and rules (state) and the idempotent Delta records "
        "(`foreachBatch`) cannot. On 2 cores the long-running tasks would also take the cores "
        "the stateful query needs, so the stage uses micro-batches with a 200 ms trigger.",
        "Before this version (state keyed by person: ~6 ms per person and micro-batch in the "
        "Python state API's round trips, a timer per person), measured 2026-12-03 03:10 UTC on "
        "the same machine at load 2.8-8.5: 200 events/s pushed 41/s (p95 43 s), 1,000 events/s "
        "87/s (p95 46 s, 4,173 of 19,993 pushed within the drain), 5,000 events/s nothing.",
        "What changed, each step measured (load 6-12 throughout): state keyed by "
        "`pmod(xxhash64(key), 64)` with a map state per person inside the bucket and one tags "
        "timer per bucket: 85 / 220 / 208 pushes/s at 200 / 1,000 / 5,000 events/s; then Python "
        "workers importing pyspark from the package instead of re-reading pyspark.zip and the "
        "spark-core jar at every task (`oneid.pydaemon`: a third of a worker's busy time in "
        "py-spy), one pass over a bucket's rows instead of a pandas group per person, and the "
        "triggers' Delta rows through Arrow (2,000 rows: 14.6 s -> 1.3 s): 119 / 260 / 367 "
        "pushes/s, p95 20 s at 200 events/s; then the benchmark receiver's listen backlog "
        "(Python's default of 5 dropped parallel connections, which the client retried after "
        "1 s: a 1 s floor on every batch's delivery): the table above.",
        "Result: still short of the target (p95 < 5 s at 1,000 events/s), measured at load "
        "8-9 (other engineers' Spark jobs on the same 2 cores): the stream pushes 306 events/s "
        "at 1,000 events/s and at most 464/s (the 5,000 events/s case), 3.5-7x the version "
        "keyed by person; at every rate it falls behind, so the latencies are queueing time. "
        "What limits it, from the sink's per-batch log: in a large batch (12,110 new people) "
        "the webhook POSTs took 17 s (~700/s: urllib, a new connection per POST from 8 threads, "
        "the receiver in the same Python process), the stateful step 9 s (~0.75 ms per person: "
        "a state get and update each, the rules in Python) and the Delta records 3 s (two "
        "commits, `realtime.triggers` then `realtime.batches`, ~1.3 s each on the loaded "
        "machine); a small batch still costs ~3-5 s (records, job scheduling). Next steps: "
        "keep-alive (pooled or async) webhook connections, the records of a batch in one "
        "commit (a contract change: the batch marker inside `realtime.triggers`), and a run on "
        "an idle machine to separate our cost from the machine's load.",
    ],
)

if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import run_benchmark, save_result

    work = Path(__file__).resolve().parents[1] / "bench_data" / "realtime"
    subprocess.run(["rm", "-rf", str(work)], check=False)
    result = run_benchmark(BENCHMARK, work, 1)
    print(json.dumps(result, indent=1, default=str)[:4000])
    print(f"saved {save_result(result)}")
