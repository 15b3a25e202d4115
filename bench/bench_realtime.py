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


def _tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system, with reaped children) of this process and its descendants:
    the stream's JVM and Python workers, the broker, the receiver and the load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    todo, total = [pid or os.getpid()], 0.0
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is not None:
            total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        todo.extend(children.get(current, []))
    return total


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
    spark = build_session(
        cfg0, job="bench-realtime", java_options=cfg0.pipeline.realtime.jvm_options
    )

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
                    cpu = _tree_cpu_seconds()
                    sent = _load(broker.bootstrap_servers, "events", rate, SECONDS, f"r{rate}")
                    deadline = time.monotonic() + DRAIN_SECONDS
                    while (
                        len(receiver.received.first) - len(warm) < sent
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.5)
                    cpu = _tree_cpu_seconds() - cpu
                    state = _state_bytes(folder / "checkpoint")
                finally:
                    run.stop()
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
                "cpu_ms_per_event": round(1000 * cpu / max(sent, 1), 2),
                "load_avg_1m": round(load, 1),
            }

        return Case(f"{rate} events/s for {SECONDS} s", run)

    return [case(rate) for rate in RATES]


BENCHMARK = Benchmark(
    name="realtime",
    title="Realtime: event → push latency at fixed rates",
    description=(
        "Kafka 4.1.1 broker on loopback, `oneid realtime` (`local[2]`, micro-batch trigger "
        "200 ms, its driver JVM on the C1 compiler, RocksDB state with changelog checkpoints, "
        "`transformWithStateInPandas` keyed by 64 buckets of people with pipelined state "
        "calls, webhook POSTs from one event loop over 32 keep-alive connections, the "
        "`realtime.*` records appended with delta-rs), a rule that pushes every `view_item` of "
        "a new member, and a webhook receiver on loopback (an asyncio server in the same "
        "process as the stream's driver and the load generator). Latency is the push's "
        "arrival minus the event's send time; `pushes_per_s` is pushes over the time from the "
        "load's start to the last push (below the rate: the stream fell behind; then that is "
        "the throughput ceiling). `state_mb`: the checkpoint's state store files. "
        "`cpu_ms_per_event`: CPU seconds of the whole process tree (stream JVM, Python workers, "
        "driver, broker, receiver, load generator) from the load's start to the last push, per "
        "event sent: less sensitive to the machine's load than the latencies. The machine (2 "
        "cores) is shared with other engineers' work: `load_avg_1m` is its load when the case "
        "started."
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
        "Before this version (commit bababa2: webhook POSTs from 8 threads with httpx, the "
        "records as Spark Delta writes, a socket round trip per state call, the C2 compiler), "
        "measured 2026-12-03 07:15-07:21 UTC with this benchmark in one session at load 8.0 / "
        "6.6 / 8.8: 200 events/s pushed 88/s (p50 19.4 s, p95 32.6 s, p99 33.8 s; 13.3 ms CPU "
        "per event), 1,000 events/s 310/s (p50 36.7 s, p95 53.9 s, p99 58.1 s; 3.67 ms), 5,000 "
        "events/s 285/s (26,762 of 99,963 pushed within the drain; p50 64.9 s, p95 88.7 s, p99 "
        "91.5 s). The table's run had load 11-15 (other engineers' Spark suites); side by side "
        "at 1,000 events/s, one case each, back to back at load 16-18 (07:48-07:54 UTC): before "
        "204 pushes/s, p95 67.2 s (5,144 of 19,990 not pushed within the drain), 3.50 ms CPU per "
        "event; after 581 pushes/s, p50 14.7 s, p95 21.2 s, p99 22.0 s, 1.39 ms: 2.8x the "
        "throughput for 0.40x the CPU.",
        "What changed, each step measured at 1,000 events/s (one case per run, a cold JVM, "
        "loads 6-19, so compared by CPU per event and the sink's per-batch log): (1) webhook "
        "POSTs from one asyncio event loop over kept-alive connections and an asyncio receiver "
        "(loopback, client and receiver in one process: 508 -> ~2,900 POSTs/s; with uvloop "
        "6,000-9,700/s); (2) the sink collects the operator's output once as Arrow and appends "
        "every table from the driver with delta-rs, idempotent by the Delta transaction (app id, "
        "batch id): a 10,000-trigger batch's records 19 s -> 0.2-0.6 s, a small batch's "
        "0.02-0.05 s (were ~2.6 s: a Spark job and commit per table); with (1): 223 -> 527 "
        "pushes/s; (3) a bucket's state reads and writes pipelined, a few hundred per round trip "
        "(py-spy: the state calls were 75% of the stateful step's Python time, then a third), "
        "RocksDB changelog checkpoints, pickled state rows without pyspark's Row round trip, the "
        "raw message only on quarantined events: 2.05 -> 1.91 ms CPU per event; (4) the "
        "workers' importer cache no longer holds zip importers for pyspark.zip, py4j and the "
        "spark-core jar, which re-read their directories at every task (43 ms each time): 1.65 "
        "ms; (5) the event parser as a `mapInArrow` function (no pandas frame to build and "
        "convert); (6) the stream's driver JVM on C1 only (`realtime.jvm_options`): the C2 "
        "compiler threads had 8.6 s of CPU in 25 s of load, then 0.6 s; the JVM's CPU per 20,000 "
        "events 22.9 -> 11.8 s, p95 29.1 -> 12.8 s and 448 -> 672 pushes/s in runs at load 9. "
        "Tried and left out: Unix domain sockets between the JVM and the Python workers "
        "(`spark.python.unix.domain.socket.enabled`): no gain (workers' CPU 11.9 s vs 10.6 s).",
        "Result, on a quiet machine (nothing else running, load 2.2-2.6; the table above, "
        "2026-12-03 08:25 UTC): at 1,000 events/s every event is pushed with p50 3.3 s, p95 4.8"
        " s, p99 5.2 s: the target (p95 < 5 s) is met, narrowly, in one run (a load test of 20 "
        "s; the reference case is 300 s). At 200 events/s p95 is 2.6 s. The ceiling is about "
        "1,650 pushes/s (the 5,000 events/s case falls behind: p95 42 s). The process tree uses"
        " 2.0 ms of CPU per event at 1,000 events/s (0.95 ms at 5,000/s: a micro-batch's fixed "
        "cost spreads over more events), the benchmark's load generator and receiver included, "
        "so on a shared machine the stream competes for the 2 cores: at load 9-16 (other "
        "engineers' Spark suites) the same code pushed 440-690/s at 1,000 events/s (p95 12-40 "
        "s). "
        "Next steps: repeated runs to put a spread on the 1,000 events/s result, the load "
        "generator and receiver in processes of their own, and fewer per-batch fixed costs "
        "(Spark's planning per micro-batch).",
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
