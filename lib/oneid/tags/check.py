"""The tag registry checked against the sources declared, before the tags job reads anything.

The tags are built exactly as the job builds them, over empty frames shaped like the silver
fact tables the declared sources produce, so Spark analyses every ``value``, ``where``,
derived column and ``expr`` without data and nothing is computed: a tag over a column no
source provides is a :class:`ConfigError` naming the tag and the column before any fact is read
(the demo registry's check takes about 5 s in a warm session: analysing its plan).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from oneid.conf.pipeline import PipelineConf
from oneid.errors import ConfigError
from oneid.tags.compute import compute_tags, needed_fact_tables
from oneid.tags.currency import RATES_SCHEMA, undeclared_conversions
from oneid.tags.facts import attribute_facts


def check_tags(spark: SparkSession, pipeline: PipelineConf, as_of: dt.date) -> None:
    """Raise ConfigError when a tag cannot be computed from the declared sources."""
    registry = pipeline.tags
    for name in needed_fact_tables(registry):
        foreign = undeclared_conversions(pipeline, name)
        if foreign:
            raise ConfigError(
                f"tags count money in {registry.currency.reporting} (tags.currency.reporting) "
                f"but the amounts of {', '.join(foreign)} are not: set tags.currency.rates (a "
                "rate table by date) or tags.currency.reporting"
            )
    record_oneid = spark.createDataFrame([], "source string, record_key string, oneid bigint")
    rates = spark.createDataFrame([], RATES_SCHEMA) if registry.currency.rates else None
    declared = {source.facts for source in pipeline.sources.values()}
    facts = {
        name: attribute_facts(
            spark.createDataFrame([], pipeline.fact_schema(name)),
            record_oneid,
            registry,
            name,
            as_of,
            rates,
        )
        for name in needed_fact_tables(registry)
        if name in declared  # compute_tags names the tags over a table no source feeds
    }
    oneids = spark.createDataFrame([], "oneid bigint")
    # analysis is the check: nothing is computed (no materialising before rfm scores)
    compute_tags(oneids, facts, registry, as_of, settle=lambda frame: frame).schema  # noqa: B018
