"""Typed parsing of canonical fields, shared by ingest (validation) and standardise (silver).

Every parser is a ``try_`` expression: a value that does not parse gives NULL, and
:func:`field_problem` turns "present but NULL after parsing" into a reason code, so a bad value
is quarantined instead of silently becoming NULL. Values that parse but cannot be right (an
amount below its ``min``, a year 12025, a zone abbreviation that means three zones) are
quarantined the same way.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F

from oneid.conf.pipeline import NUMERIC_TIME_FORMATS, ColumnConf, SourceConf

DECIMAL_TYPE = "decimal(18,2)"
EXACT_DECIMAL = "decimal(38,18)"
ISO_OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s?(Z|[+-]\d{2}(:?\d{2})?)$"
"""A time of day followed by an offset (``08:00+08:00``, ``08:00:00Z``, ``08:00:00+08``)."""
ISO_NO_SECONDS = r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2})(\s?(Z|[+-]\d{2}(:?\d{2})?))?$"
"""ISO 8601 without seconds, which Spark's cast refuses before an offset: ``:00`` is added."""
ZONE_SUFFIX = r"\s+([A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*)$"
"""A zone written after a local time: a region (``Asia/Shanghai``) or an abbreviation."""
UNAMBIGUOUS_ZONES = ("UTC", "GMT", "UT", "Z")
NOT_ZONES = ("AM", "PM")
FORMAT_ZONE_LETTERS = re.compile(r"[zZvVOXx]")
NUMBER_TYPE = "decimal(24,6)"
EPOCH_LIMITS = {"epoch_seconds": 10**11, "epoch_millis": 10**14}
"""Beyond these (year 5138) a number is not a time of that unit (seconds sent as millis)."""
EXCEL_EPOCH = datetime.date(1899, 12, 30)
EXCEL_UNIX_DAYS = 25569
"""Serial day of 1970-01-01."""
EXCEL_FIRST = 61
"""First serial Excel counts correctly (60 is its 1900-02-29, a day that never was)."""
EXCEL_LAST = 2958466
"""Serial of 10000-01-01, which Excel does not reach."""


def present(raw: Column) -> Column:
    """True when a raw string holds something other than whitespace."""
    return raw.isNotNull() & (F.length(F.trim(raw)) > 0)


def parse_field(
    raw: Column, column: ColumnConf, time_zone: str, zone_aliases: Mapping[str, str] | None = None
) -> Column:
    """The typed value of a raw string column (NULL when absent or unparseable).

    ``zone_aliases`` maps the zone abbreviations a source may write after its times to zones.
    """
    value = F.when(present(raw), F.trim(raw))
    if column.type == "decimal":
        return value.try_cast(DECIMAL_TYPE)
    if column.type == "integer":
        return value.try_cast("bigint")
    if column.type == "timestamp":
        return _timestamp(value, column.formats(), time_zone, zone_aliases or {})
    if column.type == "date":
        return F.coalesce(
            *[_date(value, fmt, time_zone) for fmt in column.formats() or ("yyyy-MM-dd",)]
        )
    if column.type == "enum":
        return F.when(value.isin(list(column.values)), value)
    return value


def field_problem(
    raw: Column, column: ColumnConf, time_zone: str, zone_aliases: Mapping[str, str] | None = None
) -> Column:
    """Reason code when the value is missing but required, not parseable, or implausible."""
    parsed = parse_field(raw, column, time_zone, zone_aliases)
    name = column.field
    checks = F.when(~present(raw) & F.lit(column.required), F.lit(f"missing_required:{name}"))
    if column.type == "string":
        return checks
    if column.type == "timestamp" and _zone_suffix_allowed(column.formats()):
        zone = _zone(_zone_token(F.trim(raw)), time_zone, zone_aliases or {})
        checks = checks.when(present(raw) & zone.isNull(), F.lit(f"ambiguous_time_zone:{name}"))
    checks = checks.when(present(raw) & parsed.isNull(), F.lit(f"bad_{column.type}:{name}"))
    outside = _outside(parsed, column)
    if outside is not None:
        checks = checks.when(outside, F.lit(f"out_of_range:{name}"))
    if column.type == "decimal":
        exact = F.trim(raw).try_cast(EXACT_DECIMAL)
        rounded = exact != F.round(exact, column.decimals())
        checks = checks.when(rounded, F.lit(f"too_many_decimals:{name}"))
    return checks


def currency_of(source: SourceConf) -> Column:
    """The ISO code of a row's amounts: its ``currency_field`` cell (upper-cased) when there is
    one and it is not empty, else the source's ``currency``."""
    declared = F.lit(source.currency)
    if not source.currency_field:
        return declared
    cell = F.col(source.currency_field)
    return F.coalesce(F.when(present(cell), F.upper(F.trim(cell))), declared)


def currency_problem(source: SourceConf) -> Column | None:
    """``bad_currency:<field>`` when a row's currency cell is not a three-letter code."""
    if not source.currency_field:
        return None
    bad = ~currency_of(source).rlike(r"^[A-Z]{3}$")
    return F.when(bad, F.lit(f"bad_currency:{source.currency_field}"))


