"""The online store contract, run against both stores: SQLite (embedded) and a real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import redis

from oneid.serve.redis_store import RedisStore
from oneid.serve.sqlite_store import SqliteStore
from oneid.serve.store import RealtimeTag, StoreVersion, identifier_key


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / "store", keep_versions=2, batch_rows=7)
    else:
        namespace = f"t{time.monotonic_ns()}"  # each test its own key space on the shared server
        made = RedisStore(redis_url, namespace, keep_versions=2, batch_rows=7)
    yield made
    made.close()


def info(version: str, **counts: int) -> StoreVersion:
    return StoreVersion(version, "r1", "2025-06-30", 0, f"2025-07-01T00:00:{version[-1]}", counts)


def load(store, version: str, people: int, offset: int = 0) -> None:
    """Version ``v<k>``: phone p<i> -> OneID k*1000+i, a profile naming the version."""
    k = int(version[1:])
    with store.load(info(version)) as loader:
        loader.identifiers(("phone", f"h{i}", k * 1000 + i + offset) for i in range(people))
        docs = ((k * 1000 + i, json.dumps({"version": version, "i": i})) for i in range(people))
        loader.profiles(docs)
        loader.merges([(1, k * 1000)])
        loader.retired([(2, [k * 1000 + 1, k * 1000]), (3, [])])


def keys(n: int) -> list[bytes]:
    return [identifier_key("phone", f"h{i}") for i in range(n)]


def test_an_empty_store_serves_nothing(store):
    assert store.current() is None and store.snapshot() is None and store.versions() == []
    assert store.lookup(keys(1)) is None


def test_a_load_serves_identifiers_profiles_and_merges(store):
    load(store, "v1", 30)
    assert store.current().version == "v1"
    counts = {k: v for k, v in store.current().counts.items() if k != "buckets"}
    assert counts == {"identifiers": 30, "profiles": 30, "merges": 1, "retired": 2}
    snap = store.snapshot()
    assert snap.version == "v1"
    assert snap.oneids([*keys(3), identifier_key("phone", "nobody")]) == [1000, 1001, 1002, None]
    # the same hash under another type is another identifier
    assert snap.oneids([identifier_key("email", "h1")]) == [None]
    assert [json.loads(d)["i"] for d in snap.profiles([1029, 1000])] == [29, 0]
    assert snap.profiles([5]) == [None]
    assert snap.merged_into([1, 2]) == [1000, None]
    assert snap.split_into([2, 3, 1, 1000]) == [[1000, 1001], [], None, None]
    assert snap.oneids([]) == snap.profiles([]) == snap.merged_into([]) == []
    assert snap.split_into([]) == []
    bound, found = store.lookup([*keys(2), identifier_key("phone", "nobody")])
    assert (bound.version, found) == ("v1", [1000, 1001, None])
    assert bound.profiles([1001]) == snap.profiles([1001])


def test_look_ups_awaited_together_answer_as_each_alone(store):
    async def together(*groups: list[bytes]) -> list:
        try:
            return await asyncio.gather(*(store.lookup_async(group) for group in groups))
        finally:
            await store.aclose()

    assert asyncio.run(together(keys(1))) == [None]  # nothing loaded yet
    load(store, "v1", 30)
    asyncio.run(together(keys(1)))  # warm: the script is loaded
    calls = _lookup_scripts(store)
    nobody = [identifier_key("phone", "nobody")]
    answers = asyncio.run(together(keys(1), keys(3), [], nobody, keys(30)[28:]))
    assert [(snap.version, found) for snap, found in answers] == [
        ("v1", [1000]),
        ("v1", [1000, 1001, 1002]),
        ("v1", []),
        ("v1", [None]),
        ("v1", [1028, 1029]),
    ]
    assert answers[1][0].profiles([1001]) == store.snapshot().profiles([1001])
    if isinstance(store, RedisStore):  # the five went to Redis in one script
        assert _lookup_scripts(store) == calls + 1


def _lookup_scripts(store) -> int:
    """How many scripts Redis ran so far (0 for SQLite)."""
    if not isinstance(store, RedisStore):
        return 0
    stats = store.client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def test_many_keys_in_one_read(store):
    load(store, "v1", 1200)
    assert store.snapshot().oneids(keys(1200)) == [1000 + i for i in range(1200)]


def test_a_new_version_switches_atomically_and_old_snapshots_stay_whole(store):
    load(store, "v1", 10)
    before = store.snapshot()
    load(store, "v2", 10)
    after = store.snapshot()
    assert (before.version, after.version) == ("v1", "v2")
    assert before.oneids(keys(2)) == [1000, 1001]  # a reader on v1 still reads v1 only
    assert after.oneids(keys(2)) == [2000, 2001]
    assert json.loads(after.profiles([2001])[0])["version"] == "v2"


def test_a_failed_load_leaves_the_old_version_serving_and_no_trace(store, tmp_path):
    load(store, "v1", 10)
    with pytest.raises(RuntimeError, match="boom"), store.load(info("v2")) as loader:
        loader.identifiers(("phone", f"h{i}", 9) for i in range(20))
        raise RuntimeError("boom")
    assert store.current().version == "v1"
    assert [v.version for v in store.versions()] == ["v1"]
    assert store.snapshot().oneids(keys(1)) == [1000]
    if isinstance(store, RedisStore):
        assert list(store.client.scan_iter(match=f"{store.ns}:v:v2:*")) == []
    else:
        assert sorted(p.name for p in store.folder.iterdir()) == ["CURRENT", "v-v1.sqlite"]


def test_old_versions_are_dropped_beyond_keep_versions(store):
    for version in ("v1", "v2", "v3"):
        load(store, version, 5)
    assert [v.version for v in store.versions()] == ["v2", "v3"]
    if isinstance(store, RedisStore):
        assert list(store.client.scan_iter(match=f"{store.ns}:v:v1:*")) == []
    else:
        assert not (store.folder / "v-v1.sqlite").exists()
    store.activate("v2")  # a re-run of the earlier batch serves again without a load
    assert store.snapshot().oneids(keys(1)) == [2000]
    with pytest.raises(KeyError):
        store.activate("v1")


def test_realtime_tags_are_kept_across_loads(store):
    load(store, "v1", 3)
    store.put_realtime_tags(1000, [RealtimeTag("last_event", "view", "2025-07-01T08:00:00Z")])
    store.put_realtime_tags(1000, [RealtimeTag("cart_value", 12.5, "2025-07-01T08:01:00Z")])
    load(store, "v2", 3)
    assert store.realtime_tags(1000) == [
        RealtimeTag("cart_value", 12.5, "2025-07-01T08:01:00Z"),
        RealtimeTag("last_event", "view", "2025-07-01T08:00:00Z"),
    ]
    assert store.realtime_tags(2000) == []


def test_realtime_tags_of_many_oneids_upsert_in_batches_and_outlive_version_drops(store):
    load(store, "v1", 3)
    at = "2025-07-01T08:00:00.000Z"
    store.put_realtime_tags(7, [RealtimeTag("views_10m", 1, at), RealtimeTag("last", "a", at)])
    later = "2025-07-01T08:05:00.000Z"
    items = [(oneid, [RealtimeTag("views_10m", oneid % 5, at)]) for oneid in range(1, 20)]
    items.append((7, [RealtimeTag("views_10m", 3, later), RealtimeTag("cart", None, later)]))
    assert store.put_realtime_tags_many(iter(items)) == 20  # batch_rows=7: three round trips
    assert store.put_realtime_tags_many([]) == 0
    for version in ("v2", "v3", "v4"):  # v1 and the versions after it are dropped
        load(store, version, 3)
    assert store.realtime_tags(7) == [  # a later item wins; a tag not in it stays
        RealtimeTag("cart", None, later),
        RealtimeTag("last", "a", at),
        RealtimeTag("views_10m", 3, later),
    ]
    assert store.realtime_tags(19) == [RealtimeTag("views_10m", 4, at)]
    assert store.realtime_tags(20) == []


def test_readers_never_see_a_mix_while_loads_swap(store):
    """Threads read whole answers (identifiers, then their profiles) while versions swap."""
    people = 40
    load(store, "v1", people)
    stop = threading.Event()
    seen: set[str] = set()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            snap, ids = store.lookup(keys(people))  # one round trip on Redis
            k = int(snap.version[1:])
            docs = snap.profiles(ids)
            seen.add(snap.version)
            if ids != [k * 1000 + i for i in range(people)]:
                problems.append(f"{snap.version}: identifiers {ids[:3]}...")
            if {json.loads(d)["version"] for d in docs} != {snap.version}:
                problems.append(f"{snap.version}: profiles of another version")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for k in range(2, 8):
            load(store, f"v{k}", people)
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert problems == []
    assert len(seen) >= 3  # the readers really ran across swaps
    assert store.current().version == "v7"


def test_redis_identifiers_are_compact_hash_buckets(redis_url):
    store = RedisStore(redis_url, "compact", batch_rows=1000)
    with store.load(info("v1", identifiers=5000)) as loader:
        loader.identifiers(("phone", f"h{i}", i) for i in range(5000))
    client = redis.Redis.from_url(redis_url)
    buckets = list(client.scan_iter(match="compact:v:v1:i:*"))
    assert len(buckets) == 5000 // 64
    assert {client.object("encoding", b) for b in buckets} == {b"listpack"}
    store.close()


def test_sqlite_store_in_a_relative_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # conf/local.yaml's warehouse is ./warehouse
    store = SqliteStore("warehouse/_serve")
    load(store, "v1", 2)
    assert store.current().version == "v1" and store.snapshot().oneids(keys(1)) == [1000]


def test_store_folders_and_the_access_log_are_local_paths(cfg):
    from oneid.errors import ConfigError
    from oneid.serve.settings import access_log_path, sqlite_dir

    def with_env(warehouse: str, **serve):
        env = cfg.env.model_copy(
            update={"warehouse": warehouse, "serve": cfg.env.serve.model_copy(update=serve)}
        )
        return cfg.model_copy(update={"env": env})

    assert sqlite_dir(with_env("file:///mnt/w")) == Path("/mnt/w/_serve")
    assert access_log_path(with_env("/w")) == Path("/w/_serve/access.jsonl")
    with pytest.raises(ConfigError, match="the warehouse hdfs:///w is not local"):
        sqlite_dir(with_env("hdfs:///w"))
    with pytest.raises(ConfigError, match=r"serve\.sqlite_dir: s3a://b/serve is not a local"):
        sqlite_dir(with_env("/w", sqlite_dir="s3a://b/serve"))
    with pytest.raises(ConfigError, match=r"serve\.access_log: hdfs:///l/a\.jsonl is not a local"):
        access_log_path(with_env("/w", access_log="hdfs:///l/a.jsonl"))
