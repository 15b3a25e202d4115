"""One event from the bus: parsed, checked, its identifiers normalised and keyed-hashed.

An event is a JSON object::

    {"event_id": "e-1", "time": "2025-07-01T10:00:00+08:00", "name": "view_item",
     "ids": {"member_id": "M1", "device:idfa": "…", "wx_openid:wx8f…": "o…", "phone": "138…"},
     "properties": {"category": "双眼皮", "amount": 12.5}}

``time`` is ISO 8601 (an offset, else Asia/Shanghai wall clock) or epoch milliseconds. ``ids``
keys are the namespaced identifier types of ``standardize``. Pure Python (it runs inside the
stream's ``mapInArrow`` function): a bad event gives a reason code, never an exception.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

from oneid.standardize.hashing import UNKNOWN_TYPE, HashKey, hash_identifier

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
UNPARSEABLE = "unparseable"
NOT_AN_OBJECT = "not_an_object"
MISSING_EVENT_ID = "missing_event_id"
MISSING_TIME = "missing_time"
BAD_TIME = "bad_time"
MISSING_NAME = "missing_name"
NO_IDENTIFIER = "no_identifier"
UNKNOWN_IDENTIFIER_TYPE = UNKNOWN_TYPE  # standardize's reason, a quarantine reason here too
BAD_PROPERTIES = "bad_properties"
QUARANTINE_REASONS = (
    UNPARSEABLE,
    NOT_AN_OBJECT,
    MISSING_EVENT_ID,
    MISSING_TIME,
    BAD_TIME,
    MISSING_NAME,
    NO_IDENTIFIER,
    UNKNOWN_IDENTIFIER_TYPE,
    BAD_PROPERTIES,
)
"""Why an event is quarantined; ``no_identifier:<reason>`` when every identifier it carried was
rejected by the normaliser (e.g. ``no_identifier:invalid_phone``)."""


@dataclass(frozen=True)
class Identifier:
    id_type: str
    value_hash: str
    masked: str


@dataclass(frozen=True)
class Event:
    event_id: str
    time_ms: int
    name: str
    identifiers: tuple[Identifier, ...]
    properties: dict[str, str] = field(default_factory=dict)
    rejected: tuple[tuple[str, str], ...] = ()
    """(id_type, reason) of identifiers the normaliser refused (the event still counts)."""


def parse_event(
    raw: str | None, key: HashKey, junk_values: Mapping[str, frozenset[str]]
) -> Event | str:
    """The event, or the reason it goes to quarantine."""
    try:
        body = json.loads(raw) if raw is not None else None
    except (ValueError, TypeError):
        return UNPARSEABLE
    if not isinstance(body, dict):
        return NOT_AN_OBJECT
    event_id = as_text(body.get("event_id"))
    if not event_id:
        return MISSING_EVENT_ID
    if body.get("time") in (None, ""):
        return MISSING_TIME
    time_ms = parse_time(body["time"])
    if time_ms is None:
        return BAD_TIME
    name = as_text(body.get("name"))
    if not name:
        return MISSING_NAME
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        return BAD_PROPERTIES
    ids = body.get("ids") or {}
    if not isinstance(ids, dict) or not ids:
        return NO_IDENTIFIER
    identifiers, rejected = [], []
    for id_type, value in sorted(ids.items()):
        if value in (None, ""):
            continue
        value_hash, masked, reason = hash_identifier(key, junk_values, id_type, as_text(value))
        if reason == UNKNOWN_TYPE:
            return UNKNOWN_IDENTIFIER_TYPE
        if value_hash is None:
            rejected.append((id_type, reason))
        else:
            identifiers.append(Identifier(id_type, value_hash, masked))
    if not identifiers:
        return f"{NO_IDENTIFIER}:{rejected[0][1]}" if rejected else NO_IDENTIFIER
    props = {str(k): as_text(v) for k, v in properties.items() if v is not None}
    return Event(event_id, time_ms, name, tuple(identifiers), props, tuple(rejected))


def parse_time(value: object) -> int | None:
    """Epoch milliseconds of an ISO 8601 text (Asia/Shanghai when it has no offset) or of an
    epoch-milliseconds number; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) and value > 0 else None
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return int(moment.timestamp() * 1000)


def as_text(value: object) -> str:
    """A JSON value as the text the stream compares: strings trimmed, integral floats as ints,
    anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
