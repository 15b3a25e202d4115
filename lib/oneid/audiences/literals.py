"""Rule values checked against a column kind and written as Spark SQL literals.

Every value a user writes in YAML reaches SQL through :func:`sql_literal`, never by string
formatting: strings are quoted with backslash escapes (Spark's default parser mode,
``spark.sql.parser.escapedStringLiterals=false``), so a quote or backslash in a value cannot end
the literal. Newlines are escaped too, so a literal never spans lines. Names are back-quoted.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from oneid.audiences.column_types import Kind

_EXPECTED = {
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "timestamp": "a timestamp (YYYY-MM-DD HH:MM:SS, UTC unless an offset is given)",
}


def quote_name(name: str) -> str:
    """A column name as a back-quoted Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def string_literal(text: str) -> str:
    """A Spark SQL string literal holding exactly ``text``."""
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    )
    return f"'{escaped}'"


def timestamp_literal(moment: dt.datetime) -> str:
    """A UTC instant as a ``TIMESTAMP`` literal that does not depend on the session time zone."""
    utc = moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment
    text = utc.strftime("%Y-%m-%d %H:%M:%S") + (f".{utc:%f}" if utc.microsecond else "")
    return f"TIMESTAMP '{text}+00:00'"


def coerce_value(value: Any, kind: Kind) -> Any:
    """``value`` as a Python value of ``kind``; raises ``ValueError`` saying what was expected."""
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date":
        parsed = _as_date(value)
        if parsed is not None:
            return parsed
    if kind == "timestamp":
        parsed = _as_timestamp(value)
        if parsed is not None:
            return parsed
    expected = _EXPECTED.get(kind, f"a value of kind {kind}")
    hint = " (use op is_null / not_null for NULL)" if value is None else ""
    quote = " (quote it to compare as text)" if kind == "string" and _is_scalar(value) else ""
    raise ValueError(f"expected {expected}, got {describe(value)}{hint}{quote}")


def sql_literal(value: Any, kind: Kind) -> str:
    """A checked value as a Spark SQL literal of ``kind``."""
    value = coerce_value(value, kind)
    if kind == "number":
        return str(value) if isinstance(value, int) else f"{value!r}D"
    if kind == "string":
        return string_literal(value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "date":
        return f"DATE '{value.isoformat()}'"
    return timestamp_literal(value)


def describe(value: Any) -> str:
    """``'60' (a string)``: a value and its YAML type, for error messages."""
    if value is None:
        return "null"
    kinds = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (dt.datetime, "a timestamp"),
        (dt.date, "a date"),
        (list, "a list"),
        (dict, "a mapping"),
    ]
    name = next((label for cls, label in kinds if isinstance(value, cls)), type(value).__name__)
    return f"{value!r} ({name})"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | dt.date)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
