"""Shared setup for the identity benchmarks: demo data -> ingest -> standardize, once."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import CONF_DIR, with_demo_data

from oneid.conf import OneIdConfig, load_config
from oneid.ingest.job import ingest
from oneid.standardize.job import standardize
from oneid.tables import table_path
from oneid_demo import generate_demo

ROWS_PER_PERSON = 15.8  # generator 1.1 default mix


def size_label(records: int) -> str:
    """A benchmark's size in its name: 100000 -> 100k, 1000000 -> 1m."""
    if records >= 1_000_000 and records % 1_000_000 == 0:
        return f"{records // 1_000_000}m"
    return f"{records // 1000}k"


def config(warehouse: Path, data: Path, *extra: str) -> OneIdConfig:
    """The repo's conf on this warehouse and data, incremental at every size (what is timed)."""
    settings = [f"warehouse={warehouse}", "identity.incremental_min_identifiers=0", *extra]
    return with_demo_data(load_config("local", CONF_DIR, settings), data)


def prepared_silver(spark, work: Path, records: int) -> tuple[Path, int]:
    """Warehouse holding silver.* for ~``records`` source rows; returns (data dir, rows)."""
    data = work / "demo_data"
    people = max(100, round(records / ROWS_PER_PERSON))
    manifest = generate_demo(data, people=people, seed=42)
    cfg = config(work / "silver", data)
    ingest(spark, cfg, "bench-1")
    standardize(spark, cfg)
    return data, sum(manifest["rows"].values())


def fresh_warehouse(source: Path, target: Path, tables: tuple[str, ...]) -> None:
    """Copy the given zone folders (e.g. silver) into an empty warehouse."""
    shutil.rmtree(target, ignore_errors=True)
    for zone in tables:
        shutil.copytree(source / zone, target / zone)


__all__ = ["config", "fresh_warehouse", "prepared_silver", "size_label", "table_path"]
