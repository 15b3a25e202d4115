"""Tags over 1M and 10M orders: ``oneid tags`` in full, its RFM part alone, and DuckDB.

Input is synthesised directly (``tags_data``: numpy, seeded) rather than run through ingest and
identity: silver facts and the identity tables as Delta tables in a bench warehouse, and the
same rows as plain Parquet files for DuckDB. Cases, interleaved:

- ``oneid tags`` (``run_tags``): the whole registry of conf/tags.yaml for one as-of date, every
  ``gold.tags_*`` table and the summary written;
- Spark RFM aggregates only: the registry's orders aggregates that DuckDB also computes, through
  the library's own ``attribute_facts`` + ``compute_tags``, read from the Parquet files DuckDB
  reads and written as Parquet (like for like);
- DuckDB (``tags_duckdb``) computing the same RFM aggregates, in its own process.

Before timing, one round of every case runs as the warm-up and its outputs are compared: DuckDB,
the RFM-only Spark case and the ``gold.tags_*`` tables must agree on every RFM column of every
OneID (and on a sample read back without Spark), or the benchmark fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from harness import Benchmark, Case
from oneid.conf import OneIdConfig, load_config
from oneid.session import build_session
from oneid.tables import overwrite, read_table
from oneid.tags.compute import compute_tags
from oneid.tags.facts import attribute_facts
from oneid.tags.job import run_tags
from tags_data import Manifest, synthesise
from tags_duckdb import RFM_COLUMNS

HERE = Path(__file__).resolve().parent
CONF_DIR = HERE.parent / "conf"
AS_OF = dt.date(2025, 6, 30)
SPARK_SETTINGS = ("spark.master=local[2]", "spark.shuffle_partitions=8", "spark.driver_memory=6g")
FACT_TABLES = ("orders", "events", "contacts")
SAMPLE = 2000


class BenchmarkCheckError(AssertionError):
    """The engines disagree: the benchmark's numbers would compare different results."""


def config(warehouse: Path) -> OneIdConfig:
    return load_config("local", CONF_DIR, [f"warehouse={warehouse}", *SPARK_SETTINGS])


def load_warehouse(spark: SparkSession, cfg: OneIdConfig, data: Path) -> None:
    """The Parquet inputs as silver.* and identity.* Delta tables (untimed)."""
    for name in FACT_TABLES:
        overwrite(spark.read.parquet(str(data / name)), cfg, f"silver.{name}")
    overwrite(spark.read.parquet(str(data / "record_oneid")), cfg, "identity.record_oneid")
    overwrite(spark.read.parquet(str(data / "profiles")), cfg, "identity.profiles")


def spark_rfm(spark: SparkSession, cfg: OneIdConfig, data: Path, out: Path) -> None:
    """The registry's RFM aggregates alone, from the Parquet files DuckDB reads."""
    full = cfg.pipeline.tags
    registry = full.model_copy(
        update={"definitions": tuple(t for t in full.definitions if t.name in RFM_COLUMNS)}
    )
    orders = spark.read.parquet(str(data / "orders"))
    owners = spark.read.parquet(str(data / "record_oneid"))
    oneids = spark.read.parquet(str(data / "profiles"))
    facts = {"orders": attribute_facts(orders, owners, registry, "orders", AS_OF)}
    tags = compute_tags(oneids, facts, registry, AS_OF)
    tags.write.mode("overwrite").parquet(str(out))


def duckdb_rfm(data: Path, out: Path, time_zone: str) -> dict:
    """DuckDB in its own process; returns its in-process seconds and peak RSS."""
    command = [sys.executable, str(HERE / "tags_duckdb.py"), str(data), str(out)]
    command += [AS_OF.isoformat(), time_zone]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"DuckDB case failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gold_rfm(spark: SparkSession, cfg: OneIdConfig) -> DataFrame:
    """RFM columns of the as-of partition of gold.tags_value and gold.tags_rfm."""
    day = F.col("dt") == F.lit(AS_OF)
    value = read_table(spark, cfg, "gold.tags_value").where(day)
    rfm = read_table(spark, cfg, "gold.tags_rfm").where(day)
    in_value = [c for c in RFM_COLUMNS if c in value.columns and c not in rfm.columns]
    in_rfm = [c for c in RFM_COLUMNS if c in rfm.columns]
    return value.select("oneid", *in_value).join(rfm.select("oneid", *in_rfm), "oneid")


