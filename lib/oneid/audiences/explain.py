"""``explain``: one audience as a standalone Spark SQL query a user can read and run.

The query reads two views, the tags (``oneid`` + tag columns) and the events (``oneid``,
``event_time``, ``event``, properties), and returns ``(oneid, holdout)``: the same rows as
``evaluate_audiences`` gives for the audience. It spells out each step of the evaluation: the
one-pass event aggregates, ``audience_input``, the audiences it depends on (one CTE each, in
dependency order), the rule, the global exclusions and the holdout flag.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from oneid.audiences.holdout import holdout_sql
from oneid.audiences.literals import quote_name
from oneid.audiences.sql_text import indent, parenthesised
from oneid.audiences.windows import EventAggregate, events_filter, window_end

if TYPE_CHECKING:
    from oneid.audiences.compiled import CompiledAudiences


def explain_sql(
    compiled: CompiledAudiences,
    audience_id: str,
    as_of: dt.date,
    tags_view: str = "tags",
    events_view: str = "events",
) -> str:
    """The query behind :meth:`CompiledAudiences.explain`."""
    target = compiled.audience(audience_id)
    needed = compiled.closure(audience_id)
    chain = [a for a in compiled.audiences if a.audience_id in needed]
    tags = dict.fromkeys([*(t for a in chain for t in a.tags), *compiled.exclusion_tags])
    used = {n for a in chain for n in a.aggregates} | set(compiled.exclusion_aggregates)
    aggregates = [a for a in compiled.aggregates if a.name in used]

    header = [f"-- audience {audience_id}, version {target.version}, as of {as_of}"]
    description = " ".join(target.description.split())
    if description:
        header.append(f"-- {description}")
    ctes = []
    if aggregates:
        zone = aggregates[0].time_zone
        end = f"{window_end(as_of, zone):%Y-%m-%d} 00:00 {zone}"
        header.append(f"-- event windows: whole days in {zone}, ending before {end}")
        ctes.append(_aggregates_cte(aggregates, as_of, events_view))
        names = [quote_name(a.name) for a in aggregates]
        columns = [
            "t.oneid",
            *(f"t.{quote_name(t)}" for t in tags),
            *(f"coalesce(e.{name}, 0) AS {name}" for name in names),
        ]
        source = f"{tags_view} AS t\n  LEFT JOIN event_aggregates AS e ON e.oneid = t.oneid"
    else:
        columns = ["oneid", *(quote_name(t) for t in tags)]
        source = tags_view
    ctes.append(_cte("audience_input", columns, source))
    source = "audience_input"
    for dep in chain[:-1]:
        flag = f"{indent(dep.condition, '    ')} AS {quote_name(dep.column)}"
        ctes.append(_cte(f"with_{dep.audience_id}", ["*", flag], source))
        source = f"with_{dep.audience_id}"

    where = parenthesised(target.condition)
    if compiled.exclusion:
        where += f"\n  AND NOT {indent(parenthesised(compiled.exclusion), '  ')}"
    query = (
        f"SELECT oneid, {holdout_sql(audience_id, target.holdout)} AS holdout\n"
        f"FROM {source}\nWHERE {where}"
    )
    return "\n".join([*header, "WITH " + ",\n".join(ctes), query])


def _aggregates_cte(aggregates: Sequence[EventAggregate], as_of: dt.date, events_view: str) -> str:
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
