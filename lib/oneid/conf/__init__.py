"""Configuration: YAML files in ``conf/`` validated into frozen, typed objects."""

from oneid.conf.loader import load_config
from oneid.conf.models import EnvConf, OneIdConfig
from oneid.conf.pipeline import PipelineConf

__all__ = ["EnvConf", "OneIdConfig", "PipelineConf", "load_config"]
