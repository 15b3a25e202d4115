"""Typed parsing of canonical fields, shared by ingest (validation) and standardise (silver).

Every parser is a ``try_`` expression: a value that does not parse gives NULL, and
:func:`field_problem` turns "present but NULL after parsing" into a reason code, so a bad value
is quarantined instead of silently becoming NULL.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from oneid.conf.pipeline import ColumnConf

DECIMAL_TYPE = "decimal(18,2)"
ISO_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"


def present(raw: Column) -> Column:
    """True when a raw string holds something other than whitespace."""
    return raw.isNotNull() & (F.length(F.trim(raw)) > 0)


def parse_field(raw: Column, column: ColumnConf, time_zone: str) -> Column:
    """The typed value of a raw string column (NULL when absent or unparseable)."""
    value = F.when(present(raw), F.trim(raw))
    if column.type == "decimal":
        return value.try_cast(DECIMAL_TYPE)
    if column.type == "integer":
        return value.try_cast("bigint")
    if column.type == "timestamp":
        return _timestamp(value, column.format, time_zone)
    if column.type == "date":
        fmt = column.format or "yyyy-MM-dd"
        return F.to_date(F.try_to_timestamp(value, F.lit(fmt)))
    if column.type == "enum":
        return F.when(value.isin(list(column.values)), value)
    return value


def field_problem(raw: Column, column: ColumnConf, time_zone: str) -> Column:
    """Reason code when the value is missing but required, or present but not parseable."""
    parsed = parse_field(raw, column, time_zone)
    missing = F.lit(f"missing_required:{column.field}")
    bad = F.lit(f"bad_{column.type}:{column.field}")
    checks = F.when(~present(raw) & F.lit(column.required), missing)
    if column.type != "string":
        checks = checks.when(present(raw) & parsed.isNull(), bad)
    return checks


def _timestamp(value: Column, fmt: str | None, time_zone: str) -> Column:
    """Local wall-clock strings are read in the source's time zone; results are UTC instants."""
    if fmt:
        local = F.try_to_timestamp(value, F.lit(fmt))
        return F.to_utc_timestamp(local, time_zone)
    has_offset = value.rlike(ISO_OFFSET)
    parsed = value.try_cast("timestamp")
    return F.when(has_offset, parsed).otherwise(F.to_utc_timestamp(parsed, time_zone))
