"""Exactly once as the receiver sees it: the stream runs as `oneid realtime` in a child
process that is killed with SIGKILL at random points and restarted from its checkpoint. Every
expected trigger reaches the receiver; a trigger sent again (the crash fell between the
receiver's answer and the stream recording it) carries the same idempotency key and the same
bytes, so the receiver's deduplication makes it exactly once; realtime.triggers holds each
trigger once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from oneid.conf.pipeline import SMALL_DATA_SPARK
from oneid.realtime.broker import LocalBroker
from oneid.realtime.delivery import Secret
from oneid.realtime.receiver import WebhookReceiver
from oneid.realtime.rules import trigger_id
from oneid.tables import table_path
from tests.realtime_support import HMAC_KEY, WEBHOOK_SECRET, event, produce, wait_for
from tests.support import CONF_DIR, delta_records, small_config

pytestmark = pytest.mark.slow

CHUNKS = 2
KEYS_PER_CHUNK = 8


def _events(chunk: int) -> list[tuple[str, str]]:
    """Per key two double-eyelid views a minute apart (keyed by member: one partition, in
    order): the second fires the rule."""
    out = []
    for k in range(KEYS_PER_CHUNK):
        member = {"member_id": f"K{chunk}-{k}"}
        for n, minute in enumerate(("10:00", "10:01")):
            body = event(
                f"c{chunk}k{k}v{n}", f"2025-07-01 {minute}", "view_item", member, category="双眼皮"
            )
            out.append((member["member_id"], body))
    return out


def _child(cfg_args: list[str], log) -> subprocess.Popen:
    """``oneid realtime`` in a process of its own (its output appended to ``log``)."""
    env = {**os.environ, "ONEID_WEBHOOK_SECRET": WEBHOOK_SECRET, "ONEID_HMAC_KEY": HMAC_KEY}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "oneid", "realtime", "--conf-dir", str(CONF_DIR), *cfg_args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _rows(path) -> list[dict]:
    try:
        return delta_records(path)
    except Exception:  # not created yet
        return []


def test_kill_9_at_random_points_loses_no_trigger_and_sends_none_twice(tmp_path):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    folder = tmp_path
    with (
        LocalBroker(small_config(folder / "w0"), folder / "broker") as broker,
        WebhookReceiver(Secret(WEBHOOK_SECRET.encode())) as receiver,
    ):
        broker.create_topics("events")
        extra = ",".join(f"{k}: '{v}'" for k, v in SMALL_DATA_SPARK.items())
        args = [
            f"--set=warehouse={folder / 'warehouse'}",
            "--set=spark.master=local[2]",
            "--set=spark.shuffle_partitions=2",
            "--set=spark.driver_memory=1g",
            f"--set=spark.extra={{{extra}}}",
            f"--set=kafka.bootstrap_servers={broker.bootstrap_servers}",
            f"--set=realtime.webhook.url={receiver.url}",
            "--set=realtime.starting_offsets=earliest",
            "--set=realtime.trigger_seconds=0.2",
            "--set=realtime.max_offsets_per_trigger=6",
            f"--set=realtime.checkpoint_dir={folder / 'checkpoint'}",
        ]
        batches = f"{folder / 'warehouse'}/realtime/batches"
        read = lambda: sum(b["read"] for b in _rows(batches))  # noqa: E731
        kills = []
        for chunk in range(CHUNKS):
            produce(broker.bootstrap_servers, "events", _events(chunk))
            before = read()
            child = _child(args, folder / "child.log")
            try:
                wait_for(lambda before=before: read() > before, timeout=180, every=0.2)
                pause = rng.uniform(0.0, 1.5)
                time.sleep(pause)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait(30)
            kills.append((read(), round(pause, 2)))
        total = CHUNKS * KEYS_PER_CHUNK * 2
        expected = {
            trigger_id(f"c{c}k{k}v1", "eyelid_consult")
            for c in range(CHUNKS)
            for k in range(KEYS_PER_CHUNK)
        }
        child = _child(args, folder / "child.log")
        try:
            wait_for(
                lambda: read() == total and len(receiver.received.first) >= len(expected),
                timeout=180,
            )
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        received = receiver.received
    note = f"seed {seed}, kills at (events read, pause s) {kills}, repeats {len(received.repeats)}"
    assert set(received.first) == expected, note
    for key, body in received.repeats:
        assert body == received.bodies[key], note  # the same trigger, byte for byte
    assert received.bad_signatures == 0
    rows = delta_records(table_path(small_config(folder / "warehouse"), "realtime.triggers"))
    assert sorted(r["trigger_id"] for r in rows) == sorted(expected), note
    assert {r["status"] for r in rows} == {"sent"}
    print(note)
