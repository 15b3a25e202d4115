"""The realtime stage's writes into the online store (oneid.realtime.online), from micro-batch
output rows as the stateful operator emits them, into a SQLite store and a real Redis."""

from __future__ import annotations

import json
import logging

import pytest

from oneid.errors import SecretMissingError
from oneid.realtime.online import OnlineTags
from oneid.realtime.processor import COLUMNS
from oneid.serve.settings import open_store
from oneid.serve.store import RealtimeTag
from tests.support import small_config

T0 = 1_751_335_200_000  # 2025-07-01T02:00:00Z


def _tags(key: str, as_of_ms: int, **tags) -> tuple:
    body = json.dumps({"as_of_ms": as_of_ms, "tags": tags})
    return (
        "tags",
        key,
        None,
        None,
        as_of_ms,
        None,
        None,
        None,
        None,
        None,
        body,
        None,
        None,
        1,
        None,
    )


def _batch():
    """Two snapshots of OneID 42 (the later wins), one of 7, a provisional key, an event row."""
    rows = [
        _tags("42", T0, views_10m=1, last_viewed_category="护肤"),
        _tags("42", T0 + 60_000, views_10m=2, last_viewed_category="双眼皮"),
        _tags("7", T0, views_10m=0, last_viewed_category=None),
        _tags("p:device:idfa:abc", T0, views_10m=5, last_viewed_category="x"),
        ("event", "42", 42, "e1", T0, "processed", None, None, None, None, None, 0, 1, 1, 1),
    ]
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


@pytest.fixture(params=["sqlite", "redis"])
def store_cfg(request, tmp_path):
    if request.param == "sqlite":
        return small_config(tmp_path / "warehouse")
    url = request.getfixturevalue("redis_url")
    return small_config(
        tmp_path / "warehouse", "serve.store=redis", f"serve.redis_url={url}", "serve.namespace=rt"
    )


def test_oneids_latest_snapshots_reach_the_store_with_updated_at(store_cfg):
    cfg = store_cfg
    online = OnlineTags(cfg)
    assert online.write(_batch()) == 2
    store = open_store(cfg)
    try:
        assert store.realtime_tags(42) == [
            RealtimeTag("last_viewed_category", "双眼皮", "2025-07-01T02:01:00.000Z"),
            RealtimeTag("views_10m", 2, "2025-07-01T02:01:00.000Z"),
        ]
        assert store.realtime_tags(7) == [
            RealtimeTag("last_viewed_category", None, "2025-07-01T02:00:00.000Z"),
            RealtimeTag("views_10m", 0, "2025-07-01T02:00:00.000Z"),
        ]
        assert online.write(_batch()) == 2  # a replayed micro-batch: the same values
        assert store.realtime_tags(42)[1] == RealtimeTag("views_10m", 2, "2025-07-01T02:01:00.000Z")
    finally:
        store.close()


def test_an_unreachable_store_does_not_stop_the_stream(tmp_path, caplog):
    cfg = small_config(
        tmp_path / "warehouse",
        "serve.store=redis",
        "serve.redis_url=redis://127.0.0.1:1/0",  # nothing listens on port 1
    )
    online = OnlineTags(cfg)
    with caplog.at_level(logging.WARNING, logger="oneid.realtime.online"):
        assert online.write(_batch()) == 0
    assert online.failures == 1 and online.store is None
    assert "realtime tags not written to the redis store (ConnectionError" in caplog.text


def test_a_store_conf_error_stops_the_start_not_each_micro_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEID_TEST_REDIS_URL", raising=False)
    cfg = small_config(
        tmp_path / "warehouse", "serve.store=redis", "serve.redis_url=env:ONEID_TEST_REDIS_URL"
    )
    with pytest.raises(SecretMissingError, match="ONEID_TEST_REDIS_URL"):
        OnlineTags(cfg)
