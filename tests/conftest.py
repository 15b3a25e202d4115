"""One SparkSession for the whole test run, built by the project's own session factory; one
demo warehouse (the whole pipeline on the default demo data) shared by the end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from oneid.conf import OneIdConfig
from oneid.stages import DemoRun
from tests.support import small_config

DEMO_PEOPLE = 5000  # the default demo: the identity accuracy targets are stated for it


@pytest.fixture(scope="session")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> OneIdConfig:
    return small_config(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def spark(cfg: OneIdConfig):
    from oneid.session import build_session

    session = build_session(cfg, app_name="oneid-tests", run_id="tests")
    yield session
    session.stop()


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
    cfg = small_config(root / "warehouse")
    # the repo's own source declarations, pointed at this run's data folder
    sources = {
        name: source.model_copy(
            update={"path": source.path.replace("./demo_data", str(root / "demo_data"))}
        )
        for name, source in cfg.pipeline.sources.items()
    }
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"sources": sources})})
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_HMAC_KEY", raising=False)  # local conf allows the demo key
        run = run_demo_stages(spark, cfg)
    truth = pq.read_table(root / "demo_data" / "truth" / "records.parquet").to_pandas()
    return DemoWarehouse(cfg, manifest, truth, root, run)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n 2 --dist loadgroup`` (``make test``): a module's tests stay on one
    worker, so its module fixtures are built once; the modules on the shared demo warehouse
    share one worker, so it is built once; the two that build the package into ``dist/`` share
    one. The demo group runs first: it is the longest."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.module.__name__, []).append(item)
    groups = {}
    for name, tests in modules.items():
        if any("demo" in test.fixturenames for test in tests):
            groups[name] = "demo"
        elif name.endswith(("test_deploy", "test_cluster")):
            groups[name] = "package"
        else:
            groups[name] = name
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.module.__name__]))
    order = {"demo": 0, "package": 1}
    items.sort(key=lambda item: order.get(groups[item.module.__name__], 2))
