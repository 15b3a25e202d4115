"""Compile audience rules to Spark SQL over one wide per-OneID table, ``audience_input``.

``audience_input`` has one row per OneID: ``oneid``, the tag columns the rules use, one column
per event aggregate (``__count_1``, ``__sum_2``; 0 when the OneID has no such events) and, added
in dependency order, one boolean column per audience (``__audience_<id>``) that later audiences
refer to. Every compiled condition is NULL-free: a tag condition on a NULL tag is false
(``is_null`` aside), so ``not`` of it is true. See ``docs/audiences.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oneid.audiences.column_types import ColumnType, parse_column_type
from oneid.audiences.holdout import holdout_sql
from oneid.audiences.literals import quote_name, sql_literal
from oneid.audiences.rules import (
    AllOf,
    AnyOf,
    AudienceRef,
    AudiencesConf,
    Condition,
    EventCondition,
    Not,
    TagCondition,
)
from oneid.audiences.validate import dependency_order, did_you_mean, validate_audiences
from oneid.audiences.windows import EventAggregate, events_filter, window_end
from oneid.errors import ConfigError

EXCLUDED_COLUMN = "__excluded"
_COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


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
        returns the same rows as :func:`evaluate_audiences` does for this audience.
        """
        target = self.audience(audience_id)
        chain = [a for a in self.audiences if a.audience_id in self._closure(audience_id)]
        tags = _unique([*(t for a in chain for t in a.tags), *self.exclusion_tags])
        used = {n for a in chain for n in a.aggregates} | set(self.exclusion_aggregates)
        aggregates = [a for a in self.aggregates if a.name in used]
        description = " ".join(target.description.split())
        header = [f"-- audience {audience_id}, version {target.version}, as of {as_of}"]
        if description:
            header.append(f"-- {description}")
        ctes = []
        if aggregates:
            header.append(
                f"-- event windows: whole UTC days, ending before {window_end(as_of):%Y-%m-%d} "
                "00:00 UTC"
            )
            ctes.append(_aggregates_cte(aggregates, as_of, events_view))
            columns = [
                "t.oneid",
                *(f"t.{quote_name(t)}" for t in tags),
                *(
                    f"coalesce(e.{quote_name(a.name)}, 0) AS {quote_name(a.name)}"
                    for a in aggregates
                ),
            ]
            source = f"{tags_view} AS t\n  LEFT JOIN event_aggregates AS e ON e.oneid = t.oneid"
        else:
            columns = ["oneid", *(quote_name(t) for t in tags)]
            source = tags_view
        ctes.append(_cte("audience_input", columns, source))
        source = "audience_input"
        for dep in chain[:-1]:
            flag = f"{_indent(dep.condition, '    ')} AS {quote_name(dep.column)}"
            ctes.append(_cte(f"with_{dep.audience_id}", ["*", flag], source))
            source = f"with_{dep.audience_id}"
        where = _parenthesised(target.condition)
        if self.exclusion:
            where += f"\n  AND NOT {_indent(_parenthesised(self.exclusion), '  ')}"
        query = (
            f"SELECT oneid, {holdout_sql(audience_id, target.holdout)} AS holdout\n"
            f"FROM {source}\nWHERE {where}"
        )
        return "\n".join([*header, "WITH " + ",\n".join(ctes), query])

    def _closure(self, audience_id: str) -> set[str]:
        found = {audience_id}
        for dep in self.audience(audience_id).depends_on:
            found |= self._closure(dep)
        return found


def compile_audiences(
    conf: AudiencesConf, tag_types: Mapping[str, str], event_properties: Mapping[str, str]
) -> CompiledAudiences:
    """Validate ``conf`` against the tags and event properties and compile it to SQL.

    Raises :class:`ConfigError` listing every problem, each with its audience and rule path.
    """
    validate_audiences(conf, tag_types, event_properties)
    compiler = _Compiler(tag_types, event_properties)
    audiences = []
    for audience_id in dependency_order(conf):
        audience = conf.audiences[audience_id]
        used = _Usage()
        condition = compiler.sql(audience.rule, "", used)
        audiences.append(
            CompiledAudience(
                audience_id=audience_id,
                version=audience.version,
                description=audience.description,
                holdout=audience.holdout,
                on_new_version=audience.on_new_version,
                condition=condition,
                column=audience_column(audience_id),
                depends_on=_unique(used.audiences),
                tags=_unique(used.tags),
                aggregates=_unique(used.aggregates),
            )
        )
    exclusion = None
    excluded = _Usage()
    if conf.exclusions:
        exclusion = compiler.sql(AnyOf.model_validate({"or": conf.exclusions}), "", excluded)
    return CompiledAudiences(
        audiences=tuple(audiences),
        aggregates=tuple(compiler.aggregates.values()),
        exclusion=exclusion,
        exclusion_tags=_unique(excluded.tags),
        exclusion_aggregates=_unique(excluded.aggregates),
    )


@dataclass
class _Usage:
    tags: list[str] = field(default_factory=list)
    aggregates: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=list)


