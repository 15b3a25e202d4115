"""The production store: Redis, every key of a version under its version prefix.

Keys (``<ns>`` is ``serve.namespace``)::

    <ns>:current                  the serving version (one SET switches it)
    <ns>:versions                 hash version -> StoreVersion JSON (complete loads)
    <ns>:buckets                  hash version -> its number of identifier buckets
    <ns>:loading                  hash version -> pid of a load in progress
    <ns>:v:<version>:i:<bucket>   hash identifier_key (16 bytes) -> OneID
    <ns>:v:<version>:p:<oneid>    the profile document (deflated JSON)
    <ns>:v:<version>:m            hash retired OneID -> OneID it was merged into
    <ns>:v:<version>:r            hash OneID retired without a merge -> JSON list split off it
    <ns>:rt:<oneid>               hash tag name -> JSON {value, updated_at} (realtime tags)

Identifiers sit in hash buckets of about 64 entries, which Redis keeps as compact listpacks
(a key of their own would cost ~4x the memory). A reader reads the pointer once and then only
keys of that version, so it never mixes two loads; a look-up reads the pointer and the
identifiers in one script (one round trip, atomic). The API's look-ups go through
:class:`_Coalesced`: never blocking the event loop, one script for all that are waiting.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import redis
import redis.asyncio

from oneid.serve.documents import pack, unpack
from oneid.serve.store import (
    Loader,
    ProfileStore,
    RealtimeTag,
    Snapshot,
    StoreVersion,
    batches,
    identifier_key,
)

ENTRIES_PER_BUCKET = 64
"""Mean entries per identifier bucket: the fullest of millions of buckets stays under Redis's
``hash-max-listpack-entries`` (128), so every bucket stays a compact listpack."""
DEFAULT_BUCKETS = 1024


class RedisStore(ProfileStore):
    kind = "redis"

    def __init__(
        self, url: str, namespace: str = "oneid", keep_versions: int = 2, batch_rows: int = 5000
    ):
        self.client = redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
        self.ns = namespace
        self.keep_versions = keep_versions
        self.batch_rows = batch_rows
        self.url = url
        self._buckets: dict[str, int] = {}
        self._lookup = self.client.register_script(LOOKUP)
        self._coalesced: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _key(self, *parts: object) -> str:
        return ":".join([self.ns, *map(str, parts)])

    # --- reads ---------------------------------------------------------------------------
    def current(self) -> StoreVersion | None:
        version = self.client.get(self._key("current"))
        return self.info(version.decode()) if version else None

    def info(self, version: str) -> StoreVersion | None:
        raw = self.client.hget(self._key("versions"), version)
        return StoreVersion(**json.loads(raw)) if raw else None

    def versions(self) -> list[StoreVersion]:
        held = [StoreVersion(**json.loads(v)) for v in self.client.hvals(self._key("versions"))]
        return sorted(held, key=lambda info: (info.loaded_at, info.version))

    def snapshot(self) -> Snapshot | None:
        version = self.client.get(self._key("current"))
        if not version:
            return None
        version = version.decode()
        buckets = self._buckets.get(version)
        if buckets is None:
            info = self.info(version)
            buckets = info.counts.get("buckets", DEFAULT_BUCKETS) if info else DEFAULT_BUCKETS
            self._buckets[version] = buckets
        return _RedisSnapshot(self, version, buckets)

    def lookup(self, keys: Sequence[bytes]) -> tuple[Snapshot, list[int | None]] | None:
        return self._answer(self._lookup(args=[self.ns, *keys]))

    def _answer(self, found: list | None) -> tuple[Snapshot, list[int | None]] | None:
        if not found:
            return None
        version, buckets, *oneids = found
        snap = _RedisSnapshot(self, version.decode(), int(buckets))
        return snap, [int(value) if value is not None else None for value in oneids]

    async def lookup_async(self, keys: Sequence[bytes]) -> tuple[Snapshot, list[int | None]] | None:
        loop = asyncio.get_running_loop()
        coalesced = self._coalesced.get(loop)
        if coalesced is None:
            coalesced = self._coalesced[loop] = _Coalesced(self.url, self.ns)
        return self._answer(await coalesced.lookup(keys))

    async def aclose(self) -> None:
        coalesced = self._coalesced.pop(asyncio.get_running_loop(), None)
        if coalesced is not None:
            await coalesced.client.aclose()

    # --- loads ---------------------------------------------------------------------------
    @contextmanager
    def load(self, info: StoreVersion) -> Iterator[Loader]:
        self._drop_abandoned()
        expected = info.counts.get("identifiers") or DEFAULT_BUCKETS * ENTRIES_PER_BUCKET
        buckets = max(1, expected // ENTRIES_PER_BUCKET)
        self.client.hset(self._key("loading"), info.version, os.getpid())
        self._drop(info.version)  # leftovers of an earlier attempt at this version
        loader = _RedisLoader(self, info.version, buckets)
        try:
            yield loader
        except BaseException:
            self._drop(info.version)
            self.client.hdel(self._key("loading"), info.version)
            raise
        counts = {**info.counts, **loader.counts, "buckets": buckets}
        stored = StoreVersion(**{**info.to_dict(), "counts": counts})
        with self.client.pipeline(transaction=True) as tx:
            tx.hset(self._key("versions"), info.version, json.dumps(stored.to_dict()))
            tx.hset(self._key("buckets"), info.version, buckets)
            tx.hdel(self._key("loading"), info.version)
            tx.execute()
        self.activate(info.version)

    def activate(self, version: str) -> None:
        if not self.client.hexists(self._key("versions"), version):
            raise KeyError(f"store version {version} is not loaded")
        self.client.set(self._key("current"), version)
        held = [v.version for v in self.versions() if v.version != version]
        for old in held[: max(0, len(held) - (self.keep_versions - 1))]:
            self.client.hdel(self._key("versions"), old)
            self.client.hdel(self._key("buckets"), old)
            self._drop(old)

    def _drop(self, version: str) -> None:
        """Remove every key of a version (UNLINK frees memory in the background)."""
        pattern = self._key("v", version, "*")
        doomed = []
        for key in self.client.scan_iter(match=pattern, count=5000):
            doomed.append(key)
            if len(doomed) >= 5000:
                self.client.unlink(*doomed)
                doomed = []
        if doomed:
            self.client.unlink(*doomed)

    def _drop_abandoned(self) -> None:
        """Partial versions of loads that died (one loader at a time: serve-sync's lease)."""
        for version in self.client.hkeys(self._key("loading")):
            self._drop(version.decode())
            self.client.hdel(self._key("loading"), version)

    # --- realtime tags -------------------------------------------------------------------
    def put_realtime_tags_many(self, items: Iterable[tuple[int, Sequence[RealtimeTag]]]) -> int:
        written = 0
        for batch in batches(items, self.batch_rows):
            with self.client.pipeline(transaction=False) as pipe:
                for oneid, tags in batch:
                    mapping = {
                        t.name: json.dumps({"value": t.value, "updated_at": t.updated_at})
                        for t in tags
                    }
                    if mapping:
                        pipe.hset(self._key("rt", int(oneid)), mapping=mapping)
                pipe.execute()
            written += len(batch)
        return written

    def realtime_tags(self, oneid: int) -> list[RealtimeTag]:
        held = self.client.hgetall(self._key("rt", oneid))
        tags = []
        for name, raw in sorted(held.items()):
            item = json.loads(raw)
            tags.append(RealtimeTag(name.decode(), item["value"], item["updated_at"]))
        return tags

    def close(self) -> None:
        self.client.close()


def _bucket(key: bytes, buckets: int) -> int:
    """The bucket of an identifier key (first 4 bytes: :data:`LOOKUP` computes the same)."""
    return int.from_bytes(key[:4], "big") % buckets


LOOKUP = """
local ns = ARGV[1]
local version = redis.call('GET', ns .. ':current')
if not version then return false end
local buckets = tonumber(redis.call('HGET', ns .. ':buckets', version) or '1024')
local out = {version, buckets}
for i = 2, #ARGV do
  local b1, b2, b3, b4 = string.byte(ARGV[i], 1, 4)
  local bucket = (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % buckets
  out[i + 1] = redis.call('HGET', ns .. ':v:' .. version .. ':i:' .. bucket, ARGV[i]) or false
end
return out
"""
"""The serving version and the OneIDs of identifier keys, read atomically in one round trip
(keys are computed in the script: standalone Redis, not Redis Cluster)."""


class _Coalesced:
    """The API's look-ups in one event loop, sent to Redis together: while one :data:`LOOKUP`
    script is out, the look-ups that arrive wait and then go in the next one. The loop never
    blocks on a round trip, and a burst costs one round trip instead of one per request (on
    a busy host each round trip is a wake-up of redis-server and of this process). Every
    look-up of one script reads the same serving version."""

    def __init__(self, url: str, namespace: str):
        self.client = redis.asyncio.Redis.from_url(url, socket_timeout=5)
        self.script = self.client.register_script(LOOKUP)
        self.ns = namespace
        self.waiting: list[tuple[Sequence[bytes], asyncio.Future]] = []
        self.sender: asyncio.Task | None = None

    async def lookup(self, keys: Sequence[bytes]) -> list | None:
        """What :data:`LOOKUP` answers for ``keys`` alone: version, buckets, OneIDs."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((keys, future))
        if self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self.waiting:
                group, self.waiting = self.waiting, []
                try:
                    found = await self.script(
                        args=[self.ns, *(k for keys, _ in group for k in keys)]
                    )
                except Exception as error:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    continue
                start = 2
                for keys, future in group:
                    if not future.done():
                        answer = [*found[:2], *found[start : start + len(keys)]] if found else None
                        future.set_result(answer)
                    start += len(keys)
        finally:
            self.sender = None


class _RedisLoader(Loader):
    def __init__(self, store: RedisStore, version: str, buckets: int):
        self.store = store
        self.version = version
        self.buckets = buckets
        self.counts = {"identifiers": 0, "profiles": 0, "merges": 0, "retired": 0}

    def identifiers(self, rows: Iterable[tuple[str, str, int]]) -> int:
        written = 0
        for batch in batches(rows, self.store.batch_rows):
            grouped: dict[int, dict[bytes, int]] = defaultdict(dict)
            for id_type, value_hash, oneid in batch:
                key = identifier_key(id_type, value_hash)
                grouped[_bucket(key, self.buckets)][key] = int(oneid)
            with self.store.client.pipeline(transaction=False) as pipe:
                for bucket, mapping in grouped.items():
                    pipe.hset(self.store._key("v", self.version, "i", bucket), mapping=mapping)
                pipe.execute()
            written += len(batch)
        self.counts["identifiers"] += written
        return written

    def profiles(self, rows: Iterable[tuple[int, str]]) -> int:
        written = 0
        for batch in batches(rows, self.store.batch_rows):
            mapping = {self.store._key("v", self.version, "p", int(o)): pack(d) for o, d in batch}
            self.store.client.mset(mapping)
            written += len(batch)
        self.counts["profiles"] += written
        return written

    def merges(self, rows: Iterable[tuple[int, int]]) -> int:
        written = 0
        for batch in batches(rows, self.store.batch_rows):
            mapping = {int(a): int(b) for a, b in batch}
            self.store.client.hset(self.store._key("v", self.version, "m"), mapping=mapping)
            written += len(batch)
        self.counts["merges"] += written
        return written

    def retired(self, rows: Iterable[tuple[int, Sequence[int]]]) -> int:
        written = 0
        for batch in batches(rows, self.store.batch_rows):
            mapping = {int(o): json.dumps(sorted(map(int, split))) for o, split in batch}
            self.store.client.hset(self.store._key("v", self.version, "r"), mapping=mapping)
            written += len(batch)
        self.counts["retired"] += written
        return written


class _RedisSnapshot(Snapshot):
    def __init__(self, store: RedisStore, version: str, buckets: int):
        self.store = store
        self.version = version
        self.buckets = buckets

    def oneids(self, keys: Sequence[bytes]) -> list[int | None]:
        if not keys:
            return []
        with self.store.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(self.store._key("v", self.version, "i", _bucket(key, self.buckets)), key)
            found = pipe.execute()
        return [int(value) if value is not None else None for value in found]

    def profiles(self, oneids: Sequence[int]) -> list[str | None]:
        if not oneids:
            return []
        keys = [self.store._key("v", self.version, "p", oneid) for oneid in oneids]
        return [unpack(doc) if doc is not None else None for doc in self.store.client.mget(keys)]

    def merged_into(self, oneids: Sequence[int]) -> list[int | None]:
        if not oneids:
            return []
        found = self.store.client.hmget(self.store._key("v", self.version, "m"), list(oneids))
        return [int(value) if value is not None else None for value in found]

    def split_into(self, oneids: Sequence[int]) -> list[list[int] | None]:
        if not oneids:
            return []
        found = self.store.client.hmget(self.store._key("v", self.version, "r"), list(oneids))
        return [json.loads(value) if value is not None else None for value in found]
