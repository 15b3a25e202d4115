"""Materialise an intermediate DataFrame once, without carrying a runaway size estimate.

``localCheckpoint`` keeps the checkpointed plan's estimated size (SPARK-39834), and without
cost-based optimisation Spark estimates a join as the product of its sides' sizes. A loop of
checkpoints over joins (components rounds, weak merges, closures) therefore multiplies the
estimate's digits every round: on a 160-node graph the weak merges ran out of a 2 GB heap in
round 13 multiplying those numbers (SPARK-52163, still open in Spark 4.1). A checkpoint whose
estimate has left the range of a long is given Spark's default estimate instead.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

LARGEST_ESTIMATE = 2**63 - 1
"""Spark's own default estimate (``spark.sql.defaultSizeInBytes``): a long's largest value."""


def materialize(frame: DataFrame) -> DataFrame:
    """``frame`` computed now into executor storage (``localCheckpoint(eager=True)``)."""
    return _bounded(frame.localCheckpoint(eager=True))


def counted(frame: DataFrame) -> tuple[DataFrame, int]:
    """``frame`` materialised as :func:`materialize` does, and its row count, in one Spark job:
    the count computes the rows of the lazy checkpoint, which keeps them (an eager checkpoint
    counts them too, but drops the number, so a count after it is a second job)."""
    done = frame.localCheckpoint(eager=False)
    size = done.count()
    return _bounded(done), size


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
