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
            "spark.driver_memory=2g",
            "spark.ui=false",
            *extra,
        ],
    )
