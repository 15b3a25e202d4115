"""One SparkSession for the whole test run, built by the project's own session factory."""

from __future__ import annotations

import pytest

from oneid.conf import OneIdConfig
from tests.support import small_config


@pytest.fixture(scope="session")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> OneIdConfig:
    return small_config(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def spark(cfg: OneIdConfig):
    from oneid.session import build_session

    session = build_session(cfg, app_name="oneid-tests", run_id="tests")
    yield session
    session.stop()
