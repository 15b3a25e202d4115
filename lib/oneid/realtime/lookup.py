"""What the stream looks up in the batch tables: the published ``identity.oneid_map`` (and,
for trigger rules, the latest batch tags and audience memberships).

The stream's Python workers read these Delta tables with delta-rs (``deltalake.QueryBuilder``:
it reads deletion vectors) and keep them in memory, keyed by the table version. At most every
``realtime.identity_refresh_seconds`` a worker asks for the table's latest version and reloads
when a newer run has landed: a new identity run is picked up without restarting the stream.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from oneid.realtime.events import Identifier

logger = logging.getLogger(__name__)
T = TypeVar("T")
PROVISIONAL_PREFIX = "p:"


@dataclass
class _Entry:
    version: int
    value: Any
    checked: float


@dataclass
class TableCache:
    """Delta tables read into Python objects, reloaded when their version changes."""

    refresh_seconds: float
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def get(self, path: str, sql: str, build: Callable[[list[dict]], T], empty: T) -> tuple[int, T]:
        """(version, ``build(rows of sql over the table as t)``); (-1, ``empty``) while the
        table does not exist."""
        now = time.monotonic()
        entry = self._entries.get(path)
        if entry is not None and now - entry.checked < self.refresh_seconds:
            return entry.version, entry.value
        import pyarrow as pa
        from deltalake import DeltaTable, QueryBuilder
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(path)
        except TableNotFoundError:
            self._entries[path] = _Entry(-1, empty, now)
            return -1, empty
        version = table.version()
        if entry is not None and entry.version == version:
            entry.checked = now
            return version, entry.value
        started = time.monotonic()
        reader = QueryBuilder().register("t", table).execute(sql)
        rows = pa.table(reader.read_all()).to_pylist()
        value = build(rows)
        self._entries[path] = _Entry(version, value, now)
        logger.info(
            "loaded %s version %d: %d rows in %.2f s",
            path,
            version,
            len(rows),
            time.monotonic() - started,
        )
        return version, value


ONEID_MAP_SQL = "SELECT id_type, value_hash, oneid FROM t WHERE oneid IS NOT NULL"


def oneid_map_index(rows: Iterable[dict]) -> dict[tuple[str, str], int]:
    return {(r["id_type"], r["value_hash"]): int(r["oneid"]) for r in rows}


@dataclass(frozen=True)
class Resolution:
    """Who an event belongs to: a OneID, or a provisional key for identifiers no identity run
    has seen; ``oneids`` are every OneID its identifiers map to (two or more: a conflict the
    stream records as a link and never merges)."""

    key: str
    oneid: int | None
    oneids: tuple[int, ...]
    known: tuple[bool, ...]


def resolve(
    identifiers: tuple[Identifier, ...],
    index: dict[tuple[str, str], int],
    priority: tuple[str, ...],
) -> Resolution:
    """The OneID of the highest-priority identifier that has one (``identity.priority`` by base
    type); else a provisional key from the highest-priority identifier's hash."""
    ordered = sorted(identifiers, key=lambda i: (_rank(i.id_type, priority), i.id_type))
    found = [index.get((i.id_type, i.value_hash)) for i in identifiers]
    oneids = tuple(sorted({o for o in found if o is not None}))
    for ident in ordered:
        oneid = index.get((ident.id_type, ident.value_hash))
        if oneid is not None:
            return Resolution(str(oneid), oneid, oneids, tuple(o is not None for o in found))
    first = ordered[0]
    digest = hashlib.sha256(f"{first.id_type}\x1f{first.value_hash}".encode()).hexdigest()
    return Resolution(PROVISIONAL_PREFIX + digest[:20], None, (), tuple(False for _ in found))


def _rank(id_type: str, priority: tuple[str, ...]) -> int:
    base = id_type.split(":", 1)[0]
    return priority.index(base) if base in priority else len(priority)


_SHARED: dict[float, TableCache] = {}


def shared_cache(refresh_seconds: float) -> TableCache:
    """One cache per process (a Python worker keeps it across micro-batches)."""
    cache = _SHARED.get(refresh_seconds)
    if cache is None:
        cache = _SHARED[refresh_seconds] = TableCache(refresh_seconds)
    return cache


@dataclass(frozen=True)
class BatchFactsReader:
    """The latest batch tags and audience memberships a OneID has, for the trigger rules that
    name them (nothing is read when no rule does)."""

    tag_tables: dict[str, tuple[str, ...]]
    """``gold.tags_<group>`` path → the tags rules use from it."""
    membership_path: str | None
    audiences: tuple[str, ...]
    refresh_seconds: float

    @classmethod
    def for_conf(cls, cfg) -> BatchFactsReader:
        from oneid.conf.audiences import AudienceRef, TagCondition
        from oneid.conf.realtime import iter_rule_conditions
        from oneid.tables import table_path

        groups = {t.name: t.group for t in cfg.pipeline.tags.definitions}
        tags: dict[str, set[str]] = {}
        audiences: set[str] = set()
        for rule in cfg.pipeline.realtime.rules.values():
            for condition in iter_rule_conditions(rule.when):
                if isinstance(condition, TagCondition):
                    if condition.tag not in groups:
                        from oneid.errors import ConfigError

                        raise ConfigError(f"realtime rule: unknown batch tag {condition.tag!r}")
                    path = table_path(cfg, f"gold.tags_{groups[condition.tag]}")
                    tags.setdefault(path, set()).add(condition.tag)
                elif isinstance(condition, AudienceRef):
                    audiences.add(condition.audience)
        membership = table_path(cfg, "audience.membership") if audiences else None
        return cls(
            {p: tuple(sorted(t)) for p, t in tags.items()},
            membership,
            tuple(sorted(audiences)),
            cfg.pipeline.realtime.identity_refresh_seconds,
        )

    def get(self, oneid: int | None):
        from oneid.realtime.rules import BatchFacts

        if oneid is None or not (self.tag_tables or self.membership_path):
            return BatchFacts()
        cache = shared_cache(self.refresh_seconds)
        values: dict[str, Any] = {}
        for path, names in self.tag_tables.items():
            columns = ", ".join(f'"{n}"' for n in names)
            sql = f"SELECT oneid, {columns} FROM t WHERE dt = (SELECT max(dt) FROM t)"
            _, index = cache.get(path, sql, _by_oneid, {})
            values.update(index.get(oneid, {}))
        members: dict[str, bool] = {}
        if self.membership_path:
            listed = ", ".join(f"'{a}'" for a in self.audiences)
            sql = (
                "SELECT m.audience_id, m.oneid, m.holdout FROM t m JOIN (SELECT audience_id, "
                "max(dt) AS dt FROM t GROUP BY audience_id) l ON m.audience_id = l.audience_id "
                f"AND m.dt = l.dt WHERE m.audience_id IN ({listed})"
            )
            _, index = cache.get(self.membership_path, sql, _memberships, {})
            members = index.get(oneid, {})
        return BatchFacts(values, members)


def _by_oneid(rows: list[dict]) -> dict[int, dict]:
    return {int(r.pop("oneid")): r for r in rows}


def _memberships(rows: list[dict]) -> dict[int, dict[str, bool]]:
    index: dict[int, dict[str, bool]] = {}
    for r in rows:
        index.setdefault(int(r["oneid"]), {})[r["audience_id"]] = bool(r["holdout"])
    return index
