"""Runs that survive kills and concurrency: a kill after any commit of any stage leaves readers
on the last complete run, and the re-run ends exactly where an uninterrupted run ends.

A small demo (two batches: the first part file of every source, then the rest) is run through
every stage, and each stage's second run is watched: after each of its commits the warehouse
is copied as it is at that moment, which is what a ``kill -9`` right after that commit leaves
on disk (the copy's lease names a run of this process that has since ended, so it is stale,
as a killed process's lease is). For each copy the test checks what readers see, then either
re-runs the stage and compares with the uninterrupted run, or (before the last commit of the
longer stages, to keep the suite short) rolls it back as the re-run does first and checks that
every table is as the run found it: a re-run from there is the uninterrupted run itself. The
roll-back is checked after the first commit and the last one before the re-runs
(:func:`rolled_back_kills`); the kills in between have their readers checked.
Tables are compared as rows read without Spark (delta-rs); what a stage's run reads through
``read_table`` is checked with Spark after the last commit, when every pinned table matters.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from argparse import Namespace
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from oneid.atomic import complete_versions, journal, recover
from oneid.conf import OneIdConfig
from oneid.control_files import ControlFiles
from oneid.errors import StageBusyError
from oneid.identity.job import IDENTITY_TABLES
from oneid.leases import acquire
from oneid.publish.job import PUBLISH_LOG, exports_root
from oneid.session import warehouse_root
from oneid.stages import registered_stages
from oneid.standardize.job import STANDARDIZE_TABLES
from oneid.tables import COMMIT_HOOKS, PINS, read_table_or_none, table_path, union_all
from tests.support import as_json, delta_records, small_config, with_demo_data

pytestmark = pytest.mark.slow  # every test reads the chain: each stage's run killed at each commit

DAYS = (dt.date(2025, 6, 29), dt.date(2025, 6, 30))
VOLATILE = {"finished_at", "published_at", "_ingested_at", "standardized_at"}
"""Columns that hold the wall-clock time of a write."""
SOURCE = "crm_members"
ARGS = {
    "ingest": {"batch_id": "b2", "source": [SOURCE], "replay": False},
    "standardize": {"full": False},
    "identity": {"run_id": "r2", "full": False},
    "tags": {"as_of": DAYS[1], "date_from": None, "date_to": None},
    "audiences": {"as_of": DAYS[1], "explain": None},
    "publish": {"as_of": DAYS[1], "destination": [], "replace": False},
}
"""The second run of each stage, the one that is killed."""
RERUN_EVERY_COMMIT = {"ingest", "audiences"}
"""Stages re-run after every kill; the others after the last (the most advanced kill), and
publish also before its last commit (every export installed, none logged)."""


def rolled_back_kills(rerun_from: int) -> set[int]:
    """Kills of the other stages that are rolled back, as a re-run does first: after the first
    commit (one table to restore, the others untouched) and after the last commit before the
    re-runs (every table but the last to restore). A roll-back restores each table the same
    way whatever else was committed, so the kills in between have their readers checked only
    (each roll-back is a Spark restore of every table committed so far)."""
    return {1, rerun_from - 1}


LABELS = {
    "standardize": "standardize",
    "identity": "identity run r2",
    "tags": f"tags {DAYS[1]}",
    "publish": f"publish {DAYS[1]}",
}
"""How the journal names the second run of the others."""
SHARED = {"ops.ingest_runs"}
"""Written by every source, read by ingest only under the source's lease (after recovery)."""


def stage_run(spark, cfg: OneIdConfig, stage: str, **args) -> None:
    [chosen] = [s for s in registered_stages() if s.name == stage]
    chosen.run(spark, cfg, Namespace(**args))


def scope_of(stage: str) -> str:
    return f"ingest.{SOURCE}" if stage == "ingest" else stage


def tables_of(stage: str, cfg: OneIdConfig) -> list[str]:
    from oneid.audiences.tables import CHANGES, MEMBERSHIP, STATS
    from oneid.tags.job import SUMMARY_TABLE
    from oneid.tags.tables import tag_tables

    return {
        "ingest": [f"bronze.{SOURCE}", f"quarantine.{SOURCE}", "ops.ingest_runs"],
        "standardize": list(STANDARDIZE_TABLES),
        "identity": list(IDENTITY_TABLES),
        "tags": [*tag_tables(cfg.pipeline.tags), SUMMARY_TABLE],
        "audiences": [MEMBERSHIP, CHANGES, STATS],
        "publish": [PUBLISH_LOG],
    }[stage]


