"""Where a small run's fixed cost goes: Spark jobs and JVM time per stage and per OneID line.

Runs every registered stage on generated demo data in one local session (the tests' settings)
and counts, for each call from Python into the JVM, the Spark jobs it started and how long it
took, charged to the innermost two frames of ``oneid`` code that made it; per stage it also
counts the jobs Delta starts for itself (a file listing for each scan of a query, a snapshot's
state after a commit)::

    .venv/bin/python bench/spark_jobs.py --people 300 [--top 40] [--set KEY=VALUE ...]
        [--conf KEY=VALUE ...] [--java OPTIONS] [--rounds N] [--cpu]

``--set`` takes Spark SQL settings to try (e.g. ``spark.sql.shuffle.partitions=1``), set on the
session; ``--conf`` settings the session must start with (e.g. ``spark.hadoop.*``);
``--java`` options for the driver JVM after the usual ones (``-XX:TieredStopAtLevel=1``);
``--rounds`` runs the stages that many times in the same session, each into a new warehouse
(later rounds show a warm JVM; the per-line figures are the last round's); ``--cpu`` samples
the driver JVM's threads during each stage with async-profiler (its jar from Maven Central, in
the jar cache) and prints where the JVM's CPU went (:mod:`cpu_profile`). Numbers vary by
~30% with the machine's state over a day: compare settings or commits side by side.
A development tool: it wraps py4j's call method for the length of the run. The per-stage
figures are exact; per line they are approximate where calls overlap (ingest takes its sources
in threads: a call is charged the jobs any thread started while it ran, and a call made while
another thread's call is open is not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import py4j.java_gateway

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "lib"), str(REPO), str(REPO / "demo")]

import cpu_profile  # noqa: E402  (bench/, beside this file)


class JobCounter:
    """Charges each py4j call's Spark jobs and seconds to the ``oneid`` frames that made it."""

    def __init__(self, next_job_id: Callable[[], int]) -> None:
        self.jobs: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._next_job_id = next_job_id
        self._inside = False
        self._call = py4j.java_gateway.JavaMember.__call__

    def __enter__(self) -> JobCounter:
        counter, call = self, self._call

        def counted_call(member, *args):
            if counter._inside:
                return call(member, *args)
            counter._inside = True
            try:
                first, started = counter._next_job_id(), time.perf_counter()
                try:
                    return call(member, *args)
                finally:
                    seconds = time.perf_counter() - started
                    jobs = counter._next_job_id() - first
                    if jobs or seconds > 0.2:
                        site = _site()
                        counter.jobs[site] += jobs
                        counter.seconds[site] += seconds
            finally:
                counter._inside = False

        py4j.java_gateway.JavaMember.__call__ = counted_call
        return self

    def __exit__(self, *exc: object) -> None:
        py4j.java_gateway.JavaMember.__call__ = self._call


def delta_jobs(spark, job_ids: range) -> str:
    """How many of the jobs Delta started for itself: listing a table's files for a query's scan
    ("Delta: Filtering files for query") or computing a snapshot's state after a commit; their
    descriptions start with "Delta:". Read from the status store, which keeps the last
    ``spark.ui.retainedJobs`` (1,000) jobs: jobs it no longer has are reported, not guessed."""
    from py4j.protocol import Py4JJavaError

    store = spark.sparkContext._jsc.sc().statusStore()
    found = missing = 0
    for job_id in job_ids:
        try:
            description = store.job(job_id).description()
        except Py4JJavaError:  # NoSuchElementException: the store dropped the job
            missing += 1
            continue
        found += description.isDefined() and str(description.get()).startswith("Delta:")
    return f"{found} Delta's own" + (f", {missing} no longer kept" if missing else "")


def _site() -> str:
    frame, found = sys._getframe(2), []
    while frame is not None and len(found) < 2:
        name = frame.f_code.co_filename
        if "/oneid/" in name and not name.endswith("/session.py"):
            short = name.split("/oneid/", 1)[1]
            found.append(f"{short}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(found) or "(not OneID code)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--java", default="", metavar="OPTIONS")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpu", action="store_true", help="the JVM's CPU per stage, by kind")
    args = parser.parse_args()

    from tests.support import small_config, with_demo_data

    from oneid.session import build_session
    from oneid.stages import demo_label, registered_stages
    from oneid_demo import generate_demo

    root = Path(tempfile.mkdtemp(prefix="oneid-jobs-"))
    try:
        generate_demo(root / "demo_data", people=args.people, seed=42)
        settings = dict(setting.split("=", 1) for setting in args.conf)
        profiler_jar = cpu_profile.profiler_jar(small_config(root).env.jars) if args.cpu else None
        if profiler_jar is not None:
            settings["spark.driver.extraClassPath"] = str(profiler_jar)
        os.environ.pop("ONEID_HMAC_KEY", None)  # the demo key (the local conf allows it)
        spark = None
        for round_ in range(1, args.rounds + 1):
            cfg = with_demo_data(
                small_config(root / f"warehouse-{round_}", "demo.as_of=[2025-06-30]"),
                root / "demo_data",
            )
            spark_conf = cfg.env.spark.model_copy(
                update={"extra": {**cfg.env.spark.extra, **settings}}
            )
            cfg = cfg.model_copy(update={"env": cfg.env.model_copy(update={"spark": spark_conf})})
            if spark is None:
                spark = build_session(cfg, job="spark-jobs", java_options=args.java)
                for setting in args.set:
                    key, value = setting.split("=", 1)
                    spark.conf.set(key, value)
                scheduler = spark.sparkContext._jsc.sc().dagScheduler()
                profiler = cpu_profile.Profiler(spark, profiler_jar) if profiler_jar else None
            print(f"round {round_}")
            with JobCounter(scheduler.nextJobId) as counter:
                total = time.perf_counter()
                for stage in registered_stages():
                    for stage_args in stage.demo_args(cfg):
                        first, started = scheduler.nextJobId(), time.perf_counter()
                        if profiler is not None:
                            profiler.start()
                        stage.run(spark, cfg, stage_args)
                        seconds, last = time.perf_counter() - started, scheduler.nextJobId()
                        cpu = profiler.stop() if profiler is not None else None
                        print(
                            f"{demo_label(stage, stage_args)[:56]:56s} "
                            f"{seconds:6.1f} s {last - first:5d} jobs "
                            f"({delta_jobs(spark, range(first, last))})"
                        )
                        if cpu is not None:
                            print(f"{'':4s}JVM CPU {cpu.format()}")
                print(f"{'stages':56s} {time.perf_counter() - total:6.1f} s\n")
        for site, seconds in counter.seconds.most_common(args.top):
            print(f"{seconds:7.1f} s {counter.jobs[site]:5d} jobs  {site}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
