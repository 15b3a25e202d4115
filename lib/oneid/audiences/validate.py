"""Check audience rules against the tag registry and the event properties.

Every problem is reported with the audience id and the path of the condition inside the rule
(``audiences.high_value_at_risk.rule.and[1]: unknown tag 'recency_dayz' (did you mean
'recency_days'?)``); all problems of a file are reported at once, in one :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from oneid.audiences.column_types import ColumnType, Kind, parse_column_type
from oneid.audiences.literals import coerce_value, describe
from oneid.conf.audiences import (
    AudienceRef,
    AudiencesConf,
    EventCondition,
    TagCondition,
    iter_conditions,
)
from oneid.errors import ConfigError

RESERVED_PREFIX = "__"
"""Columns the compiler adds to the per-OneID table start with this; tags may not."""

_COMPARABLE = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in"})
_NULL_OPS = frozenset({"is_null", "not_null"})
OPS_BY_KIND: dict[Kind, frozenset[str]] = {
    "number": _COMPARABLE | _NULL_OPS,
    "date": _COMPARABLE | _NULL_OPS,
    "timestamp": _COMPARABLE | _NULL_OPS,
    "string": frozenset({"eq", "neq", "in", "not_in", "contains"}) | _NULL_OPS,
    "boolean": frozenset({"eq", "neq"}) | _NULL_OPS,
    "array": frozenset({"contains"}) | _NULL_OPS,
    "map": frozenset({"contains"}) | _NULL_OPS,
    "other": _NULL_OPS,
}
_OP_ORDER = ("eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in", "contains")


def validate_audiences(
    conf: AudiencesConf, tag_types: Mapping[str, str], event_properties: Mapping[str, str]
) -> None:
    """Raise :class:`ConfigError` listing every problem of ``conf``; return if there is none."""
    tags = {name: parse_column_type(text) for name, text in tag_types.items()}
    props = {name: parse_column_type(text) for name, text in event_properties.items()}
    problems: list[str] = []
    for i, condition in enumerate(conf.exclusions):
        for node, path in iter_conditions(condition, f"exclusions[{i}]"):
            if isinstance(node, AudienceRef):
                problems.append(f"{path}: exclusions cannot refer to audiences")
            else:
                problems += _problems(node, path, tags, props, conf.audiences)
    for audience_id, audience in conf.audiences.items():
        for node, path in iter_conditions(audience.rule, f"audiences.{audience_id}.rule"):
            problems += _problems(node, path, tags, props, conf.audiences)
    if not problems:
        dependency_order(conf)
        return
    raise ConfigError("invalid audience rules\n  " + "\n  ".join(problems))


def dependency_order(conf: AudiencesConf) -> tuple[str, ...]:
    """Audience ids, each after every audience its rule refers to (file order otherwise).

    Raises :class:`ConfigError` naming a cycle (``a -> b -> a``) at the reference closing it.
    """
    refs = {aid: list(audience_references(a.rule, aid)) for aid, a in conf.audiences.items()}
    order: list[str] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(audience_id: str) -> None:
        stack.append(audience_id)
        for ref, path in refs[audience_id]:
            if ref in stack:
                cycle = " -> ".join([*stack[stack.index(ref) :], ref])
                raise ConfigError(
                    f"invalid audience rules\n  {path}: audiences refer to each other in a "
                    f"cycle: {cycle}"
                )
            if ref not in done and ref in refs:
                visit(ref)
        stack.pop()
        done.add(audience_id)
        order.append(audience_id)

    for audience_id in conf.audiences:
        if audience_id not in done:
            visit(audience_id)
    return tuple(order)


def audience_references(rule: Any, audience_id: str) -> Iterator[tuple[str, str]]:
    """(referenced audience id, path of the reference) in one audience's rule."""
    for node, path in iter_conditions(rule, f"audiences.{audience_id}.rule"):
        if isinstance(node, AudienceRef):
            yield node.audience, path


def _problems(
    node: Any,
    path: str,
    tags: Mapping[str, ColumnType],
    props: Mapping[str, ColumnType],
    audiences: Mapping[str, Any],
) -> list[str]:
    if isinstance(node, TagCondition):
        return [f"{path}: {p}" for p in _tag_problems(node, tags)]
    if isinstance(node, EventCondition):
        return [f"{path}: {p}" for p in _event_problems(node, props)]
    if isinstance(node, AudienceRef) and node.audience not in audiences:
        return [
            f"{path}: unknown audience {node.audience!r}{did_you_mean(node.audience, audiences)}"
        ]
    return []