class _Compiler:
    """Renders validated conditions; owns the deduplicated event aggregates."""

    def __init__(self, tag_types: Mapping[str, str], event_properties: Mapping[str, str]):
        self.tags = {name: parse_column_type(text) for name, text in tag_types.items()}
        self.props = {name: parse_column_type(text) for name, text in event_properties.items()}
        self.aggregates: dict[tuple[object, ...], EventAggregate] = {}

    def sql(self, cond: Condition, indent: str, used: _Usage) -> str:
        if isinstance(cond, TagCondition):
            used.tags.append(cond.tag)
            return self._tag(cond, self.tags[cond.tag])
        if isinstance(cond, EventCondition):
            return self._event(cond, used)
        if isinstance(cond, AudienceRef):
            used.audiences.append(cond.audience)
            column = quote_name(audience_column(cond.audience))
            return column if cond.include else f"NOT {column}"
        if isinstance(cond, Not):
            return f"NOT {_parenthesised(self.sql(cond.negated, indent, used))}"
        operator, children = (
            ("AND", cond.all_of) if isinstance(cond, AllOf) else ("OR", cond.any_of)
        )
        if len(children) == 1:
            return self.sql(children[0], indent, used)
        inner = indent + "  "
        parts = [self.sql(child, inner, used) for child in children]
        return f"(\n{inner}" + f"\n{inner}{operator} ".join(parts) + f"\n{indent})"

    def _tag(self, cond: TagCondition, column: ColumnType) -> str:
        name = quote_name(cond.tag)
        if cond.op == "is_null":
            return f"{name} IS NULL"
        if cond.op == "not_null":
            return f"{name} IS NOT NULL"
        if cond.op in _COMPARISONS:
            predicate = f"{name} {_COMPARISONS[cond.op]} {sql_literal(cond.value, column.kind)}"
        elif cond.op == "between":
            low, high = (sql_literal(v, column.kind) for v in cond.value)
            predicate = f"{name} BETWEEN {low} AND {high}"
        elif cond.op in ("in", "not_in"):
            values = ", ".join(_unique(sql_literal(v, column.kind) for v in cond.value))
            predicate = f"{name} {'IN' if cond.op == 'in' else 'NOT IN'} ({values})"
        elif column.kind == "string":
            predicate = f"contains({name}, {sql_literal(cond.value, 'string')})"
        else:
            assert column.inner is not None  # validated: arrays and maps have one
            function = "array_contains" if column.kind == "array" else "map_contains_key"
            predicate = f"{function}({name}, {sql_literal(cond.value, column.inner.kind)})"
        return f"coalesce({predicate}, false)"

    def _event(self, cond: EventCondition, used: _Usage) -> str:
        aggregate = self._aggregate(cond)
        used.aggregates.append(aggregate.name)
        name = quote_name(aggregate.name)
        low, high = (None if b is None else sql_literal(b, "number") for b in (cond.min, cond.max))
        if low is not None and high is not None:
            return f"{name} BETWEEN {low} AND {high}"
        return f"{name} >= {low}" if low is not None else f"{name} <= {high}"

    def _aggregate(self, cond: EventCondition) -> EventAggregate:
        filters = []
        for prop, value in sorted(cond.where.items()):
            kind = self.props[prop].kind
            literals = sorted(set(sql_literal(v, kind) for v in _as_list(value)))
            column = quote_name(prop)
            if len(literals) == 1:
                filters.append(f"{column} = {literals[0]}")
            else:
                filters.append(f"{column} IN ({', '.join(literals)})")
        key = (cond.event, tuple(filters), cond.sum, cond.in_last_days)
        if key not in self.aggregates:
            kind = "count" if cond.sum is None else "sum"
            self.aggregates[key] = EventAggregate(
                name=f"__{kind}_{len(self.aggregates) + 1}",
                event=cond.event,
                filters=tuple(filters),
                sum_of=cond.sum,
                days=cond.in_last_days,
                properties=_unique([*sorted(cond.where), *([cond.sum] if cond.sum else [])]),
            )
        return self.aggregates[key]


def _aggregates_cte(aggregates: list[EventAggregate], as_of: dt.date, events_view: str) -> str:
    columns = ["oneid", *(f"{a.expression(as_of)} AS {quote_name(a.name)}" for a in aggregates)]
    body = ",\n    ".join(columns)
    where = events_filter(aggregates, as_of, "\n    AND ")
    return (
        f"event_aggregates AS (\n  SELECT\n    {body}\n  FROM {events_view}\n"
        f"  WHERE {where}\n  GROUP BY oneid\n)"
    )


def _cte(name: str, columns: list[str], source: str) -> str:
    body = ",\n    ".join(columns)
    return f"{name} AS (\n  SELECT\n    {body}\n  FROM {source}\n)"


def _parenthesised(sql: str) -> str:
    return sql if sql.startswith("(") else f"({sql})"


def _indent(sql: str, prefix: str) -> str:
    """Shift continuation lines; safe because literals never hold a raw newline."""
    return sql.replace("\n", "\n" + prefix)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
