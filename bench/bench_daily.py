"""A day's batch through ingest -> standardize -> identity, against the three stages in full.

``ONEID_BENCH_DAILY_RECORDS`` sets the size (source rows, default 1,000,000). The demo is
generated in 100 chunks of people; the day's batch is the last chunk's part files: the newest
1% of people with all their rows, and the late rows of the people before them (rows that
arrive a day late join OneIDs that already exist). The conf is the repository's, as a user
runs it: identity picks full or incremental by ``identity.incremental_min_identifiers``.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import CONF_DIR, with_demo_data

from harness import Benchmark, Case
from identity_common import ROWS_PER_PERSON, size_label
from oneid.conf import OneIdConfig, load_config
from oneid.identity.job import resolve_identities
from oneid.ingest.job import ingest
from oneid.session import build_session
from oneid.standardize.job import standardize
from oneid_demo import generate_demo

RECORDS = int(os.environ.get("ONEID_BENCH_DAILY_RECORDS", "1000000"))
CHUNKS = 100
"""The demo is written in this many chunks of people; the day's batch is the last one."""


def cases(work: Path) -> list[Case]:
    data = work / "demo_data"
    people = max(CHUNKS, round(RECORDS / ROWS_PER_PERSON))
    chunk_people = math.ceil(people / CHUNKS)
    manifest = generate_demo(data, people=people, seed=42, chunk_people=chunk_people)
    rows = sum(manifest["rows"].values())
    held = work / "held"
    day_files = _day_files(data, held, last_chunk=math.ceil(people / chunk_people) - 1)
    day_rows = _rows_in(day_files, manifest)
    counter = itertools.count()

    def config(warehouse: Path) -> OneIdConfig:
        return with_demo_data(load_config("local", CONF_DIR, [f"warehouse={warehouse}"]), data)

    base = work / "base"
    spark = build_session(config(base), job="bench-daily")
    chain(spark, config(base), "base", full=True)  # the state before the day (99%)
    _move(day_files, held, data)
    targets: dict[str, Path] = {}

    def place(case: str, state: Path | None) -> None:
        """A new warehouse for ``case``: a copy of ``state`` or empty (untimed)."""
        shutil.rmtree(targets.get(case, work / "none"), ignore_errors=True)
        targets[case] = target = work / f"{case}-{next(counter)}"
        if state is not None:
            shutil.copytree(state, target)

    def run(case: str, full: bool) -> Callable[[], dict]:
        def timed() -> dict:
            return {"source_rows": rows, **chain(spark, config(targets[case]), case, full)}

        return timed

    return [
        Case(
            "ingest + standardize + identity, all the data (--full)",
            run("full", full=True),
            group="daily",
            baseline=True,
            setup=lambda: place("full", None),
        ),
        Case(
            f"the day's batch ({day_rows:,} rows) after the 99% state",
            run("day", full=False),
            group="daily",
            setup=lambda: place("day", base),
        ),
    ]


def chain(spark, cfg: OneIdConfig, run_id: str, full: bool) -> dict:
    """The three stages on ``cfg``'s warehouse: each stage's seconds and what it did."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    reports = ingest(spark, cfg, f"bench-{run_id}")
    seconds["ingest"] = time.perf_counter() - started
    started = time.perf_counter()
    report = standardize(spark, cfg, full=full)
    seconds["standardize"] = time.perf_counter() - started
    started = time.perf_counter()
    result = resolve_identities(spark, cfg, run_id, full=full)
    seconds["identity"] = time.perf_counter() - started
    return {
        **{f"{stage}_s": round(value, 1) for stage, value in seconds.items()},
        "ingested": sum(r.rows_read for r in reports),
        "standardize": report.mode.split(":")[0],
        "identity": "full" if result.full else "incremental",
        "changed_records": result.stats["changed_records"],
        "changes": result.changes,
    }


def _day_files(data: Path, held: Path, last_chunk: int) -> list[Path]:
    """Move the last chunk's part files (and the late rows after it) to ``held``: the day's
    batch, relative paths under ``data``."""
    last = {f"part-{last_chunk:05d}", f"part-{last_chunk + 1:05d}"}
    day = sorted(
        path.relative_to(data)
        for path in (data / "sources").glob("*/part-*")
        if path.name.split(".")[0] in last
    )
    _move(day, data, held)
    return day


def _move(files: list[Path], source: Path, target: Path) -> None:
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).rename(target / name)


def _rows_in(files: list[Path], manifest: dict) -> int:
    """Source rows in ``files``, from the generator's manifest."""
    rows = {entry["path"]: entry["rows"] for entry in manifest["files"]}
    return sum(rows[str(name)] for name in files)


BENCHMARK = Benchmark(
    name=f"daily_{size_label(RECORDS)}",
    title=f"A day's batch through ingest, standardize and identity at ~{RECORDS:,} source rows",
    description=(
        f"Demo data of ~{RECORDS:,} source rows generated in {CHUNKS} chunks of people. The "
        "full case runs ingest, `standardize --full` and `identity --full` on all of it in a "
        "new warehouse. The daily case starts from the warehouse those three stages left on "
        "the first 99 chunks (copied into place, untimed) and runs the same three stages, "
        "incremental, on the last chunk's files: the newest 1% of people with all their rows "
        "and the late rows of the people before them. The repository's local conf as a user "
        "runs it (identity is incremental only from `identity.incremental_min_identifiers`)."
    ),
    cases=cases,
    runs=int(os.environ.get("ONEID_BENCH_RUNS", "2")),
    warmup=int(os.environ.get("ONEID_BENCH_WARMUP", "1")),
)