def _outside(parsed: Column, column: ColumnConf) -> Column | None:
    """True when a parsed value is below or above the column's bounds (None: no bounds)."""
    low, high = column.bounds()
    if column.type == "timestamp":
        low = _utc_midnight(low) if low else None
        high = _utc_midnight(high + datetime.timedelta(days=1)) if high else None
        too_high = parsed >= F.lit(high) if high else None
    else:
        too_high = parsed > F.lit(high) if high is not None else None
    too_low = parsed < F.lit(low) if low is not None else None
    parts = [part for part in (too_low, too_high) if part is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] | parts[1]


def _utc_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.timezone.utc)


def _patterns(formats: tuple[str, ...]) -> list[str]:
    return [fmt for fmt in formats if fmt not in NUMERIC_TIME_FORMATS]


def _zone_suffix_allowed(formats: tuple[str, ...]) -> bool:
    """A zone after the time is read by OneID unless the formats are numbers only or a pattern
    parses a zone itself."""
    patterns = _patterns(formats)
    if formats and not patterns:
        return False
    return not any(FORMAT_ZONE_LETTERS.search(re.sub(r"'[^']*'", "", p)) for p in patterns)


def _number(value: Column) -> Column:
    return value.try_cast(NUMBER_TYPE)


def _excel_serial(value: Column) -> Column:
    """The serial day number where Excel counts days correctly, else NULL."""
    number = _number(value)
    return F.when((number >= EXCEL_FIRST) & (number < EXCEL_LAST), number)


def _numeric_timestamp(value: Column, fmt: str, time_zone: str) -> Column:
    """UTC instant of an epoch number, or of an Excel serial read on the source's wall clock;
    NULL for a number outside the format's range."""
    if fmt == "excel_serial":
        wall = F.timestamp_seconds((_excel_serial(value) - EXCEL_UNIX_DAYS) * 86400)
        return F.to_utc_timestamp(wall, time_zone)
    number = _number(value)
    seconds = number if fmt == "epoch_seconds" else number / 1000
    return F.when(F.abs(number) < EPOCH_LIMITS[fmt], F.timestamp_seconds(seconds))


def _date(value: Column, fmt: str, time_zone: str) -> Column:
    """A date by one format: a pattern, an Excel serial's day, an epoch's day in the zone."""
    if fmt == "excel_serial":
        return F.date_add(F.lit(EXCEL_EPOCH), F.floor(_excel_serial(value)).cast("int"))
    if fmt in NUMERIC_TIME_FORMATS:
        return F.to_date(F.from_utc_timestamp(_numeric_timestamp(value, fmt, time_zone), time_zone))
    return F.to_date(F.try_to_timestamp(value, F.lit(fmt)))


def _zone_token(value: Column) -> Column:
    """The zone written after a local time (``Asia/Shanghai``, ``CST``), or ``''``."""
    token = F.regexp_extract(value, ZONE_SUFFIX, 1)
    return F.when(F.upper(token).isin(*NOT_ZONES), F.lit("")).otherwise(token)


def _zone(token: Column, time_zone: str, zone_aliases: Mapping[str, str]) -> Column:
    """Zone id a value is read in: the source's when none is written, a region or UTC as
    written, an abbreviation only as conf maps it; NULL for any other abbreviation."""
    upper = F.upper(token)
    zone = F.when(token == "", F.lit(time_zone))
    for abbreviation, name in sorted(zone_aliases.items()):
        zone = zone.when(upper == abbreviation.upper(), F.lit(name))
    return zone.when(token.contains("/") | upper.isin(*UNAMBIGUOUS_ZONES), token)


def _wall_clock(value: Column, patterns: list[str]) -> Column:
    """The local time of the first pattern that parses ``value``."""
    return F.coalesce(*[F.try_to_timestamp(value, F.lit(p)) for p in patterns])


def _timestamp(
    value: Column, formats: tuple[str, ...], time_zone: str, zone_aliases: Mapping[str, str]
) -> Column:
    """Local wall-clock strings are read in the zone written after them, else the source's
    time zone; numbers as their format says; the first format that parses wins; results are
    UTC instants."""
    patterns = _patterns(formats)
    if formats:
        plain = F.coalesce(
            *[
                _numeric_timestamp(value, fmt, time_zone)
                if fmt in NUMERIC_TIME_FORMATS
                else F.to_utc_timestamp(_wall_clock(value, [fmt]), time_zone)
                for fmt in formats
            ]
        )
    else:
        parsed = F.regexp_replace(value, ISO_NO_SECONDS, "$1:00$2").try_cast("timestamp")
        plain = F.when(value.rlike(ISO_OFFSET), parsed).otherwise(
            F.to_utc_timestamp(parsed, time_zone)
        )
    if not _zone_suffix_allowed(formats):
        return plain
    token = _zone_token(value)
    body = F.rtrim(F.left(value, F.length(value) - F.length(token)))
    if patterns:
        body = F.date_format(_wall_clock(body, patterns), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
    # Spark reads "<local time> <zone id>" itself; try_cast gives NULL for an unknown region.
    zoned = F.concat(body, F.lit(" "), _zone(token, time_zone, zone_aliases)).try_cast("timestamp")
    return F.when(token == "", plain).otherwise(zoned)
