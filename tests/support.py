"""Shared test helpers (one place; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from oneid.conf import OneIdConfig, load_config

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def small_config(warehouse: Path, *extra: str) -> OneIdConfig:
    """The repo's local conf, scaled down for tests: local[2], 2 shuffle partitions, UI off."""
    return load_config(
        "local",
        CONF_DIR,
        [
            f"warehouse={warehouse}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            "spark.driver_memory=3g",
            "spark.ui=false",
            *extra,
        ],
    )


def config_for(folder: Path, pipeline: dict, *extra: str) -> OneIdConfig:
    """A local conf with its own warehouse under ``folder`` and the given pipeline section."""
    import yaml

    conf_dir = folder / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "pipeline.yaml").write_text(
        yaml.safe_dump(pipeline, allow_unicode=True), encoding="utf-8"
    )
    env = {
        "mode": "local",
        "pipeline": "pipeline.yaml",
        "warehouse": str(folder / "warehouse"),
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"},
        "secrets": {"allow_demo_key": True},
    }
    (conf_dir / "local.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    return load_config("local", conf_dir, list(extra))


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped (an owner that is gone)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