def check_agree(name: str, expected: DataFrame, actual: DataFrame) -> int:
    """Every OneID in both, every RFM column equal (NULL-safe); returns the OneIDs compared."""
    a = expected.select(
        "oneid", F.lit(True).alias("e_"), *(F.col(c).alias(f"e_{c}") for c in RFM_COLUMNS)
    )
    b = actual.select(
        "oneid", F.lit(True).alias("a_"), *(F.col(c).alias(f"a_{c}") for c in RFM_COLUMNS)
    )
    joined = a.join(b, "oneid", "full_outer")
    same = F.col("e_").isNotNull() & F.col("a_").isNotNull()
    for c in RFM_COLUMNS:
        same = same & F.col(f"e_{c}").eqNullSafe(F.col(f"a_{c}").cast(expected.schema[c].dataType))
    row = joined.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(~same, 1)).alias("bad")).first()
    if row["bad"]:
        examples = [r.asDict() for r in joined.where(~same).limit(3).collect()]
        raise BenchmarkCheckError(
            f"{name}: {row['bad']} of {row['n']} OneIDs differ on RFM columns, e.g. {examples}"
        )
    return int(row["n"])


def check_sample(spark_rows: list, duck_file: Path) -> int:
    """The sample's rows as DuckDB wrote them (read by DuckDB, not Spark) equal Spark's."""
    expected = {row["oneid"]: tuple(row[c] for c in RFM_COLUMNS) for row in spark_rows}
    ids = ", ".join(str(i) for i in expected)
    columns = ", ".join(RFM_COLUMNS)
    query = f"SELECT oneid, {columns} FROM read_parquet('{duck_file}') WHERE oneid IN ({ids})"
    with duckdb.connect() as con:
        got = {row[0]: tuple(row[1:]) for row in con.execute(query).fetchall()}
    wrong = {k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v}
    if wrong or len(got) != len(expected):
        example = next(iter(wrong.items()), None)
        raise BenchmarkCheckError(
            f"sample of {len(expected)} OneIDs: {len(wrong)} differ (Spark, DuckDB): {example}"
        )
    return len(expected)


