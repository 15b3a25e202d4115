"""Where a local session's JVM spends its CPU, by kind of thread, with async-profiler.

async-profiler's Linux jar from Maven Central holds its native library and its Java API; the
jar goes on the driver's class path, the library is loaded into the running JVM, and CPU time
is sampled (``itimer``: every thread that runs, every 10 ms of CPU) between :meth:`start` and
:meth:`stop`. The samples are summed by kind (:func:`kind`): the JIT compilers, the garbage
collector, tasks, the DAG scheduler and the driver's threads. Four of the driver's costs are
counted apart: Delta's file listing for a query's scans, Delta's commits, Spark's check that a
job's function serialises (it serialises the function and all it holds, and reads its
class's bytecode), and serialised copies of the Hadoop configuration (~1,000 entries, each
one's source gzipped on its own). A sample counts once, under the first of these that its
stack holds, in that order; the DAG scheduler's own copies of the configuration stay in its
kind. A development tool (``bench/spark_jobs.py --cpu``).
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from oneid.conf.models import JarsConf
from oneid.jars import resolve_configured, write_atomically

VERSION = "4.2"
JAR = f"tools.profiler:async-profiler:{VERSION}:linux-x64"
INTERVAL_MS = 10
KINDS = (
    "JIT C2",
    "JIT C1",
    "GC",
    "tasks",
    "driver: Delta files for scans",
    "driver: Delta commits",
    "driver: closure checks",
    "driver: Hadoop conf copies",
    "driver: the rest",
    "DAG scheduler",
    "other",
)


def profiler_jar(jars: JarsConf) -> Path:
    """async-profiler's Linux x64 jar, resolved as the session's jars are (``jars.*``: the
    repositories, folders and checksum-verified cache)."""
    return resolve_configured([JAR], jars, "async-profiler")[0]


def kind(stack: str) -> str:
    """The :data:`KINDS` entry of one collapsed stack (its first frame names the thread)."""
    thread = stack.split(";", 1)[0]
    if thread.startswith("[C2 Compiler"):
        return "JIT C2"
    if thread.startswith("[C1 Compiler"):
        return "JIT C1"
    if thread.startswith(("[GC Thread", "[VM Thread", "[G1 ")):
        return "GC"
    if thread.startswith("[Executor task launch"):
        return "tasks"
    if thread.startswith("[dag-scheduler"):
        return "DAG scheduler"
    if thread.startswith(("[Thread-", "[main ")):  # py4j's threads run the driver's calls
        if "DataSkippingReaderBase.filesForScan" in stack:
            return "driver: Delta files for scans"
        if "OptimisticTransactionImpl.commit" in stack:
            return "driver: Delta commits"
        if "ClosureCleaner" in stack:
            return "driver: closure checks"
        if "SerializableConfiguration" in stack or "conf/Configuration.write" in stack:
            return "driver: Hadoop conf copies"
        return "driver: the rest"
    return "other"


@dataclass(frozen=True)
class CpuSeconds:
    """CPU seconds by :data:`KINDS`."""

    by_kind: Counter[str]

    @classmethod
    def of(cls, collapsed: str) -> CpuSeconds:
        seconds: Counter[str] = Counter()
        for line in collapsed.splitlines():
            stack, _, samples = line.rpartition(" ")
            if stack:
                seconds[kind(stack)] += int(samples) * INTERVAL_MS / 1000
        return cls(seconds)

    def format(self) -> str:
        total = sum(self.by_kind.values())
        shown = [f"{k} {self.by_kind[k]:.1f}" for k in KINDS if self.by_kind[k] >= 0.05]
        return f"{total:.1f} s: " + ", ".join(shown)


class Profiler:
    """async-profiler loaded into a session's driver JVM (its jar on the driver's class path)."""

    def __init__(self, spark, jar: Path) -> None:
        library = jar.parent / f"libasyncProfiler-{VERSION}.so"
        if not library.exists():
            with zipfile.ZipFile(jar) as archive:
                write_atomically(library, archive.read("linux-x64/libasyncProfiler.so"))
        jvm = spark.sparkContext._jvm
        self._profiler = jvm.one.profiler.AsyncProfiler.getInstance(str(library))
        self._samples = jvm.one.profiler.Counter.SAMPLES

    def start(self) -> None:
        self._profiler.execute(f"start,event=itimer,interval={INTERVAL_MS}ms,threads")

    def stop(self) -> CpuSeconds:
        self._profiler.stop()
        return CpuSeconds.of(self._profiler.dumpCollapsed(self._samples))
