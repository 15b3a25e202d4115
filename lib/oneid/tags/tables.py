"""The tag tables as the later stages see them: which tags each holds, one day of them joined.

``gold.tags_<group>`` holds the tags of one ``group`` of the registry, one ``dt`` partition a
day. The audiences and publish stages read a day's tags through :func:`day_tags`, so neither
needs the tags job's module.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.tags import TagsConf
from oneid.errors import DataContractError
from oneid.tables import read_table_or_none


def tag_tables(registry: TagsConf) -> dict[str, list[str]]:
    """``gold.tags_<group>`` → its tag columns, in declaration order."""
    tables: dict[str, list[str]] = {}
    for tag in registry.definitions:
        tables.setdefault(f"gold.tags_{tag.group}", []).append(tag.name)
    return tables


def day_tags(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date, names: list[str]) -> DataFrame:
    """``oneid`` + the named tags of ``dt = as_of``, joined across the tag tables."""
    wide: DataFrame | None = None
    for table, columns in tag_tables(cfg.pipeline.tags).items():
        used = [c for c in columns if c in names]
        if not used and wide is not None:
            continue
        frame = read_table_or_none(spark, cfg, table)
        day = None if frame is None else frame.where(F.col("dt") == F.lit(as_of))
        if day is None or day.limit(1).count() == 0:
            raise DataContractError(f"{table} has no dt={as_of}: run `oneid tags --as-of {as_of}`")
        day = day.select("oneid", *used)
        wide = day if wide is None else wide.join(day, "oneid")
    assert wide is not None
    return wide
