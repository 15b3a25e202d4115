"""Shared test helpers (one place; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from oneid.conf import OneIdConfig, load_config
from oneid.conf.pipeline import SMALL_DATA_SPARK
from oneid.spark_settings import session_settings

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SHUFFLE_PARTITIONS = 1
"""The tests' shuffle partitions (the session's and every test conf's): the suite's data is
tiny, and each partition is a task of every shuffle (the suite took 0.89–0.95× the time of two;
docs/performance.md). Several partitions are still tested where it matters: the shared demo
warehouse shuffles in two (:func:`shuffle_partitions`), the cluster run in two against the
local run's one, publish's files and a republish with other counts."""


def small_config(warehouse: Path | str, *extra: str) -> OneIdConfig:
    """The repo's local conf, scaled down for tests: local[2], :data:`SHUFFLE_PARTITIONS`, UI
    off, the small-data settings of ``oneid demo`` (:data:`~oneid.conf.pipeline.SMALL_DATA_SPARK`);
    ``tests/test_cluster.py`` runs the pipeline with production's settings."""
    cfg = load_config(
        "local",
        CONF_DIR,
        [
            f"warehouse={warehouse}",
            "spark.master=local[2]",
            f"spark.shuffle_partitions={SHUFFLE_PARTITIONS}",
            "spark.driver_memory=3g",
            "spark.ui=false",
            *extra,
        ],
    )
    spark = cfg.env.spark.model_copy(update={"extra": {**SMALL_DATA_SPARK, **cfg.env.spark.extra}})
    return cfg.model_copy(update={"env": cfg.env.model_copy(update={"spark": spark})})


def shuffle_partitions(spark, partitions: int) -> AbstractContextManager[None]:
    """The session's ``spark.sql.shuffle.partitions`` set to ``partitions`` while the block
    runs (the tests' default: :data:`SHUFFLE_PARTITIONS`)."""
    return session_settings(spark, {"spark.sql.shuffle.partitions": str(partitions)})


def with_demo_data(cfg: OneIdConfig, folder: Path, **pipeline_updates) -> OneIdConfig:
    """``cfg`` with the repo's source declarations (which read ``./demo_data``) pointed at the
    demo data in ``folder``; ``pipeline_updates`` replace other pipeline sections."""
    pipeline = cfg.pipeline.with_demo_data(str(folder)).model_copy(update=pipeline_updates)
    return cfg.model_copy(update={"pipeline": pipeline})


def config_for(folder: Path, pipeline: dict, *extra: str) -> OneIdConfig:
    """A local conf with its own warehouse under ``folder`` and the given pipeline section."""
    import yaml

    conf_dir = folder / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "pipeline.yaml").write_text(
        yaml.safe_dump(pipeline, allow_unicode=True), encoding="utf-8"
    )
    env = {
        "mode": "local",
        "pipeline": "pipeline.yaml",
        "warehouse": str(folder / "warehouse"),
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": SHUFFLE_PARTITIONS,
            "driver_memory": "2g",
            "extra": SMALL_DATA_SPARK,
        },
        "secrets": {"allow_demo_key": True},
    }
    (conf_dir / "local.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    return load_config("local", conf_dir, list(extra))


def parse_values(
    spark, values: list[str], column: dict, aliases: dict[str, str] | None = None
) -> dict:
    """raw value -> (parsed, problem) by the field rules of ingest / standardize, for a column
    declared as ``column`` in a source read in Asia/Shanghai (parsed is None with a problem)."""
    from pyspark.sql import functions as F

    from oneid.conf.pipeline import ColumnConf
    from oneid.ingest.fields import field_problem, parse_field

    conf = ColumnConf(field="v", **column)
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    parsed = parse_field(F.col("v"), conf, "Asia/Shanghai", aliases or {})
    problem = field_problem(F.col("v"), conf, "Asia/Shanghai", aliases or {})
    out = frame.select("v", F.when(problem.isNull(), parsed).alias("parsed"), problem.alias("p"))
    return {r.v: (r.parsed, r.p) for r in out.collect()}


def delta_records(
    path: str | Path, *, version: int | None = None, drop: Collection[str] = ()
) -> list[dict]:
    """A Delta table's rows (at ``version``, else the latest), read without Spark (delta-rs),
    ``drop`` columns left out; maps as sorted lists of entries (see :func:`canonical`)."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    # QueryBuilder reads deletion vectors (identity tables have them); to_pyarrow_table does not
    table = DeltaTable(str(path), version=version)
    query = QueryBuilder().register("t", table).execute("SELECT * FROM t")
    rows = pa.table(query.read_all())
    keep = [name for name in rows.column_names if name not in drop]
    return [canonical(row) for row in rows.select(keep).to_pylist()]


def canonical(value):
    """Maps (pyarrow gives lists of key-value tuples) compare as sets of entries: their order
    is that of the rows that built them, which differs with partitioning. Arrays keep order."""
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if items and all(isinstance(item, tuple) for item in value):
            return sorted(items, key=lambda entry: json.dumps(entry, default=str))
        return items
    if isinstance(value, tuple):
        return tuple(canonical(item) for item in value)
    return value


def as_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (an owner that is gone)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def last_write(spark, cfg: OneIdConfig, name: str) -> str:
    """The operation of the table's last commit, as :func:`oneid.tables.operation_name` names
    it (``WRITE Append``, ``WRITE Overwrite``, ``MERGE``)."""
    from oneid.delta_log import commit_info, latest_version
    from oneid.tables import operation_name, table_path

    path = table_path(cfg, name)
    return operation_name(commit_info(spark, path, latest_version(spark, path)))


@dataclass(frozen=True)
class RealtimeNotes:
    """What ``oneid demo``'s realtime replay reported (:func:`realtime_notes`)."""

    replayed: int
    read: int
    processed: int
    quarantined: int
    triggers: dict[str, int]
    """Triggers by status (``sent``, ``capped``, ``quiet``, ...)."""
    pushes: int
    pushes_on_oneids: int
    clean: bool
    """No bad signature, no repeated push, and no wave the replay stopped waiting for."""


def realtime_notes(text: str) -> RealtimeNotes:
    """The figures of the realtime replay's notes (``oneid.realtime.demo``) in ``text``."""
    replayed = int(re.search(r"^realtime: replayed (\d+) app events", text, re.M)[1])
    counts = r"^realtime: read (\d+) = processed (\d+) \(late \d+\) \+ quarantined (\d+)"
    read, processed, quarantined = map(int, re.search(counts, text, re.M).groups())
    line = text.split("triggers: ")[1].splitlines()[0]
    triggers = {status: int(n) for status, n in re.findall(r"(\w+) (\d+)", line)}
    pushes, on_oneids = map(
        int, re.search(r"receiver: (\d+) pushes \((\d+) on OneIDs", text).groups()
    )
    clean = "0 bad, 0 repeats" in text and "stopped waiting" not in text
    return RealtimeNotes(replayed, read, processed, quarantined, triggers, pushes, on_oneids, clean)