def _tag_problems(cond: TagCondition, tags: Mapping[str, ColumnType]) -> list[str]:
    if cond.tag not in tags:
        return [f"unknown tag {cond.tag!r}{did_you_mean(cond.tag, tags)}"]
    if cond.tag.startswith(RESERVED_PREFIX):
        return [f"tag {cond.tag!r}: names starting with {RESERVED_PREFIX!r} are reserved"]
    column = tags[cond.tag]
    allowed = OPS_BY_KIND[column.kind]
    if cond.op not in allowed:
        usable = ", ".join(op for op in (*_OP_ORDER, "is_null", "not_null") if op in allowed)
        return [
            f"operator {cond.op!r} does not apply to tag {cond.tag!r} of type {column.text} "
            f"(use one of: {usable})"
        ]
    what = f"tag {cond.tag!r} ({column.text})"
    if cond.op in _NULL_OPS:
        return [f"{cond.op!r} takes no value"] if cond.has_value else []
    if not cond.has_value:
        return [f"{cond.op!r} needs a value"]
    if cond.op == "contains":
        inner = column if column.kind == "string" else column.inner
        if inner is None or not inner.is_scalar:
            return [f"'contains' cannot look into {what}"]
        return [f"{cond.op} on {what}: {p}" for p in _value_problems(cond.value, inner.kind)]
    if cond.op in ("in", "not_in"):
        if not isinstance(cond.value, list) or not cond.value:
            return [f"{cond.op!r} needs a non-empty list of values, got {describe(cond.value)}"]
        return [f"{cond.op} on {what}: {p}" for p in _list_problems(cond.value, column.kind)]
    if cond.op == "between":
        return _between_problems(cond.value, column.kind, what)
    if isinstance(cond.value, list):
        hint = " (use 'in')" if cond.op == "eq" else " (use 'not_in')" if cond.op == "neq" else ""
        return [f"{cond.op!r} takes one value, got a list{hint}"]
    return [f"{cond.op} on {what}: {p}" for p in _value_problems(cond.value, column.kind)]


def _between_problems(value: Any, kind: Kind, what: str) -> list[str]:
    if not isinstance(value, list) or len(value) != 2:
        return [f"'between' needs two values [low, high], got {describe(value)}"]
    problems = _list_problems(value, kind)
    if problems:
        return [f"between on {what}: {p}" for p in problems]
    low, high = (coerce_value(v, kind) for v in value)
    if low > high:
        return [f"'between' needs [low, high] with low <= high, got {value!r}"]
    return []


def _event_problems(cond: EventCondition, props: Mapping[str, ColumnType]) -> list[str]:
    problems: list[str] = []
    for name, value in cond.where.items():
        if name not in props:
            problems.append(f"where: unknown event property {name!r}{did_you_mean(name, props)}")
            continue
        column = props[name]
        what = f"where {name} ({column.text})"
        if not column.is_scalar:
            problems.append(f"{what}: only properties of scalar type can be filtered")
        elif isinstance(value, list):
            if not value:
                problems.append(f"{what}: needs a value or a non-empty list of values")
            problems += [f"{what}: {p}" for p in _list_problems(value, column.kind)]
        else:
            problems += [f"{what}: {p}" for p in _value_problems(value, column.kind)]
    if cond.sum is not None:
        if cond.sum not in props:
            problems.append(
                f"sum: unknown event property {cond.sum!r}{did_you_mean(cond.sum, props)}"
            )
        elif props[cond.sum].kind != "number":
            problems.append(
                f"sum: event property {cond.sum!r} is {props[cond.sum].text}, not a number"
            )
    bounds = [b for b in (cond.min, cond.max) if b is not None]
    if not bounds:
        problems.append("an event condition needs min and/or max")
    if cond.sum is None and any(not isinstance(b, int) or b < 0 for b in bounds):
        problems.append(f"min / max of a count must be whole numbers >= 0, got {bounds}")
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        problems.append(f"min {cond.min} is greater than max {cond.max}")
    return problems


def _list_problems(values: list[Any], kind: Kind) -> list[str]:
    return [f"[{i}] {p}" for i, v in enumerate(values) for p in _value_problems(v, kind)]


def _value_problems(value: Any, kind: Kind) -> list[str]:
    try:
        coerce_value(value, kind)
    except ValueError as exc:
        return [str(exc)]
    return []


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
