"""Typed configuration of what the pipeline does (``conf/pipeline.yaml``).

Each stage owns one section; later stages add theirs here. Unknown keys are errors.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConf(_Strict):
    """Generated demo data used by ``oneid demo`` and ``oneid generate``."""

    people: PositiveInt = 5000
    seed: int = 42
    data_dir: str = "./demo_data"


class ComponentsConf(_Strict):
    """Connected components: which engine and with which options (never the library defaults).

    ``engine``: ``graphframes`` needs the GraphFrames jars (``jars.graphframes``); ``native`` is
    OneID's own DataFrame implementation of the same large-star / small-star algorithm;
    ``auto`` takes GraphFrames when its jars resolve and ``native`` otherwise (logged).
    """

    engine: Literal["auto", "graphframes", "native"] = "auto"
    algorithm: Literal["graphframes", "graphx"] = "graphframes"
    checkpoint_interval: PositiveInt = 2
    broadcast_threshold: int = 1_000_000
    max_iterations: PositiveInt = 100


class IdentityConf(_Strict):
    """Identity resolution settings (graph, hub guard, components, gates)."""

    components: ComponentsConf = Field(default_factory=ComponentsConf)


class PipelineConf(_Strict):
    """The whole pipeline definition."""

    demo: DemoConf = Field(default_factory=DemoConf)
    identity: IdentityConf = Field(default_factory=IdentityConf)