@dataclass
class Chain:
    """The demo warehouse before, during (after each commit) and after each stage's second run."""

    data: Path
    before: dict[str, Path] = field(default_factory=dict)
    killed: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)
    """stage → (table just committed, the warehouse as a kill right then leaves it), in order."""
    after: dict[str, Path] = field(default_factory=dict)

    def cfg(self, warehouse: Path) -> OneIdConfig:
        cfg = small_config(warehouse)
        demo = cfg.pipeline.demo.model_copy(update={"as_of": DAYS})
        return with_demo_data(cfg, self.data, demo=demo)

    def copy(self, state: Path, target: Path) -> OneIdConfig:
        shutil.copytree(state, target)
        return self.cfg(target)


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    from oneid_demo import generate_demo

    root = tmp_path_factory.mktemp("reliability")
    data = root / "demo_data"
    generate_demo(data, people=160, seed=11, chunk_people=80)
    later = root / "later"
    for part in sorted((data / "sources").glob("*/part-*")):
        if not part.name.startswith("part-00000"):
            (later / part.parent.name).mkdir(parents=True, exist_ok=True)
            part.rename(later / part.parent.name / part.name)
    chain = Chain(data)
    warehouse = root / "warehouse"
    cfg = chain.cfg(warehouse)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_HMAC_KEY", raising=False)
        stage_run(spark, cfg, "ingest", batch_id="b1", source=[], replay=False)
        stage_run(spark, cfg, "standardize", full=False)
        stage_run(spark, cfg, "identity", run_id="r1", full=False)
        stage_run(spark, cfg, "tags", as_of=DAYS[0], date_from=None, date_to=None)
        stage_run(spark, cfg, "audiences", as_of=DAYS[0], explain=None)
        stage_run(spark, cfg, "publish", as_of=DAYS[0], destination=[], replace=False)
        for folder in later.iterdir():
            for part in folder.iterdir():
                part.rename(data / "sources" / folder.name / part.name)
        for stage, args in ARGS.items():
            chain.before[stage] = _copy(warehouse, root / f"{stage}-before")
            chain.killed[stage] = []

            def kill_here(table: str, stage: str = stage) -> None:
                n = len(chain.killed[stage]) + 1
                chain.killed[stage].append((table, _copy(warehouse, root / f"{stage}-killed-{n}")))

            with on_commit(kill_here):
                stage_run(spark, cfg, stage, **args)
            chain.after[stage] = _copy(warehouse, root / f"{stage}-after")
            if stage == "ingest":
                stage_run(
                    spark, cfg, "ingest", batch_id="b2", source=[], replay=False
                )  # the others
    return chain


def _copy(warehouse: Path, target: Path) -> Path:
    shutil.copytree(warehouse, target)
    return target


@contextmanager
def on_commit(action: Callable[[str], None]) -> Iterator[None]:
    """``action(table)`` after each commit while the block runs."""
    COMMIT_HOOKS.append(action)
    try:
        yield
    finally:
        COMMIT_HOOKS.remove(action)


def contents(
    cfg: OneIdConfig, tables: list[str], versions: dict[str, int] | None = None
) -> dict[str, list[str] | None]:
    """Each table's rows (wall-clock columns left out) as sorted JSON, at ``versions`` when
    given (-1: no table yet), read without Spark (delta-rs); None: no table."""
    out: dict[str, list[str] | None] = {}
    for name in tables:
        path = Path(table_path(cfg, name))
        version = (versions or {}).get(name)
        if version == -1 or not (path / "_delta_log").is_dir():
            out[name] = None
            continue
        rows = delta_records(path, version=version, drop=VOLATILE)
        if name == "identity.run_stats":  # a Delta version number: a roll-back moves it on
            for row in rows:
                row["metrics"] = [e for e in row["metrics"] if e[0] != "incidence_version"]
        out[name] = sorted(as_json(row) for row in rows)
    return out


def as_readers_see(spark, cfg: OneIdConfig, tables: list[str]) -> dict[str, list[str] | None]:
    """Each table's rows as any stage's run reads them (``read_table``, each scope's last
    complete run), through Spark, as sorted JSON; None: no table. One Spark job."""
    token = PINS.set(complete_versions(ControlFiles(spark, warehouse_root(cfg))))
    try:
        return spark_contents(spark, cfg, tables)
    finally:
        PINS.reset(token)


