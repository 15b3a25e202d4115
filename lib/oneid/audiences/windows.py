"""Event windows and the aggregate expressions that count events in them.

A window of ``in_last_days: N`` is N whole business days ending with the as-of day, in the
business time zone (the tag registry's ``tags.time_zone``; UTC when compiled without one):
``event_time >= (as_of - (N-1) days) 00:00`` and ``event_time < (as_of + 1 day) 00:00`` there.
The upper bound is shared by every window (events after the as-of day never count) and
applied once, before the single aggregation pass over the events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from oneid.audiences.literals import quote_name, string_literal, timestamp_literal

EVENT_COLUMN = "event"
TIME_COLUMN = "event_time"


def window_start(as_of: dt.date, days: int, time_zone: str = "UTC") -> dt.datetime:
    """First instant of an N-day window ending with ``as_of`` (inclusive)."""
    start = _check_date(as_of) - dt.timedelta(days=days - 1)
    return dt.datetime.combine(start, dt.time(), tzinfo=ZoneInfo(time_zone))


def window_end(as_of: dt.date, time_zone: str = "UTC") -> dt.datetime:
    """First instant after the as-of day (exclusive upper bound of every window)."""
    end = _check_date(as_of) + dt.timedelta(days=1)
    return dt.datetime.combine(end, dt.time(), tzinfo=ZoneInfo(time_zone))


@dataclass(frozen=True)
class EventAggregate:
    """One per-OneID number over the events: a count, or a sum of a numeric property.

    ``filters`` are SQL predicates on event properties (already rendered, literals escaped).
    Audiences that use the same event, filters, sum and window share one aggregate.
    """

    name: str
    event: str
    filters: tuple[str, ...]
    sum_of: str | None
    days: int
    properties: tuple[str, ...] = ()
    """Event properties the aggregate reads (filters and sum)."""
    time_zone: str = "UTC"
    """Zone whose midnights bound the window."""

    def expression(self, as_of: dt.date) -> str:
        """The aggregate over the events frame: ``count_if(...)`` or ``sum(CASE WHEN ...)``."""
        condition = " AND ".join(
            [
                f"{quote_name(EVENT_COLUMN)} = {string_literal(self.event)}",
                *self.filters,
                f"{TIME_COLUMN} >= "
                f"{timestamp_literal(window_start(as_of, self.days, self.time_zone))}",
            ]
        )
        if self.sum_of is None:
            return f"count_if({condition})"
        return f"sum(CASE WHEN {condition} THEN {quote_name(self.sum_of)} END)"


def events_filter(
    aggregates: Sequence[EventAggregate], as_of: dt.date, separator: str = " AND "
) -> str:
    """Predicate keeping only events some aggregate can count (widest window, their types)."""
    zone = aggregates[0].time_zone
    start = window_start(as_of, max(a.days for a in aggregates), zone)
    types = ", ".join(string_literal(e) for e in sorted({a.event for a in aggregates}))
    return separator.join(
        [
            f"{TIME_COLUMN} >= {timestamp_literal(start)}",
            f"{TIME_COLUMN} < {timestamp_literal(window_end(as_of, zone))}",
            f"{quote_name(EVENT_COLUMN)} IN ({types})",
        ]
    )


def _check_date(as_of: dt.date) -> dt.date:
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise TypeError(f"as_of must be a datetime.date, got {as_of!r}")
    return as_of
