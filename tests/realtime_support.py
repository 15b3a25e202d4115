"""Helpers of the realtime tests: a broker, a receiver and a conf for them (one place)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from confluent_kafka import Producer

from oneid.conf import OneIdConfig
from oneid.realtime.demo import local_stream_config
from oneid.realtime.events import SHANGHAI
from tests.support import small_config

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
HMAC_KEY = "test-hmac-key-that-must-not-leak-0123"


def stream_config(
    tmp: Path, bootstrap: str, url: str, *extra: str, storage: str | None = None
) -> OneIdConfig:
    """The repo's conf scaled down, pointed at the test broker, receiver and folders (the
    warehouse and checkpoint under ``tmp``, or under the URL ``storage``)."""
    root = storage or str(tmp)
    local_store = (f"serve.sqlite_dir={tmp / 'serve'}",) if storage else ()
    cfg = small_config(
        f"{root}/warehouse",
        *local_store,
        "realtime.webhook.backoff_seconds=0.05",
        "realtime.tags_every_seconds=0.5",
        "realtime.identity_refresh_seconds=0.5",
        "realtime.state_buckets=2",  # several keys share a bucket
        *extra,
    )
    return local_stream_config(cfg, bootstrap, url, f"{root}/checkpoint")


def shanghai_ms(text: str) -> int:
    """``"2025-07-01 10:05"`` on the Shanghai wall clock → epoch ms."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)
    return int(moment.timestamp() * 1000)


def event(event_id: str, at: str, name: str, ids: dict, **properties) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "time": at + ":00+08:00" if len(at) == 16 else at,
            "name": name,
            "ids": ids,
            "properties": properties,
        },
        ensure_ascii=False,
    )


def produce(bootstrap: str, topic: str, values: list[str | tuple[str, str]]) -> None:
    """Each value, or ``(key, value)``: a key keeps a person's events in one partition, in
    order, as an app's event collector does."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for item in values:
        key, value = item if isinstance(item, tuple) else (None, item)
        producer.produce(topic, value.encode("utf-8"), key=key)
    assert producer.flush(30) == 0


def wait_for(check, timeout: float = 120.0, every: float = 0.5, query=None):
    """Poll ``check()`` until it returns a truthy value; fail after ``timeout`` seconds, or at
    once when ``query`` (a streaming query) has failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query is not None and not query.isActive:
            raise AssertionError(f"the stream stopped: {query.exception()}")
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout:.0f} s: {check.__doc__ or check}")
