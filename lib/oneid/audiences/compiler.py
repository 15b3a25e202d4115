"""Compile audience rules to SQL over ``audience_input`` (see :mod:`oneid.audiences.compiled`).

Every condition becomes a NULL-free boolean expression: a tag condition on a NULL tag is false
(``is_null`` aside), so ``not`` of it is true; an event condition compares a per-OneID
aggregate, shared by every audience that needs the same one; a reference to another audience
reads that audience's column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oneid.audiences.column_types import ColumnType, parse_column_type
from oneid.audiences.compiled import CompiledAudience, CompiledAudiences, audience_column
from oneid.audiences.literals import quote_name, sql_literal
from oneid.audiences.sql_text import parenthesised
from oneid.audiences.validate import dependency_order, validate_audiences
from oneid.audiences.windows import EventAggregate
from oneid.conf.audiences import (
    AllOf,
    AnyOf,
    AudienceRef,
    AudiencesConf,
    Condition,
    EventCondition,
    Not,
    TagCondition,
)

_COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def compile_audiences(
    conf: AudiencesConf,
    tag_types: Mapping[str, str],
    event_properties: Mapping[str, str],
    time_zone: str = "UTC",
) -> CompiledAudiences:
    """Validate ``conf`` against the tags and event properties and compile it to SQL.

    ``time_zone`` is the business zone whose days bound the event windows.

    Raises :class:`ConfigError` listing every problem, each with its audience and rule path.
    """
    validate_audiences(conf, tag_types, event_properties)
    compiler = _Compiler(tag_types, event_properties, time_zone)
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

    def __init__(
        self, tag_types: Mapping[str, str], event_properties: Mapping[str, str], time_zone: str
    ):
        self.time_zone = time_zone
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
            return f"NOT {parenthesised(self.sql(cond.negated, indent, used))}"
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
                time_zone=self.time_zone,
            )
        return self.aggregates[key]


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
