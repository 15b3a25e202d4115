"""One SparkSession for the whole test run, built by the project's own session factory; one
demo warehouse (the whole pipeline on the default demo data) shared by the end-to-end tests."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark import SparkContext

from oneid.conf import OneIdConfig
from oneid.stages import DemoRun
from tests.support import shuffle_partitions, small_config, with_demo_data

DEMO_PEOPLE = 5000  # the default demo: the identity accuracy targets are stated for it


@pytest.fixture(scope="session")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> OneIdConfig:
    return small_config(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def spark(cfg: OneIdConfig):
    from oneid.session import build_session

    session = build_session(cfg, job="tests", run_id="tests")
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The demo group first (it is the longest), then the package group; a module that uses
    the demo warehouse must be listed in ``SHARED_WORKER``."""
    for item in items:
        module = Path(item.module.__file__).stem
        if "demo" in item.fixturenames and SHARED_WORKER.get(module) != "demo":
            raise pytest.UsageError(f"{module} uses the demo warehouse: add it to SHARED_WORKER")
    order = {"demo": 0, "package": 1}
    items.sort(key=lambda item: order.get(SHARED_WORKER.get(Path(item.module.__file__).stem), 2))
