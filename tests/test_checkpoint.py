"""Materialised frames keep a size estimate Spark can still do arithmetic on."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import functions as F

import oneid
from oneid.checkpoint import (
    ADAPTIVE,
    LARGEST_ESTIMATE,
    aggregated,
    counted,
    estimated_size,
    materialize,
)
from oneid.spark_settings import session_settings


def _grown(frame):
    """A self-join the optimiser estimates as the product of its sides."""
    same = F.col("x.a") == F.col("y.a")
    return frame.alias("x").join(frame.alias("y"), same).select("x.a", "x.b")


def test_a_loop_of_checkpointed_joins_keeps_a_bounded_estimate(spark):
    start = spark.range(50).select(F.col("id").alias("a"), (F.col("id") % 7).alias("b"))
    plain = start
    for _ in range(4):
        plain = _grown(plain).localCheckpoint(eager=True)
    assert estimated_size(plain) > LARGEST_ESTIMATE  # the hazard: the estimate compounds

    frame = start
    for _ in range(15):
        frame = materialize(_grown(frame))
        assert estimated_size(frame) <= LARGEST_ESTIMATE
    assert sorted(r.a for r in frame.collect()) == list(range(50))


def test_a_sane_estimate_is_kept(spark):
    frame = spark.range(10).select(F.col("id").alias("a"))
    done = materialize(frame)
    assert estimated_size(done) == estimated_size(frame.localCheckpoint(eager=True))
    assert done.count() == 10


def test_counted_checkpoints_and_counts_in_one_job_with_a_bounded_estimate(spark):
    scheduler = spark.sparkContext._jsc.sc().dagScheduler()
    frame = spark.range(1000).select((F.col("id") % 77).alias("a")).distinct()
    jobs = scheduler.nextJobId()
    done, size = counted(frame)
    assert scheduler.nextJobId() - jobs == 1 and size == 77
    assert done._jdf.queryExecution().analyzed().rdd().isCheckpointed()  # rows kept, no lineage
    assert sorted(r.a for r in done.collect()) == list(range(77))

    grown = spark.range(50).select(F.col("id").alias("a"), F.col("id").alias("b"))
    for _ in range(15):
        grown, size = counted(_grown(grown))
        assert estimated_size(grown) <= LARGEST_ESTIMATE and size == 50


def test_aggregated_checkpoints_and_aggregates_in_one_job(spark):
    scheduler = spark.sparkContext._jsc.sc().dagScheduler()
    frame = spark.range(1000).select((F.col("id") % 5).alias("a"))
    jobs = scheduler.nextJobId()
    done, figures = aggregated(frame, F.count(F.lit(1)), F.sort_array(F.collect_set("a")))
    assert scheduler.nextJobId() - jobs == 1
    assert (figures[0], figures[1]) == (1000, [0, 1, 2, 3, 4])
    assert done._jdf.queryExecution().analyzed().rdd().isCheckpointed()
    assert done.count() == 1000


def test_a_partitioned_checkpoint_is_grouped_by_its_keys_without_a_shuffle(spark):
    """Adaptive execution hides a plan's partitioning from its checkpoint; a partitioned one
    keeps it, so a grouping by the same keys reads it in place (and the setting is left on)."""
    frame = spark.range(200).select((F.col("id") % 9).alias("a"), "id").repartition(3, "a")
    with session_settings(spark, {ADAPTIVE: "true"}):  # as production runs
        for partitioned in (False, True):
            done, figures = aggregated(frame, F.count(F.lit(1)), partitioned=partitioned)
            assert spark.conf.get(ADAPTIVE) == "true" and figures[0] == 200
            grouped = done.groupBy("a").agg(F.sum("id").alias("s"))
            plan = grouped._jdf.queryExecution().executedPlan().toString()
            assert ("Exchange" in plan) is not partitioned, plan
            assert sorted(r.s for r in grouped.collect()) == sorted(
                sum(range(a, 200, 9)) for a in range(9)
            )


def test_checkpoints_keep_their_rows_serialised(spark):
    """Bytes in memory (then on disk), not an object per row for the collector to trace."""
    frame = spark.range(100).select((F.col("id") % 7).alias("a"))
    for done in (materialize(frame), counted(frame)[0]):
        level = done._jdf.queryExecution().analyzed().rdd().getStorageLevel()
        assert level.useMemory() and level.useDisk() and not level.deserialized()
        assert sorted(r.a for r in done.collect()) == sorted(i % 7 for i in range(100))


def test_the_library_checkpoints_only_through_materialize():
    library = Path(oneid.__file__).parent
    callers = [
        str(path.relative_to(library))
        for path in sorted(library.rglob("*.py"))
        if "localCheckpoint(" in path.read_text(encoding="utf-8")
    ]
    assert callers == ["checkpoint.py"]  # the one module that may (and is found by the scan)
