"""Typed configuration of the tag registry (``conf/tags.yaml``, section ``tags``).

Every tag is declared once: name, table group, description, unit, type, window and how it is
computed: an ``aggregate`` over one fact table, an ``expr`` (SQL over tags declared before it),
or a ``builder`` (named code for what SQL aggregates cannot say). The tables' columns, the tag
dictionary (``docs/tags.md``) and the audience rules' tag types all come from here.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

FactTable = Literal["orders", "events", "contacts"]
AggregateFn = Literal["count", "sum", "min", "max", "avg", "count_distinct", "first", "last"]
BuilderName = Literal["rfm_score", "rfm_segment", "top_value", "count_by"]
TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""What a tag's name (batch or realtime) and a tag group's name look like: lower_snake_case."""
TAG_NAME_LENGTH = 64
"""The longest such name: the API selects up to 200 tags by name in one GET, which must fit
the HTTP server's request line (``oneid.serve.models.TagName``)."""


def is_tag_name(name: str) -> bool:
    """Whether ``name`` is a valid tag or tag group name (:data:`TAG_NAME`, at most
    :data:`TAG_NAME_LENGTH` characters)."""
    return len(name) <= TAG_NAME_LENGTH and TAG_NAME.match(name) is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AggregateConf(_Strict):
    """An aggregate over one fact table per OneID, computed in the table's single pass.

    ``value`` and ``where`` are Spark SQL over the fact table's columns, its
    ``derived_columns`` and ``event_date`` (the fact's business-day date). ``first`` / ``last``
    take ``value`` of the earliest / latest fact (ties: smallest value).
    """

    facts: FactTable
    fn: AggregateFn
    value: str | None = None
    where: str | None = None

    @model_validator(mode="after")
    def _value_needed(self) -> AggregateConf:
        if self.fn != "count" and not self.value:
            raise ValueError(f"aggregate fn {self.fn!r} needs `value`")
        return self


class TagConf(_Strict):
    """One tag: a column of ``gold.tags_<group>``."""

    name: str
    group: str
    description: str
    unit: str = "-"
    type: str
    """Spark SQL type of the column (``bigint``, ``decimal(18,2)``, ``string``, ``date`` ...)."""
    window_days: PositiveInt | None = None
    """Facts of the last N business days up to the as-of date; unset: all history to it."""
    aggregate: AggregateConf | None = None
    expr: str | None = None
    builder: BuilderName | None = None
    params: dict[str, str | int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way(self) -> TagConf:
        if not is_tag_name(self.name) or not is_tag_name(self.group):
            raise ValueError(
                f"tag `name` and `group` must be lower_snake_case of at most {TAG_NAME_LENGTH} "
                "characters"
            )
        ways = [w for w in ("aggregate", "expr", "builder") if getattr(self, w) is not None]
        if len(ways) != 1:
            raise ValueError(f"tag {self.name!r}: give exactly one of aggregate, expr, builder")
        if self.window_days and not (self.aggregate or self.builder in ("top_value", "count_by")):
            raise ValueError(f"tag {self.name!r}: window_days applies to aggregates and builders")
        return self


class RfmSegmentConf(_Strict):
    """One cell set of the R x F map: the segment of every (r, f) score pair listed."""

    name: str
    r: tuple[int, ...]
    f: tuple[int, ...]


class ShareConf(_Strict):
    """A population share for the daily summary: rows where ``where`` holds among ``of``."""

    of: str = "TRUE"
    where: str


class SummaryConf(_Strict):
    """What ``gold.tags_summary`` counts each day besides the number of OneIDs."""

    counts_by: tuple[str, ...] = ()
    """Tags whose values are counted (segments, lifecycle stages ...)."""
    shares: dict[str, ShareConf] = Field(default_factory=dict)


class CurrencyConf(_Strict):
    """The currency tags count money in, and how other currencies are converted to it."""

    reporting: str = "CNY"
    """ISO 4217 code of every amount tags see; a tag whose ``unit`` is a currency code must
    name this one."""
    rates: str | None = None
    """CSV with header ``date,currency,rate`` (one unit of ``currency`` is ``rate`` reporting
    units on ``date``; the latest rate on or before a fact's day applies); a relative path is
    read from the pipeline file's folder (the loader makes it absolute). Without it, facts in
    another currency fail the tags job instead of being summed as if they were in this one."""


CURRENCY_UNIT = re.compile(r"^[A-Z]{3}$")


class TagsConf(_Strict):
    """The tag registry and the business rules it needs."""

    currency: CurrencyConf = Field(default_factory=CurrencyConf)
    time_zone: str = "Asia/Shanghai"
    """Business time zone: ``--as-of D`` means facts up to the end of D there."""
    derived_columns: dict[FactTable, dict[str, str]] = Field(default_factory=dict)
    """Named SQL expressions per fact table, usable in aggregates (``is_paid``, ``net_amount``)."""
    rfm_segments: tuple[RfmSegmentConf, ...] = ()
    definitions: tuple[TagConf, ...] = ()
    summary: SummaryConf = Field(default_factory=SummaryConf)

    def tag_types(self) -> dict[str, str]:
        """Tag name → Spark SQL type of its column."""
        return {tag.name: tag.type for tag in self.definitions}

    @model_validator(mode="after")
    def _consistent(self) -> TagsConf:
        names = [tag.name for tag in self.definitions]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tag(s) declared twice: {twice}")
        reserved = {"oneid", "dt", "as_of_date"} & set(names)
        if reserved:
            raise ValueError(f"reserved column name(s) used as tags: {sorted(reserved)}")
        reporting = self.currency.reporting
        other = sorted(
            f"{tag.name} ({tag.unit})"
            for tag in self.definitions
            if CURRENCY_UNIT.match(tag.unit) and tag.unit != reporting
        )
        if other:
            raise ValueError(
                f"tag(s) {other} count money in another currency than currency.reporting "
                f"{reporting}: amounts are converted to {reporting}, so their unit is {reporting}"
            )
        unknown = sorted(set(self.summary.counts_by) - set(names))
        if unknown:
            raise ValueError(f"summary.counts_by names unknown tag(s) {unknown}")
        if self.rfm_segments:
            cells = [(r, f) for seg in self.rfm_segments for r in seg.r for f in seg.f]
            grid = {(r, f) for r in range(1, 6) for f in range(1, 6)}
            missing = sorted(grid - set(cells))
            doubled = sorted({c for c in cells if cells.count(c) > 1})
            if missing or doubled or set(cells) - grid:
                raise ValueError(
                    "rfm_segments must cover each (r, f) in 1..5 x 1..5 exactly once; "
                    f"missing {missing}, more than once {doubled}"
                )
        return self
