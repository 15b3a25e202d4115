"""Runs that readers see whole or not at all, one writer per scope, and recovery after a kill.

Delta commits one table at a time, so a stage that writes several tables is made atomic as
readers see it by a journal under ``<warehouse>/_oneid/runs/<scope>/`` (see
``docs/reliability.md``):

1. the run takes the scope's lease (:mod:`oneid.leases`), and rolls back any unfinished run of
   the scope that a killed process left behind;
2. it writes a ``started`` entry naming the version of every table it may write (and, for
   tables it shares with other scopes, the predicate of its own rows);
3. it writes its tables; ``tables.read_table`` inside the run reads *other* scopes' tables at
   the versions their last complete run left (:func:`complete_versions`), never a run in
   progress or a killed one;
4. a ``committed`` entry naming the new versions is the run's commit point. On an error the run
   is rolled back at once (``RESTORE`` of each table to its version before, ``DELETE`` of its
   rows in shared tables) and ``failed`` is recorded; after a kill the next run of the scope,
   or any later run that finds the scope's lease stale, does the same.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig
from oneid.control_files import ControlFiles
from oneid.delta_log import latest_version
from oneid.errors import LeaseLostError
from oneid.leases import acquire, describe_lease, is_stale
from oneid.session import warehouse_root
from oneid.tables import PINS, table_path

logger = logging.getLogger(__name__)

STARTED, COMMITTED, FAILED, ROLLED_BACK = "started", "committed", "failed", "rolled_back"
ENDED = frozenset({COMMITTED, FAILED, ROLLED_BACK})
KEEP_ENTRIES = 50
"""Ended runs kept per scope in the journal (older entries are removed)."""


@dataclass(frozen=True)
class Entry:
    """One line of a scope's journal."""

    scope: str
    run: str
    label: str
    state: str
    at: float
    versions: dict[str, int] = field(default_factory=dict)
    """``started``: each table's version before the run (-1: did not exist); ``committed``:
    after it."""
    shared: dict[str, str] = field(default_factory=dict)
    """Tables shared with other scopes → SQL predicate of this run's rows in them."""


class Run:
    """The run in progress, as :func:`atomic_run` hands it to its block."""

    def __init__(self, files: ControlFiles, entry: Entry) -> None:
        self._files = files
        self.entry = entry

    @property
    def token(self) -> str:
        return self.entry.run

    def share(self, table: str, predicate: str) -> None:
        """Declare, before writing them, this run's rows of a table other scopes write too."""
        shared = {**self.entry.shared, table: predicate}
        self.entry = Entry(**{**asdict(self.entry), "shared": shared})
        _write(self._files, self.entry)


