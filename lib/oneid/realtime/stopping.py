"""A micro-batch whose Spark job the query's stop cancelled ends as a stop, quietly.

``query.stop()`` cancels the job that ``foreachBatch`` is running. The ``Py4JJavaError`` that the
sink then raises reaches the JVM as the Python traceback, Java stack included (~10k
characters). Spark 4.1 recognises a stop in that text with the regular expression
``Py4JJavaError: An error occurred while calling((.|\\r\\n|\\r|\\n)*)(…)``, which recurses once per
character: on a message that long the stream thread dies of a ``StackOverflowError``, after
py4j has logged the traceback at ERROR.

The sink raises :class:`BatchStopped` instead: one line, without that prefix, naming the
cancelled job as Spark's second check wants it (``org.apache.spark.SparkException``,
``cancelled`` and the query's run id, its job group). Spark then ends the query as stopped.
The batch is not committed either way: the next start runs it again from the checkpoint.
"""

from __future__ import annotations

import logging

from py4j.protocol import Py4JJavaError

SPARK_EXCEPTION = "org.apache.spark.SparkException"
PY4J_CALLBACKS = "py4j.clientserver"
"""The logger py4j reports a Python callback's exception on (at ERROR, with its traceback)."""


class BatchStopped(RuntimeError):
    """A micro-batch whose Spark job the query's stop cancelled."""


def cancelled_job(error: Py4JJavaError) -> str | None:
    """The cancelled job's ``SparkException`` (``Class: message``) in ``error``'s chain of
    Java causes, or None when no job was cancelled."""
    throwable = error.java_exception
    seen = 0
    while throwable is not None and seen < 20:  # a cause chain is short; never loop forever
        text = str(throwable.toString())
        if text.startswith(SPARK_EXCEPTION + ":") and "cancelled" in text:
            return text.splitlines()[0]
        throwable = throwable.getCause()
        seen += 1
    return None


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
