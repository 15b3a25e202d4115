"""The online store's contract: versioned, atomic loads and reads bound to one version.

A load writes a whole new version beside the serving one and switches a pointer to it in one
atomic step, so a reader sees the old version or the new, never a mix; a load that fails
leaves the old version serving and its partial version is removed. Old versions beyond
``keep_versions`` are dropped after a switch. Realtime tags live outside the versions (a
batch load does not erase them).

Keys: an identifier is stored under :func:`identifier_key` of its type and keyed hash, a
profile under its OneID; profile documents are JSON (compressed by :mod:`.documents`).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


def identifier_key(id_type: str, value_hash: str) -> bytes:
    """16 bytes naming one identifier (its type and keyed hash) in a store."""
    return hashlib.blake2b(f"{id_type}\x00{value_hash}".encode(), digest_size=16).digest()


@dataclass(frozen=True)
class StoreVersion:
    """What one load holds: the batch it came from and its size."""

    version: str
    identity_run: str
    as_of: str | None
    key_version: int
    """Version of the HMAC key the identifiers were hashed with (0: the public demo key)."""
    loaded_at: str
    counts: dict[str, int] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    """Delta table versions the load read (what makes it reproducible)."""

    def __post_init__(self) -> None:
        if not VERSION_PATTERN.match(self.version):
            raise ValueError(f"store version must match {VERSION_PATTERN.pattern}: {self.version}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RealtimeTag:
    """A tag the realtime stage wrote for a OneID (kept across batch loads)."""

    name: str
    value: object
    updated_at: str


class Loader(ABC):
    """Writes one new version; rows arrive in batches (iterables are consumed lazily)."""

    @abstractmethod
    def identifiers(self, rows: Iterable[tuple[str, str, int]]) -> int:
        """(id_type, value_hash, oneid) rows; returns how many were written."""

    @abstractmethod
    def profiles(self, rows: Iterable[tuple[int, str]]) -> int:
        """(oneid, profile JSON) rows."""

    @abstractmethod
    def merges(self, rows: Iterable[tuple[int, int]]) -> int:
        """(retired oneid, oneid it was merged into) rows."""

    @abstractmethod
    def retired(self, rows: Iterable[tuple[int, Sequence[int]]]) -> int:
        """(retired oneid, the OneIDs split off it) rows: OneIDs no component keeps (their
        identifiers are gone: records deleted or erased), not merged into another."""


class Snapshot(ABC):
    """Reads of one version: every answer of one request comes from the same load."""

    version: str

    @abstractmethod
    def oneids(self, keys: Sequence[bytes]) -> list[int | None]:
        """OneID per :func:`identifier_key` (None: unknown identifier)."""

    @abstractmethod
    def profiles(self, oneids: Sequence[int]) -> list[str | None]:
        """Profile JSON per OneID (None: no live profile)."""

    @abstractmethod
    def merged_into(self, oneids: Sequence[int]) -> list[int | None]:
        """The OneID each retired OneID was merged into (None: not merged away)."""

    @abstractmethod
    def split_into(self, oneids: Sequence[int]) -> list[list[int] | None]:
        """Per OneID retired without a merge, the OneIDs split off it (None: not retired so)."""


class ProfileStore(ABC):
    """An online store: SQLite (embedded) or Redis. Thread-safe for readers."""

    kind: str

    @abstractmethod
    def current(self) -> StoreVersion | None:
        """The serving version (None before the first load)."""

    @abstractmethod
    def info(self, version: str) -> StoreVersion | None:
        """What a held version holds (None: not held)."""

    @abstractmethod
    def versions(self) -> list[StoreVersion]:
        """Complete versions held, oldest first."""

    @abstractmethod
    def snapshot(self) -> Snapshot | None:
        """Reads bound to the serving version (None before the first load)."""

    def lookup(self, keys: Sequence[bytes]) -> tuple[Snapshot, list[int | None]] | None:
        """The serving version and the OneIDs of ``keys`` in it (None before the first load);
        a store may answer this in one round trip."""
        snap = self.snapshot()
        return (snap, snap.oneids(keys)) if snap is not None else None

    async def lookup_async(self, keys: Sequence[bytes]) -> tuple[Snapshot, list[int | None]] | None:
        """:meth:`lookup` for the API's event loop: a store that waits on a server answers
        without blocking the loop. Here: the blocking read (SQLite reads a local page)."""
        return self.lookup(keys)

    async def aclose(self) -> None:
        """Close what :meth:`lookup_async` opened in the running event loop."""
        return None

    @abstractmethod
    def load(self, info: StoreVersion) -> AbstractContextManager[Loader]:
        """Write version ``info``; leaving the block without an error makes it serve and drops
        versions beyond ``keep_versions``; an error removes what was written."""

    @abstractmethod
    def activate(self, version: str) -> None:
        """Make an already loaded version serve (a re-run of an older batch)."""

    def put_realtime_tags(self, oneid: int, tags: Sequence[RealtimeTag]) -> None:
        """Set realtime tags of a OneID (other tags of it stay as they are)."""
        self.put_realtime_tags_many([(oneid, tags)])

    @abstractmethod
    def put_realtime_tags_many(self, items: Iterable[tuple[int, Sequence[RealtimeTag]]]) -> int:
        """Set realtime tags of many OneIDs (the realtime stage's writes), a batch of OneIDs per
        round trip; a later item wins over an earlier one. Returns how many OneIDs."""

    @abstractmethod
    def realtime_tags(self, oneid: int) -> list[RealtimeTag]:
        """The OneID's realtime tags, by name."""

    @abstractmethod
    def close(self) -> None: ...

    def has(self, version: str) -> bool:
        return any(held.version == version for held in self.versions())


def batches(rows: Iterable, size: int) -> Iterator[list]:
    """``rows`` in lists of ``size`` (the last may be shorter)."""
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
