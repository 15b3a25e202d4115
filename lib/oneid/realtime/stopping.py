"""Stopping the realtime query between micro-batches, and quietly when it cannot be.

A stop first asks the sink to hold the next micro-batch before that batch runs any Spark job,
and stops the query while the batch waits there (the batch in progress, if any, finishes:
delivers, records, commits). The held batch then raises :class:`BatchStopped`: Spark takes an
error in ``foreachBatch`` for a stop only once the query is marked stopped. The batch's
offsets are logged but not committed, so the next start runs it again from the checkpoint, as
after a crash. An idle stream in processing-time mode still runs a (no-data) batch every
trigger, so one comes soon; only when none comes in time is the query stopped outright. That
marks the query stopped, cancels the job of the batch in progress and interrupts the stream's
thread; the batch's collect then fails (the job's cancellation, or an ``InterruptedException``
where the thread waited for the job: py4j runs the callback's JVM calls on that thread), and
that failure of a stopped query becomes a :class:`BatchStopped` too.

Why a short error of our own: Spark 4.1 decides whether an error raised in ``foreachBatch``
is a stop from its text, as it crossed from Python to the JVM. It first tries the regular
expression ``Py4JJavaError: An error occurred while calling((.|\\r\\n|\\r|\\n)*)(…)``, which
recurses once per character: on py4j's whole traceback of a cancelled or interrupted call
(~10k characters, the Java stack included) the stream thread died of a ``StackOverflowError``,
after py4j had logged the traceback at ERROR. Its second check wants
``org.apache.spark.SparkException``, ``cancelled`` and the query's job group (its run id) in the
text: :func:`stopped_batch` writes exactly that, in one line, and Spark ends the query as
stopped.
"""

from __future__ import annotations

import logging

SPARK_EXCEPTION = "org.apache.spark.SparkException"
NOT_STARTED = "not started: the query is stopping"
"""How a batch that waited in the sink for the query's stop is logged."""
STOPPED_OUTRIGHT = "cut short by the query's stop"
"""How a batch whose job or wait the query's stop ended is logged."""
PY4J_CALLBACKS = "py4j.clientserver"
"""The logger py4j reports a Python callback's exception on (at ERROR, with its traceback)."""


class BatchStopped(RuntimeError):
    """A micro-batch that the query's stop ended; the next start runs it again."""


def stopped_batch(batch_id: int, run_id: str, how: str) -> BatchStopped:
    """The error that ends the query at batch ``batch_id`` as Spark's stop check recognises
    it (the query's run ``run_id`` is its job group); ``how`` says what happened."""
    return BatchStopped(
        f"batch {batch_id} {how}; the next start runs it again "
        f"({SPARK_EXCEPTION}: job group {run_id} cancelled by the query's stop)"
    )


class StoppedBatchNotices(logging.Filter):
    """Drops py4j's ERROR report of a :class:`BatchStopped` (the sink logs one INFO line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, BatchStopped)


def quiet_stopped_batches() -> None:
    """Install :class:`StoppedBatchNotices` on py4j's callback logger (once per process)."""
    callbacks = logging.getLogger(PY4J_CALLBACKS)
    if not any(isinstance(f, StoppedBatchNotices) for f in callbacks.filters):
        callbacks.addFilter(StoppedBatchNotices())
