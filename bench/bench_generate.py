"""Demo data generator throughput (pure numpy/pyarrow, no Spark)."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import Benchmark, Case
from oneid_demo import generate_demo

PEOPLE = 100_000


def cases(work: Path) -> list[Case]:
    out = work / "demo_data"

    def run() -> dict:
        shutil.rmtree(out, ignore_errors=True)
        manifest = generate_demo(out, people=PEOPLE, seed=42)
        rows = sum(manifest["rows"].values())
        return {"people": PEOPLE, "source_rows": rows}

    return [Case("oneid generate --people 100000", run, group="generate", baseline=True)]


BENCHMARK = Benchmark(
    name="generate",
    title="Demo data generator",
    description=f"`generate_demo` writing {PEOPLE:,} people (7 sources + truth) to local disk.",
    cases=cases,
    runs=3,
    warmup=1,
)
