"""The pipeline's stages in data-flow order: one entry per ``oneid`` sub-command / job file.

A stage declares its own arguments and a ``run`` that takes the session and conf; the CLI, the
``jobs/`` files and ``oneid demo`` all go through this registry, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: rows per table it wrote, and notes for the summary."""

    tables: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """A pipeline stage run by ``oneid <name>`` and ``jobs/<name>.py``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[SparkSession, OneIdConfig, argparse.Namespace], StageResult]
    demo_argv: Callable[[OneIdConfig], list[list[str]]]
    """Argument lists ``oneid demo`` runs this stage with (one run per list)."""


def registered_stages() -> list[Stage]:
    """All stages that exist, in data-flow order."""
    return []
