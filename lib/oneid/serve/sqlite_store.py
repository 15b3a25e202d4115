"""The embedded store: one SQLite file per version and a pointer file switched atomically.

``<dir>/v-<version>.sqlite`` is written under a temporary name and renamed into place when
complete; ``<dir>/CURRENT`` names the serving version and is replaced with ``os.replace`` (one
atomic rename). Version files never change once renamed, so readers open them read-only and
immutable (no locks). Realtime tags live in ``<dir>/realtime.sqlite`` (WAL mode).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from oneid.processes import gone_on_this_host
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

SCHEMA = """
CREATE TABLE identifiers (key BLOB PRIMARY KEY, oneid INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE profiles (oneid INTEGER PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE merges (oneid INTEGER PRIMARY KEY, merged_into INTEGER NOT NULL);
CREATE TABLE retired (oneid INTEGER PRIMARY KEY, split_into TEXT NOT NULL);
CREATE TABLE meta (info TEXT NOT NULL);
"""
POINTER = "CURRENT"
MAX_VARIABLES = 500  # SQLite's bound-parameter limit is 32766; keep statements small


class SqliteStore(ProfileStore):
    kind = "sqlite"

    def __init__(self, folder: str | Path, keep_versions: int = 2, batch_rows: int = 5000):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep_versions = keep_versions
        self.batch_rows = batch_rows
        self._local = threading.local()
        self._pointer_cache: tuple[tuple[int, int], str | None] | None = None
        self._realtime_lock = threading.Lock()

    # --- reads ---------------------------------------------------------------------------
    def _path(self, version: str) -> Path:
        return self.folder / f"v-{version}.sqlite"

    def _serving(self) -> str | None:
        pointer = self.folder / POINTER
        try:
            stat = pointer.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        cached = self._pointer_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        version = pointer.read_text(encoding="utf-8").strip() or None
        self._pointer_cache = (stamp, version)
        return version

    def _connection(self, version: str) -> sqlite3.Connection:
        """This thread's read-only connection to a version file (kept while it serves)."""
        held: dict[str, sqlite3.Connection] = getattr(self._local, "connections", {})
        self._local.connections = held
        connection = held.get(version)
        if connection is None:
            held.clear()  # older versions' connections close when their last snapshot goes
            uri = f"{self._path(version).as_uri()}?mode=ro&immutable=1"
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            held[version] = connection
        return connection

    def current(self) -> StoreVersion | None:
        version = self._serving()
        return self.info(version) if version else None

    def info(self, version: str) -> StoreVersion | None:
        path = self._path(version)
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        except sqlite3.OperationalError:
            return None  # not held (or dropped meanwhile)
        try:
            (info,) = db.execute("SELECT info FROM meta").fetchone()
        finally:
            db.close()
        return StoreVersion(**json.loads(info))

    def versions(self) -> list[StoreVersion]:
        held = [self.info(p.name[2:-7]) for p in self.folder.glob("v-*.sqlite")]
        return sorted(filter(None, held), key=lambda info: (info.loaded_at, info.version))

    def snapshot(self) -> Snapshot | None:
        version = self._serving()
        return _SqliteSnapshot(version, self._connection(version)) if version else None

    # --- loads ---------------------------------------------------------------------------
    @contextmanager
    def load(self, info: StoreVersion) -> Iterator[Loader]:
        final = self._path(info.version)
        partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial)
        try:
            db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
            loader = _SqliteLoader(db, self.batch_rows)
            yield loader
            counts = {**info.counts, **loader.counts}
            stored = StoreVersion(**{**info.to_dict(), "counts": counts})
            db.execute("INSERT INTO meta VALUES (?)", (json.dumps(stored.to_dict()),))
            db.commit()
            db.execute("PRAGMA synchronous=FULL")
            db.execute("VACUUM")  # compact pages; also fsyncs the finished file
            db.close()
            os.replace(partial, final)
        except BaseException:
            db.close()
            partial.unlink(missing_ok=True)
            raise
        self.activate(info.version)

    def activate(self, version: str) -> None:
        if not self._path(version).is_file():
            raise KeyError(f"store version {version} is not loaded")
        pointer = self.folder / POINTER
        staged = pointer.with_name(f"{POINTER}.{os.getpid()}.{threading.get_ident()}")
        with open(staged, "w", encoding="utf-8") as out:
            out.write(version)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, pointer)
        self._drop_old(version)

    def _drop_old(self, serving: str) -> None:
        """Remove versions beyond ``keep_versions`` (open readers keep their file until they
        close it) and partial files whose writer is gone."""
        held = [info.version for info in self.versions() if info.version != serving]
        for version in held[: max(0, len(held) - (self.keep_versions - 1))]:
            self._path(version).unlink(missing_ok=True)
        for partial in self.folder.glob("v-*.sqlite.partial-*"):
            pid = int(partial.name.rsplit("-", 1)[1])
            if pid != os.getpid() and gone_on_this_host(socket.gethostname(), pid, None):
                partial.unlink(missing_ok=True)

    # --- realtime tags -------------------------------------------------------------------
    def _realtime(self) -> sqlite3.Connection:
        connection = getattr(self._local, "realtime", None)
        if connection is None:
            connection = sqlite3.connect(self.folder / "realtime.sqlite", timeout=10)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS realtime_tags (oneid INTEGER, name TEXT, "
                "value TEXT, updated_at TEXT, PRIMARY KEY (oneid, name)) WITHOUT ROWID"
            )
            self._local.realtime = connection
        return connection

    def put_realtime_tags_many(self, items: Iterable[tuple[int, Sequence[RealtimeTag]]]) -> int:
        db = self._realtime()
        written = 0
        for batch in batches(items, self.batch_rows):
            rows = [
                (int(oneid), t.name, json.dumps(t.value), t.updated_at)
                for oneid, tags in batch
                for t in tags
            ]
            with db:  # one transaction per batch
                db.executemany("INSERT OR REPLACE INTO realtime_tags VALUES (?, ?, ?, ?)", rows)
            written += len(batch)
        return written

    def realtime_tags(self, oneid: int) -> list[RealtimeTag]:
        rows = self._realtime().execute(
            "SELECT name, value, updated_at FROM realtime_tags WHERE oneid = ? ORDER BY name",
            (oneid,),
        )
        return [RealtimeTag(name, json.loads(value), at) for name, value, at in rows]

    def close(self) -> None:
        for connection in getattr(self._local, "connections", {}).values():
            connection.close()
        self._local = threading.local()