def spark_contents(spark, cfg: OneIdConfig, tables: list[str]) -> dict[str, list[str] | None]:
    out: dict[str, list[str] | None] = {}
    frames = []
    for name in tables:
        frame = read_table_or_none(spark, cfg, name)
        if frame is None:
            out[name] = None
            continue
        out[name] = []
        kept = frame.drop(*[c for c in frame.columns if c in VOLATILE])
        if name == "identity.run_stats":
            kept = kept.withColumn(
                "metrics", F.map_filter("metrics", lambda k, _: k != "incidence_version")
            )
        frames.append(kept.select(F.lit(name).alias("t"), F.to_json(F.struct("*")).alias("r")))
    if frames:
        for row in union_all(frames).collect():
            out[row.t].append(row.r)
    return {name: None if rows is None else sorted(rows) for name, rows in out.items()}


def pinned(spark, cfg: OneIdConfig) -> dict[str, int]:
    """The version of each table a stage's run reads (each scope's last complete run)."""
    return complete_versions(ControlFiles(spark, warehouse_root(cfg)))


def exports(cfg: OneIdConfig) -> dict[str, str]:
    root = exports_root(cfg)
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def roll_back(spark, cfg: OneIdConfig, scope: str) -> list[str]:
    """What a run of ``scope`` does first: take the lease, roll back unfinished runs."""
    files = ControlFiles(spark, warehouse_root(cfg))
    lease = acquire(files, scope, "test recovery", seconds=60)
    try:
        return recover(spark, cfg, files, scope)
    finally:
        lease.release()


@pytest.mark.parametrize("stage", list(ARGS))
def test_a_kill_after_any_commit_leaves_the_last_complete_run_and_the_rerun_converges(
    spark, chain: Chain, tmp_path: Path, stage: str
) -> None:
    tables = tables_of(stage, chain.cfg(tmp_path))
    before = contents(chain.cfg(chain.before[stage]), tables)
    reference = chain.cfg(chain.after[stage])
    expected = contents(reference, tables)
    killed = chain.killed[stage]
    assert expected != before, "the run under test must change its tables"
    assert len(killed) >= 2, killed
    shown = [name for name in tables if name not in SHARED]

    last = len(killed) - 1 if stage == "publish" else len(killed)
    for n, (table, state) in enumerate(killed, 1):
        where = f"{stage} killed after commit {n} of {len(killed)} ({table})"
        seen = contents(chain.cfg(state), shown, pinned(spark, chain.cfg(state)))
        assert seen == {name: before[name] for name in shown}, where
        if n == len(killed):  # every table written by now: read_table reads them as pinned
            was = spark_contents(spark, chain.cfg(chain.before[stage]), shown)
            assert as_readers_see(spark, chain.cfg(state), shown) == was, where
        if stage in RERUN_EVERY_COMMIT or n >= last:
            cfg = chain.copy(state, tmp_path / f"killed-{n}")
            stage_run(spark, cfg, stage, **ARGS[stage])
            assert contents(cfg, tables) == expected, where
            if stage == "publish":
                assert exports(cfg) == exports(reference), where
        elif n in rolled_back_kills(last):
            cfg = chain.copy(state, tmp_path / f"killed-{n}")
            assert roll_back(spark, cfg, scope_of(stage)) == [LABELS[stage]], where
            assert contents(cfg, tables) == before, where


ARGS_LABEL = {
    "identity": "identity run r2",
    "tags": f"tags {DAYS[1]}",
    "standardize": "standardize",
}


def test_a_kill_then_a_later_run_mints_no_oneid_twice(spark, chain: Chain, tmp_path: Path) -> None:
    """Killed after every commit but the journal's, then a run under another id: its gates pass,
    every identifier gets the OneID the killed run would have given it, lineage is there once."""
    _, state = chain.killed["identity"][-1]
    cfg = chain.copy(state, tmp_path / "killed")
    stage_run(spark, cfg, "identity", run_id="r3", full=False)
    reference = chain.cfg(chain.after["identity"])
    assert oneids(spark, cfg) == oneids(spark, reference)
    lineage = read_table_or_none(spark, cfg, "identity.oneid_changes")
    before = read_table_or_none(spark, reference, "identity.oneid_changes")
    columns = [c for c in lineage.columns if c != "run_id"]
    assert lineage.where("run_id = 'r2'").isEmpty()
    assert sorted(lineage.where("run_id = 'r3'").select(*columns).collect()) == sorted(
        before.where("run_id = 'r2'").select(*columns).collect()
    )
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    assert [(r.run_id, r.passed) for r in stats.orderBy("finished_at").collect()] == [
        ("r1", True),
        ("r3", True),
    ]
    files = ControlFiles(spark, str(tmp_path / "killed"))
    states = [entry.state for entry in journal(files, "identity")]
    assert states[-4:] == ["started", "rolled_back", "started", "committed"]