def sample_ids(manifest: Manifest, all_ids: DataFrame) -> list[int]:
    """~SAMPLE OneIDs picked by hash, plus the heaviest buyers and some non-buyers."""
    total = all_ids.count()
    picked = all_ids.where(F.abs(F.xxhash64("oneid")) % max(1, total // SAMPLE) == 0)
    ids = [r["oneid"] for r in picked.limit(SAMPLE).collect()]
    return sorted({*ids, *manifest.heaviest_oneids, *manifest.non_buyer_oneids})


def tags_cases(orders: int):
    def cases(work: Path) -> list[Case]:
        data = work / "parquet"
        manifest = synthesise(data, orders)
        cfg = config(work / "warehouse")
        spark = build_session(cfg, job=f"bench-tags-{orders}")
        load_warehouse(spark, cfg, data)
        time_zone = cfg.pipeline.tags.time_zone
        duck_out, spark_out = work / "duckdb_rfm.parquet", work / "spark_rfm"
        facts = manifest.orders + manifest.events + manifest.contacts

        def full() -> dict:
            report = run_tags(spark, cfg, [AS_OF])
            return {
                "oneids": report.tables["gold.tags_rfm"],
                "facts": facts,
                "tables": len(report.tables),
            }

        def rfm_only() -> dict:
            spark_rfm(spark, cfg, data, spark_out)
            return {"source_rows": manifest.orders}

        def duck() -> dict:
            result = duckdb_rfm(data, duck_out, time_zone)
            return {
                "source_rows": manifest.orders,
                "in_process_s": round(result["seconds"], 2),
                "peak_rss_bytes": result["peak_rss_bytes"],
            }

        # warm-up round, then the correctness guard on its outputs
        duck(), rfm_only()
        duck_frame = spark.read.parquet(str(duck_out))
        full()
        gold = gold_rfm(spark, cfg)
        checked = check_agree("gold.tags_* vs DuckDB", duck_frame, gold)
        check_agree("Spark RFM-only vs DuckDB", duck_frame, spark.read.parquet(str(spark_out)))
        ids = sample_ids(manifest, duck_frame.select("oneid"))
        sampled = check_sample(gold.where(F.col("oneid").isin(ids)).collect(), duck_out)
        verified = {"agree_oneids": checked, "agree_sample": sampled}

        def duck_verified() -> dict:
            return {**duck(), **verified}

        return [
            Case("DuckDB: RFM aggregates (own process)", duck_verified, group="rfm", baseline=True),
            Case("Spark: RFM aggregates only (compute_tags)", rfm_only, group="rfm"),
            Case(
                "oneid tags: full registry, all tables written", full, group="tags", baseline=True
            ),
        ]

    return cases


def _benchmark(label: str, orders: int, runs: int) -> Benchmark:
    oneids = orders // 5
    return Benchmark(
        name=f"tags_{label}",
        title=f"Tags over {orders:,} orders",
        description=(
            f"Synthetic silver facts (numpy, seeded; `bench/tags_data.py`): {orders:,} orders "
            f"over 18 months for {oneids:,} OneIDs (85% buyers, 1-3 orders for most, a long "
            "tail; 1% of orders without a OneID), ~3 app events per order, one contact per "
            "OneID, as Delta tables for Spark and the same orders as Parquet for DuckDB. "
            "`oneid tags` is `run_tags` for one as-of date: the whole registry of "
            "conf/tags.yaml (33 tags, 4 tag tables + summary written as Delta partitions). "
            "The RFM cases compute the same 11 columns (first/last order date, paid orders and "
            "net amount in 30/90/365 days, recency, frequency, monetary) per OneID from the "
            "same Parquet files joined to record_oneid, written as Parquet: Spark through the "
            "library's `compute_tags` with the registry cut to those tags, DuckDB in SQL. "
            "Spark: the project's `build_session`, local[2], 8 shuffle partitions, 6g driver; "
            "DuckDB: 2 threads."
        ),
        cases=tags_cases(orders),
        runs=int(os.environ.get("ONEID_BENCH_RUNS", runs)),
        warmup=0,
        notes=[
            "Warm-up: one round of every case before timing; its outputs are the ones checked "
            "(agree_oneids: DuckDB = Spark RFM-only = gold.tags_* on every RFM column of every "
            "OneID; agree_sample: a sample incl. the heaviest buyers and non-buyers read back "
            "with DuckDB). A mismatch fails the benchmark.",
            "Group rfm is like for like: same Parquet files, same 11 columns per OneID, Parquet "
            "out. Group tags is the whole `oneid tags` run.",
            "Peak RSS: the Spark cases share one JVM whose heap grows and is not returned, so "
            "their figure is the JVM's high-water mark so far (driver Python + JVM), not what "
            "the smaller case alone needs. The DuckDB case runs in its own process and reports "
            "that process's peak RSS (VmHWM); its time includes starting Python and "
            "importing DuckDB (in_process_s is the query alone).",
            "2-core machine, nothing else running while these were measured unless a note "
            "below says otherwise; seconds are still noisy, ratios come from interleaved runs.",
        ],
    )


BENCHMARKS = [
    _benchmark("1m", 1_000_000, runs=3),
    _benchmark("10m", 10_000_000, runs=2),
]
BENCHMARK = BENCHMARKS[0]