class _SqliteLoader(Loader):
    def __init__(self, db: sqlite3.Connection, batch_rows: int):
        self.db = db
        self.batch_rows = batch_rows
        self.counts = {"identifiers": 0, "profiles": 0, "merges": 0, "retired": 0}

    def _write(self, table: str, sql: str, rows: Iterable[tuple]) -> int:
        written = 0
        for batch in batches(rows, self.batch_rows):
            self.db.executemany(sql, batch)
            written += len(batch)
        self.counts[table] += written
        return written

    def identifiers(self, rows: Iterable[tuple[str, str, int]]) -> int:
        keyed = ((identifier_key(t, h), int(o)) for t, h, o in rows)
        return self._write("identifiers", "INSERT INTO identifiers VALUES (?, ?)", keyed)

    def profiles(self, rows: Iterable[tuple[int, str]]) -> int:
        packed = ((int(o), pack(doc)) for o, doc in rows)
        return self._write("profiles", "INSERT INTO profiles VALUES (?, ?)", packed)

    def merges(self, rows: Iterable[tuple[int, int]]) -> int:
        pairs = ((int(a), int(b)) for a, b in rows)
        return self._write("merges", "INSERT OR REPLACE INTO merges VALUES (?, ?)", pairs)

    def retired(self, rows: Iterable[tuple[int, Sequence[int]]]) -> int:
        lists = ((int(o), json.dumps(sorted(map(int, split)))) for o, split in rows)
        return self._write("retired", "INSERT OR REPLACE INTO retired VALUES (?, ?)", lists)


class _SqliteSnapshot(Snapshot):
    def __init__(self, version: str, db: sqlite3.Connection):
        self.version = version
        self.db = db

    def _get(self, sql: str, keys: Sequence) -> list:
        found: dict = {}
        for start in range(0, len(keys), MAX_VARIABLES):
            chunk = list(keys[start : start + MAX_VARIABLES])
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(sql.format(marks=marks), chunk).fetchall())
        return [found.get(key) for key in keys]

    def oneids(self, keys: Sequence[bytes]) -> list[int | None]:
        return self._get("SELECT key, oneid FROM identifiers WHERE key IN ({marks})", keys)

    def profiles(self, oneids: Sequence[int]) -> list[str | None]:
        docs = self._get("SELECT oneid, doc FROM profiles WHERE oneid IN ({marks})", oneids)
        return [unpack(doc) if doc is not None else None for doc in docs]

    def merged_into(self, oneids: Sequence[int]) -> list[int | None]:
        return self._get("SELECT oneid, merged_into FROM merges WHERE oneid IN ({marks})", oneids)

    def split_into(self, oneids: Sequence[int]) -> list[list[int] | None]:
        try:
            found = self._get(
                "SELECT oneid, split_into FROM retired WHERE oneid IN ({marks})", oneids
            )
        except sqlite3.OperationalError:  # a version file written before retirements were kept
            return [None] * len(oneids)
        return [json.loads(split) if split is not None else None for split in found]