def oneids(spark, cfg: OneIdConfig) -> list[tuple[str, str, str]]:
    """(id type, keyed hash, OneID) of every identifier."""
    mapping = read_table_or_none(spark, cfg, "identity.oneid_map")
    return sorted(tuple(row) for row in mapping.select("id_type", "value_hash", "oneid").collect())


def test_oneid_runs_shows_what_a_kill_left_and_the_next_run_clears_it(
    spark, chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oneid.cli import main

    _, state = chain.killed["audiences"][-1]
    cfg = chain.copy(state, tmp_path / "killed")
    assert main(["runs", "--set", f"warehouse={tmp_path / 'killed'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    [audiences] = [line for line in lines if line.startswith("audiences:")]
    assert f"last committed audiences {DAYS[0]} at " in audiences
    assert f"unfinished audiences {DAYS[1]} since " in audiences
    assert f"held by audiences {DAYS[1]} (pid " in audiences and audiences.endswith("(stale)")
    assert any(line.startswith("identity: last committed identity run r2") for line in lines)

    stage_run(spark, cfg, "audiences", **ARGS["audiences"])
    assert main(["runs", "--set", f"warehouse={tmp_path / 'killed'}"]) == 0
    [audiences] = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("audiences:")
    ]
    assert audiences.startswith(f"audiences: last committed audiences {DAYS[1]} at ")
    assert audiences.endswith("; free") and "unfinished" not in audiences


@contextmanager
def held_at_first_commit(
    thread: str | None = None, table: str | None = None
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the first commit made by the thread named ``thread`` (or to ``table``) until
    ``release`` is set; ``reached`` is set when it gets there."""
    reached, release = threading.Event(), threading.Event()

    def hook(name: str) -> None:
        ours = threading.current_thread().name == thread if thread else name == table
        if ours and not reached.is_set():
            reached.set()
            release.wait(300)

    COMMIT_HOOKS.append(hook)
    try:
        yield reached, release
    finally:
        release.set()
        COMMIT_HOOKS.remove(hook)


def in_thread(name: str, action) -> tuple[threading.Thread, list]:
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:  # reported to the test through outcome
            outcome.append(exc)

    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread, outcome


def test_a_second_identity_run_refuses_while_one_runs(spark, chain: Chain, tmp_path: Path) -> None:
    cfg = chain.copy(chain.before["identity"], tmp_path / "warehouse")
    tables = tables_of("identity", cfg)
    with held_at_first_commit(thread="first") as (reached, release):
        first, outcome = in_thread(
            "first", lambda: stage_run(spark, cfg, "identity", run_id="r2", full=False)
        )
        assert reached.wait(300)
        with pytest.raises(StageBusyError, match=r"identity is being written by identity run r2"):
            stage_run(spark, cfg, "identity", run_id="r2b", full=False)
        release.set()
        first.join(600)
    assert outcome == [None]
    alone = contents(chain.cfg(chain.after["identity"]), tables)
    assert contents(cfg, tables) == alone  # no duplicate row, no lineage twice


def test_one_source_has_one_writer_and_other_sources_ingest_meanwhile(
    spark, chain: Chain, tmp_path: Path
) -> None:
    cfg = chain.copy(chain.before["ingest"], tmp_path / "warehouse")
    with held_at_first_commit(table=f"bronze.{SOURCE}") as (reached, release):
        first, outcome = in_thread(
            "first",
            lambda: stage_run(spark, cfg, "ingest", batch_id="b2", source=[SOURCE], replay=False),
        )
        assert reached.wait(300)
        with pytest.raises(StageBusyError, match=rf"ingest.{SOURCE} is being written by"):
            stage_run(spark, cfg, "ingest", batch_id="b3", source=[SOURCE], replay=False)
        stage_run(spark, cfg, "ingest", batch_id="b2", source=["orders"], replay=False)
        release.set()
        first.join(600)
    assert outcome == [None]
    runs = read_table_or_none(spark, cfg, "ops.ingest_runs").where("batch_id <> 'b1'")
    assert sorted((r.source, r.batch_id) for r in runs.collect()) == [
        (SOURCE, "b2"),
        ("orders", "b2"),
    ]
    stage_run(spark, cfg, "ingest", batch_id="b3", source=[SOURCE], replay=False)  # none left
    assert [r.batch_id for r in runs.where(f"source = '{SOURCE}'").collect()] == ["b2"]
