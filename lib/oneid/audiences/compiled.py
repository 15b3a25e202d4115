"""Compiled audiences: SQL over one wide per-OneID table, ``audience_input``.

``audience_input`` has one row per OneID: ``oneid``, the tag columns the rules use, one column
per event aggregate (``__count_1``, ``__sum_2``; 0 when the OneID has no such events) and, added
in dependency order, one boolean column per audience (``__audience_<id>``) that later audiences
refer to. Every condition is NULL-free (see ``docs/audiences.md``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from oneid.audiences.explain import explain_sql
from oneid.audiences.validate import did_you_mean
from oneid.audiences.windows import EventAggregate
from oneid.errors import ConfigError


def audience_column(audience_id: str) -> str:
    """Name of the boolean column holding an audience's rule in ``audience_input``."""
    return f"__audience_{audience_id}"


@dataclass(frozen=True)
class CompiledAudience:
    """One audience as SQL: ``condition`` is a boolean expression over ``audience_input``."""

    audience_id: str
    version: int
    description: str
    holdout: float
    on_new_version: str
    condition: str
    column: str
    depends_on: tuple[str, ...]
    """Audiences the rule refers to directly."""
    tags: tuple[str, ...]
    aggregates: tuple[str, ...]
    """Names of the event aggregates the rule uses directly."""


@dataclass(frozen=True)
class CompiledAudiences:
    """Every audience in dependency order, the event aggregates they need and the exclusions."""

    audiences: tuple[CompiledAudience, ...]
    aggregates: tuple[EventAggregate, ...]
    exclusion: str | None
    """Boolean SQL over ``audience_input``: true removes the OneID from every audience."""
    exclusion_tags: tuple[str, ...] = ()
    exclusion_aggregates: tuple[str, ...] = ()

    def audience(self, audience_id: str) -> CompiledAudience:
        for audience in self.audiences:
            if audience.audience_id == audience_id:
                return audience
        ids = [a.audience_id for a in self.audiences]
        raise ConfigError(f"unknown audience {audience_id!r}{did_you_mean(audience_id, ids)}")

    @property
    def tag_columns(self) -> tuple[str, ...]:
        """Every tag column some rule or exclusion uses."""
        return _unique([*(t for a in self.audiences for t in a.tags), *self.exclusion_tags])

    @property
    def event_columns(self) -> tuple[str, ...]:
        """Every event property some aggregate filters on or sums."""
        return _unique(p for a in self.aggregates for p in a.properties)

    def aggregate_expressions(self, as_of: dt.date) -> dict[str, str]:
        """Aggregate column name → SQL aggregate over the events frame, for ``as_of``."""
        return {a.name: a.expression(as_of) for a in self.aggregates}

    def levels(self) -> tuple[tuple[CompiledAudience, ...], ...]:
        """Audiences grouped so each group refers only to audiences of earlier groups."""
        depth: dict[str, int] = {}
        for a in self.audiences:
            depth[a.audience_id] = 1 + max((depth[d] for d in a.depends_on), default=-1)
        count = max(depth.values(), default=-1) + 1
        return tuple(
            tuple(a for a in self.audiences if depth[a.audience_id] == level)
            for level in range(count)
        )

    def explain(
        self,
        audience_id: str,
        as_of: dt.date,
        *,
        tags_view: str = "tags",
        events_view: str = "events",
    ) -> str:
        """Standalone Spark SQL giving the audience's ``(oneid, holdout)`` rows on ``as_of``.

        It reads ``tags_view`` (``oneid`` + tag columns) and ``events_view`` (``oneid``,
        ``event_time``, ``event`` and the properties), applies the global exclusions, and
        returns the same rows as ``evaluate_audiences`` does for this audience.
        """
        return explain_sql(self, audience_id, as_of, tags_view, events_view)

    def closure(self, audience_id: str) -> set[str]:
        """The audience and every audience it depends on, directly or not."""
        found = {audience_id}
        for dep in self.audience(audience_id).depends_on:
            found |= self.closure(dep)
        return found


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
