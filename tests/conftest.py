"""One SparkSession for the whole test run, built by the project's own session factory; one
demo warehouse (the whole pipeline on the default demo data) shared by the end-to-end tests;
the tests that ``make test-fast`` leaves out are marked, and a run names those it should."""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark import SparkContext

from oneid.conf import OneIdConfig
from oneid.stages import DemoRun
from tests.support import shuffle_partitions, small_config, with_demo_data

DEMO_PEOPLE = 5000  # the default demo: the identity accuracy targets are stated for it
LEFT_OUT_OF_FAST = frozenset({"slow", "e2e", "cluster"})
"""Markers of the tests ``make test-fast`` leaves out."""
MARK_SLOW_OVER_SECONDS = 15.0
"""A test outside those markers that takes longer (setup, call and teardown) is named at the end
of the run, to be marked ``slow``. The marker says over ~10 s on 2 cores: the margin keeps a
noisy machine from naming a borderline test."""
WARM_UP_SECONDS = 60.0
"""Tests that end within this long of the test session's start are not named: the JVM is still
warming up (a test that takes 8 s later in the run took 33 s as the first on Spark)."""
_unmarked_seconds: defaultdict[str, float] = defaultdict(float)
_warm_up_tests: set[str] = set()
_warming_until = [0.0]
"""Until when (``time.time()``) the test session's JVM is warming up; 0: not started yet."""


@pytest.fixture(scope="session")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> OneIdConfig:
    return small_config(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def spark(cfg: OneIdConfig):
    from oneid.session import build_session

    session = build_session(cfg, job="tests", run_id="tests")
    _warming_until[0] = time.time() + WARM_UP_SECONDS
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def _release_between_modules():
    """After each module, release Python's cycles of DataFrames (and the JVM objects they pin)
    and Delta's cache of table logs, which keeps every table the module read: the test
    session's JVM lives for the whole run, and most modules' tables are never read again (a
    module on the shared demo warehouse re-reads its logs; docs/performance.md, the test
    suite)."""
    yield
    gc.collect()
    context = SparkContext._active_spark_context
    if context is not None:
        context._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on loopback for the run (stopped at the end)."""
    from oneid.serve.local_redis import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def hdfs_url(cfg: OneIdConfig, tmp_path_factory: pytest.TempPathFactory):
    """A real HDFS on loopback for the run (``hdfs://localhost:PORT``; stopped at the end)."""
    from tests.hdfs_support import mini_hdfs

    with mini_hdfs(cfg, tmp_path_factory.mktemp("hdfs")) as url:
        yield url


@dataclass(frozen=True)
class DemoWarehouse:
    """The default demo run through every stage, as `make demo` runs it."""

    cfg: OneIdConfig
    manifest: dict
    truth: pd.DataFrame
    root: Path
    run: DemoRun


@pytest.fixture(scope="session")
def demo(spark, tmp_path_factory) -> DemoWarehouse:
    import pyarrow.parquet as pq

    from oneid.stages import run_demo_stages
    from oneid_demo import generate_demo

    root = tmp_path_factory.mktemp("demo")
    manifest = generate_demo(root / "demo_data", people=DEMO_PEOPLE, seed=42)
    # the repo's own source declarations, pointed at this run's data folder
    cfg = with_demo_data(small_config(root / "warehouse"), root / "demo_data")
    # the suite's largest data shuffles in two partitions (the session: SHUFFLE_PARTITIONS)
    with pytest.MonkeyPatch.context() as patch, shuffle_partitions(spark, 2):
        patch.delenv("ONEID_HMAC_KEY", raising=False)  # local conf allows the demo key
        run = run_demo_stages(spark, cfg)
    truth = pq.read_table(root / "demo_data" / "truth" / "records.parquet").to_pandas()
    return DemoWarehouse(cfg, manifest, truth, root, run)


SHARED_WORKER = {
    "test_demo_downstream": "demo",
    "test_demo_pipeline": "demo",
    "test_notebook": "demo",
    "test_cluster": "package",
    "test_deploy": "package",
}
"""Modules that share a pytest-xdist worker (under ``pytest -n 2``): those on the shared demo
warehouse, so it is built once, and the two that build the package into ``dist/``. Every other
module is a unit of its own, so its module fixtures are built once."""


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole modules per worker, grouped by ``SHARED_WORKER`` (pytest-xdist's own
    ``xdist_group`` marks are not honoured under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(Path(module).stem, module)

    return ModuleGroups(config, log)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"leave out the tests marked {', '.join(sorted(LEFT_OUT_OF_FAST))} (make test-fast)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The demo group first (it is the longest), then the package group; a module that uses
    the demo warehouse must be listed in ``SHARED_WORKER``. With ``--fast``, the tests marked
    as ``LEFT_OUT_OF_FAST`` are deselected."""
    for item in items:
        module = Path(item.module.__file__).stem
        if "demo" in item.fixturenames and SHARED_WORKER.get(module) != "demo":
            raise pytest.UsageError(f"{module} uses the demo warehouse: add it to SHARED_WORKER")
    if config.getoption("fast"):
        kept, left_out = [], []
        for item in items:
            (kept if LEFT_OUT_OF_FAST.isdisjoint(item.keywords) else left_out).append(item)
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = kept
    order = {"demo": 0, "package": 1}
    items.sort(key=lambda item: order.get(SHARED_WORKER.get(Path(item.module.__file__).stem), 2))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "setup" and report.stop < _warming_until[0]:
        _warm_up_tests.add(report.nodeid)  # ran while the JVM warmed up: not judged
    if LEFT_OUT_OF_FAST.isdisjoint(report.keywords):
        _unmarked_seconds[report.nodeid] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    """Names the tests ``make test-fast`` runs that took too long for it."""
    over = {
        node: s
        for node, s in _unmarked_seconds.items()
        if s > MARK_SLOW_OVER_SECONDS and node not in _warm_up_tests
    }
    if over:
        terminalreporter.section("tests to mark slow (make test-fast runs them)")
        for node, seconds in sorted(over.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:6.1f} s  {node}")