@contextmanager
def atomic_run(
    spark: SparkSession,
    cfg: OneIdConfig,
    scope: str,
    label: str,
    tables: Sequence[str],
    shared: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Run the block as one atomic run of ``scope`` writing ``tables`` (and its rows of
    ``shared``, see :meth:`Run.share`).

    An exception rolls the run back before it propagates; if it has a callable attribute
    ``record_after_rollback``, that is called next, still under the lease (a failed gate
    records why it failed). Anything that is not an ``Exception`` (a kill, simulated in tests)
    leaves the run for the next one to roll back.
    """
    files = ControlFiles(spark, warehouse_root(cfg))
    conf = cfg.pipeline.runs
    lease = acquire(files, scope, label, conf.lease_seconds, conf.wait_seconds)
    try:
        recover(spark, cfg, files, scope)
        recover_others(spark, cfg, files, scope, conf.lease_seconds)
        pins = complete_versions(files, exclude=scope)
        before = {name: latest_version(spark, table_path(cfg, name)) for name in tables}
        entry = Entry(scope, lease.token, label, STARTED, time.time(), before, dict(shared or {}))
        _write(files, entry)
        run = Run(files, entry)
    except BaseException:
        lease.release()
        raise
    pinned = PINS.set(pins)
    try:
        yield run
    except Exception as exc:
        PINS.reset(pinned)
        try:
            _roll_back(spark, cfg, files, run.entry, FAILED)
            record: Callable[[], None] | None = getattr(exc, "record_after_rollback", None)
            if record is not None:
                record()
        finally:
            lease.release()
        raise
    except BaseException:
        PINS.reset(pinned)
        lease.abandon()  # as if killed: the next run of the scope rolls this one back
        raise
    else:
        PINS.reset(pinned)
        if not lease.held():
            lease.abandon()  # the file is the new holder's: leave it
            raise LeaseLostError(
                f"{label}: the lease of {scope} expired unrenewed and was taken over before the "
                "run could commit; its writes are rolled back by the run that took it (see "
                "`oneid runs`): run it again"
            )
        after = {name: latest_version(spark, table_path(cfg, name)) for name in tables}
        _write(files, Entry(scope, run.token, label, COMMITTED, time.time(), after))
        lease.release()
        _prune(files, scope)


def recover(spark: SparkSession, cfg: OneIdConfig, files: ControlFiles, scope: str) -> list[str]:
    """Roll back the unfinished runs of ``scope`` (call it holding the scope's lease)."""
    done = []
    for run in unfinished(files, scope):
        logger.warning("%s: rolling back unfinished run %s (%s)", scope, run.label, run.run)
        _roll_back(spark, cfg, files, run, ROLLED_BACK)
        done.append(run.label)
    return done


def recover_others(
    spark: SparkSession, cfg: OneIdConfig, files: ControlFiles, scope: str, seconds: float
) -> None:
    """Roll back other scopes' unfinished runs whose holder is gone, before anything else runs,
    so that readers outside OneID do not see them either."""
    for other in _scopes(files):
        if other == scope or not _unfinished(_names(files, other)) or not is_stale(files, other):
            continue
        try:
            lease = acquire(files, other, f"recovery by {scope}", seconds)
        except Exception:  # taken meanwhile: its own run recovers it
            continue
        try:
            recover(spark, cfg, files, other)
        finally:
            lease.release()


def complete_versions(files: ControlFiles, exclude: str | None = None) -> dict[str, int]:
    """Every table's version as the last complete run of the scope that writes it left it
    (-1: no complete run has created it yet).

    That is the version named by the scope's last ``committed`` entry, or, while a run of the
    scope is unfinished (running, or killed and not rolled back yet), the version it started
    from.
    """
    pins: dict[str, int] = {}
    for scope in _scopes(files):
        if scope == exclude:
            continue
        names = _names(files, scope)
        last = _last(names, frozenset({COMMITTED}))
        for name in ([last] if last else []) + _unfinished(names):
            pins.update(_read(files, scope, name).versions)
    return pins


@dataclass(frozen=True)
class _Name:
    """What a journal file's name tells without reading it: ``<ms>-<run>-<state>.json``."""

    file: str
    run: str
    state: str


def _names(files: ControlFiles, scope: str) -> list[_Name]:
    """The entries of ``scope`` by file name, oldest first (no file is read)."""
    names = []
    for file in files.names(_folder(files, scope)):
        parts = file.removesuffix(".json").split("-", 2)
        if file.endswith(".json") and len(parts) == 3 and parts[0].isdigit():
            names.append((int(parts[0]), parts[2] != STARTED, _Name(file, parts[1], parts[2])))
    return [
        name for *_, name in sorted(names, key=lambda n: n[:2])
    ]  # journals written before names were strictly increasing: a tie puts started first


def _read(files: ControlFiles, scope: str, name: _Name) -> Entry:
    entry = _read_if_present(files, scope, name)
    if entry is None:
        raise FileNotFoundError(f"{_folder(files, scope)}/{name.file}")
    return entry


def _read_if_present(files: ControlFiles, scope: str, name: _Name) -> Entry | None:
    text = files.read(f"{_folder(files, scope)}/{name.file}")
    return None if text is None else Entry(**json.loads(text))


def journal(files: ControlFiles, scope: str) -> list[Entry]:
    """The entries of ``scope``, oldest first (without those a run pruned as they were read)."""
    entries = (_read_if_present(files, scope, name) for name in _names(files, scope))
    return [entry for entry in entries if entry is not None]


def unfinished(files: ControlFiles, scope: str) -> list[Entry]:
    """The runs of ``scope`` that started and have not ended (oldest first)."""
    names = _names(files, scope)
    return [_read(files, scope, name) for name in _unfinished(names)]


def _unfinished(names: list[_Name]) -> list[_Name]:
    ended = {name.run for name in names if name.state in ENDED}
    return [name for name in names if name.state == STARTED and name.run not in ended]


def _last(names: list[_Name], states: frozenset[str]) -> _Name | None:
    return next((name for name in reversed(names) if name.state in states), None)


def status(files: ControlFiles) -> list[str]:
    """One line per scope: its last ended run, unfinished runs and lease holder."""
    lines = []
    for scope in _scopes(files):
        names = _names(files, scope)
        parts = []
        last = _last(names, ENDED)
        if last:
            entry = _read(files, scope, last)
            parts.append(f"last {entry.state} {entry.label} at {_clock(entry.at)}")
        for name in _unfinished(names):
            run = _read(files, scope, name)
            parts.append(f"unfinished {run.label} since {_clock(run.at)}")
        held = describe_lease(files, scope)
        parts.append(f"held by {held}" if held else "free")
        lines.append(f"{scope}: " + "; ".join(parts))
    return lines


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _roll_back(
    spark: SparkSession, cfg: OneIdConfig, files: ControlFiles, run: Entry, state: str
) -> None:
    """Put every table of ``run`` back as it was before it, then record ``state``."""
    for name, before in run.versions.items():
        path = table_path(cfg, name)
        now = latest_version(spark, path)
        if now == before:
            continue
        if before < 0:
            files.delete(path, recursive=True)
        else:
            spark.sql(f"RESTORE TABLE delta.`{path}` TO VERSION AS OF {before}")
        logger.warning("%s: %s back to version %d (was %d)", run.scope, name, before, now)
    for name, predicate in run.shared.items():
        if latest_version(spark, table_path(cfg, name)) >= 0:
            spark.sql(f"DELETE FROM delta.`{table_path(cfg, name)}` WHERE {predicate}")
    _write(files, Entry(run.scope, run.run, run.label, state, time.time()))


def _write(files: ControlFiles, entry: Entry) -> None:
    """The entry under a name that sorts after every entry of its scope: its time in ms, or
    one ms after the last entry's when the clock has not moved on (a run ending and the next
    starting in one ms would otherwise sort by state, not by order). One writer per scope: the
    scope's lease holder."""
    names = files.names(_folder(files, entry.scope))
    last = max((int(n.split("-", 1)[0]) for n in names if n.split("-", 1)[0].isdigit()), default=-1)
    ms = max(int(entry.at * 1000), last + 1)
    name = f"{ms:015d}-{entry.run}-{entry.state}.json"
    files.replace(f"{_folder(files, entry.scope)}/{name}", json.dumps(asdict(entry)))


def _folder(files: ControlFiles, scope: str) -> str:
    return files.path("_oneid", "runs", scope)


def _scopes(files: ControlFiles) -> list[str]:
    return files.names(files.path("_oneid", "runs"))


def _prune(files: ControlFiles, scope: str) -> None:
    """Keep the last :data:`KEEP_ENTRIES` ended runs of ``scope`` in its journal."""
    names = _names(files, scope)
    ended_runs = list(dict.fromkeys(name.run for name in names if name.state in ENDED))
    committed = _last(names, frozenset({COMMITTED}))
    old = set(ended_runs[:-KEEP_ENTRIES]) - {committed.run if committed else ""}  # pins' entry
    for name in names:
        if name.run in old:
            files.delete(f"{_folder(files, scope)}/{name.file}")
