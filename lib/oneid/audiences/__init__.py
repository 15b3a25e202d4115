"""Audiences: a YAML rule language over tags and events, validated and compiled to Spark SQL.

``load_audiences`` reads ``conf/audiences.yaml``; ``compile_audiences`` checks it against the
tag registry's column types and the event properties and turns every rule into SQL;
``evaluate_audiences`` computes the members for one as-of date; ``CompiledAudiences.explain``
prints the standalone SQL of one audience. The language: ``docs/audiences.md``.
"""

from oneid.audiences.compiled import CompiledAudience, CompiledAudiences, audience_column
from oneid.audiences.compiler import compile_audiences
from oneid.audiences.evaluate import MEMBERSHIP_SCHEMA, audience_input, evaluate_audiences
from oneid.audiences.validate import dependency_order, validate_audiences
from oneid.audiences.windows import EventAggregate, window_end, window_start
from oneid.conf.audiences import AudienceConf, AudiencesConf, load_audiences, parse_audiences

__all__ = [
    "MEMBERSHIP_SCHEMA",
    "AudienceConf",
    "AudiencesConf",
    "CompiledAudience",
    "CompiledAudiences",
    "EventAggregate",
    "audience_column",
    "audience_input",
    "compile_audiences",
    "dependency_order",
    "evaluate_audiences",
    "load_audiences",
    "parse_audiences",
    "validate_audiences",
    "window_end",
    "window_start",
]
