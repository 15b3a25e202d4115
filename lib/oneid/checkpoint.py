"""Materialise an intermediate DataFrame once, without carrying a runaway size estimate.

``localCheckpoint`` keeps the checkpointed plan's estimated size (SPARK-39834), and without
cost-based optimisation Spark estimates a join as the product of its sides' sizes. A loop of
checkpoints over joins (components rounds, weak merges, closures) therefore multiplies the
estimate's digits every round: on a 160-node graph the weak merges ran out of a 2 GB heap in
round 13 multiplying those numbers (SPARK-52163, still open in Spark 4.1). A checkpoint whose
estimate has left the range of a long is given Spark's default estimate instead.

Checkpoints keep their rows serialised (:data:`STORAGE`): a full identity run at 5M source
rows holds tens of millions of checkpointed rows, and as row objects on the heap they cost the
throughput collector 25-54 s a run; serialised, ~9 s (docs/performance.md).

A checkpoint can keep the partitioning its plan leaves (``partitioned=True``): a later grouping
by the same keys then reads it without a shuffle. Adaptive execution hides a plan's partitioning
from its checkpoint (it may change the partition count), so such a checkpoint is planned
without it.
"""

from __future__ import annotations

from contextlib import nullcontext

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

from oneid.spark_settings import session_settings

ADAPTIVE = "spark.sql.adaptive.enabled"
LARGEST_ESTIMATE = 2**63 - 1
"""Spark's own default estimate (``spark.sql.defaultSizeInBytes``): a long's largest value."""
STORAGE = StorageLevel(True, True, False, False, 1)
"""Memory, then disk, serialised: a few byte arrays per block for the collector to trace, not
an object per row (Scala's ``MEMORY_AND_DISK_SER``; pyspark's own name for it is
``MEMORY_AND_DISK``)."""


def materialize(frame: DataFrame) -> DataFrame:
    """``frame`` computed now into executor storage (``localCheckpoint(eager=True)``)."""
    return _bounded(frame.localCheckpoint(eager=True, storageLevel=STORAGE))


def counted(frame: DataFrame) -> tuple[DataFrame, int]:
    """``frame`` materialised as :func:`materialize` does, and its row count, in one Spark job:
    the count computes the rows of the lazy checkpoint, which keeps them (an eager checkpoint
    counts them too, but drops the number, so a count after it is a second job)."""
    done, figures = aggregated(frame, F.count(F.lit(1)))
    return done, int(figures[0])


def aggregated(
    frame: DataFrame, *aggregates: Column, partitioned: bool = False
) -> tuple[DataFrame, Row]:
    """``frame`` materialised as :func:`materialize` does, and ``aggregates`` over all its rows
    (one row), in one Spark job, as :func:`counted` does for a count.

    ``partitioned``: the checkpoint keeps the partitioning of ``frame``'s plan (module doc).
    """
    planning = nullcontext()
    if partitioned:
        planning = session_settings(frame.sparkSession, {ADAPTIVE: "false"})
        frame = frame.select("*")  # a new plan: ``frame`` may hold one planned adaptively
    with planning:  # a checkpoint plans its query when it is made, even a lazy one
        done = frame.localCheckpoint(eager=False, storageLevel=STORAGE)
    (figures,) = done.agg(*aggregates).collect()
    return _bounded(done), figures


def _bounded(done: DataFrame) -> DataFrame:
    """A checkpointed frame, with Spark's default size estimate when its own overflowed."""
    if estimated_size(done) <= LARGEST_ESTIMATE:
        return done
    session = done.sparkSession
    execution = done._jdf.queryExecution()
    fresh = session._jsparkSession.internalCreateDataFrame(
        execution.toRdd(), done._jdf.schema(), False
    )
    return ClassicDataFrame(fresh, session)


def estimated_size(frame: DataFrame) -> int:
    """The optimiser's estimate of ``frame``'s size in bytes."""
    return int(str(frame._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
