"""Realtime tags and trigger rules of one key (a OneID or a provisional key), in pure Python.

The stream keeps, per key, the contributions of its recent events to the windowed tags, the
latest value of each ``last_*`` tag and when each rule fired; :func:`process_events` takes
that state and the key's new events (in event-time order) and gives the triggers. Everything
here depends on event time only, never on the clock, so a micro-batch replayed after a crash
decides exactly as the first time did.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oneid.conf.audiences import AudienceRef, TagCondition
from oneid.conf.realtime import (
    AllOf,
    AnyOf,
    EventMatch,
    Not,
    RealtimeConf,
    RealtimeTagCondition,
    RealtimeTagConf,
    RuleCondition,
    TriggerRule,
    duration_seconds,
)
from oneid.realtime.events import SHANGHAI, as_text

STATE_VERSION = 2
SENT, CAPPED, QUIET, HOLDOUT = "send", "capped", "quiet", "holdout"
HOLDOUT_BUCKETS = 1_000_000


@dataclass
class KeyState:
    """What the stream remembers of one key (serialised as JSON in the state store)."""

    max_ms: int = 0
    hits: list[list] = field(default_factory=list)
    """[event time ms, tag index, value] of windowed tags' matching events."""
    last: dict[str, list] = field(default_factory=dict)
    """tag name → [event time ms, value] of ``last_time`` / ``last_value`` tags."""
    fired: dict[str, list[int]] = field(default_factory=dict)
    """rule id → event times (ms) it fired at (sent or held out), within the cap period."""

    def dumps(self) -> str:
        body = {"v": STATE_VERSION, "max_ms": self.max_ms, "hits": self.hits}
        body |= {"last": self.last, "fired": self.fired}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str | None) -> KeyState:
        if not text:
            return cls()
        body = json.loads(text)
        return cls(body["max_ms"], body["hits"], body["last"], body["fired"])


@dataclass(frozen=True)
class StreamEvent:
    event_id: str
    time_ms: int
    name: str
    properties: Mapping[str, str]


@dataclass(frozen=True)
class Fired:
    rule_id: str
    trigger_id: str
    status: str
    event: StreamEvent
    tags: dict[str, Any]


@dataclass(frozen=True)
class BatchFacts:
    """The key's latest batch tags and audience memberships (empty for a provisional key)."""

    tags: Mapping[str, Any] = field(default_factory=dict)
    audiences: Mapping[str, bool] = field(default_factory=dict)
    """audience id → in its holdout."""


def trigger_id(event_id: str, rule_id: str) -> str:
    """The idempotency key of a trigger: the same event and rule always give the same id."""
    return hashlib.sha256(f"{event_id}\x1f{rule_id}".encode()).hexdigest()[:32]


def matches(tag_or_match: RealtimeTagConf | EventMatch, event: StreamEvent) -> bool:
    """The event has the name (if one is given) and every property filter holds."""
    if tag_or_match.event is not None and event.name != tag_or_match.event:
        return False
    for prop, wanted in tag_or_match.where.items():
        options = wanted if isinstance(wanted, list | tuple) else [wanted]
        if event.properties.get(prop) not in {as_text(v) for v in options}:
            return False
    return True


def tag_values(conf: RealtimeConf, state: KeyState) -> dict[str, Any]:
    """Every realtime tag of the key as of its latest event time (windows end there)."""
    values: dict[str, Any] = {}
    for index, tag in enumerate(conf.tags):
        if tag.kind in ("count", "sum"):
            start = state.max_ms - tag.window_seconds * 1000
            picked = [h[2] for h in state.hits if h[1] == index and h[0] > start]
            values[tag.name] = len(picked) if tag.kind == "count" else float(sum(picked))
        else:
            last = state.last.get(tag.name)
            values[tag.name] = None if last is None else last[1]
    return values


def add_event(conf: RealtimeConf, state: KeyState, event: StreamEvent) -> None:
    """Count the event into the key's tags."""
    state.max_ms = max(state.max_ms, event.time_ms)
    for index, tag in enumerate(conf.tags):
        if not matches(tag, event):
            continue
        if tag.kind == "count":
            state.hits.append([event.time_ms, index, 1])
        elif tag.kind == "sum":
            amount = _number(event.properties.get(tag.sum))
            if amount is not None:
                state.hits.append([event.time_ms, index, amount])
        else:
            value = (
                _iso(event.time_ms)
                if tag.kind == "last_time"
                else event.properties.get(tag.value_of)
            )
            held = state.last.get(tag.name)
            if held is None or event.time_ms >= held[0]:
                state.last[tag.name] = [event.time_ms, value]


def prune(conf: RealtimeConf, state: KeyState) -> None:
    """Forget contributions older than the longest window plus the allowed lateness, and fire
    times older than every cap period."""
    longest = max((t.window_seconds for t in conf.tags), default=0) + conf.lateness_seconds
    state.hits = [h for h in state.hits if h[0] > state.max_ms - longest * 1000]
    keep_ms = max((_cap_seconds(r) for r in conf.rules.values()), default=0) * 1000
    state.fired = {
        rule: kept
        for rule, times in state.fired.items()
        if (kept := [t for t in times if t > state.max_ms - keep_ms])
    }


def process_events(
    conf: RealtimeConf,
    state: KeyState,
    events: list[StreamEvent],
    oneid: int | None,
    batch: BatchFacts,
    key: str = "",
) -> tuple[list[Fired], list[StreamEvent]]:
    """Count ``events`` (event-time order) into ``state``; the triggers they fire and the
    events too late to count (older than the key's latest event by more than the lateness)."""
    fired: list[Fired] = []
    late: list[StreamEvent] = []
    for event in events:
        if state.max_ms and event.time_ms < state.max_ms - conf.lateness_seconds * 1000:
            late.append(event)
            continue
        add_event(conf, state, event)
        tags = None
        for rule_id, rule in conf.rules.items():
            if not matches(rule.on_event, event):
                continue
            tags = tags if tags is not None else tag_values(conf, state)
            if rule.when is not None and not holds(rule.when, event, tags, batch):
                continue
            status = _status(rule_id, rule, state, event, oneid, batch, key)
            if status in (SENT, HOLDOUT):
                state.fired.setdefault(rule_id, []).append(event.time_ms)
            fired.append(Fired(rule_id, trigger_id(event.event_id, rule_id), status, event, tags))
    prune(conf, state)
    return fired, late


def holds(
    condition: RuleCondition, event: StreamEvent, tags: Mapping[str, Any], batch: BatchFacts
) -> bool:
    """Whether a rule condition holds for the event, the key's realtime tags and batch facts."""
    if isinstance(condition, AllOf):
        return all(holds(c, event, tags, batch) for c in condition.all_of)
    if isinstance(condition, AnyOf):
        return any(holds(c, event, tags, batch) for c in condition.any_of)
    if isinstance(condition, Not):
        return not holds(condition.negated, event, tags, batch)
    if isinstance(condition, EventMatch):
        return matches(condition, event)
    if isinstance(condition, RealtimeTagCondition):
        return compare(tags.get(condition.realtime_tag), condition.op, condition.value)
    if isinstance(condition, TagCondition):
        return compare(batch.tags.get(condition.tag), condition.op, condition.value)
    if isinstance(condition, AudienceRef):
        return (condition.audience in batch.audiences) == condition.include
    raise TypeError(f"unknown condition {condition!r}")


def compare(actual: Any, op: str, value: Any) -> bool:
    """The audience vocabulary's operators; a missing value satisfies only ``is_null``."""
    if op == "is_null":
        return actual is None
    if op == "not_null":
        return actual is not None
    if actual is None:
        return False
    if op in ("in", "not_in"):
        inside = any(_equal(actual, v) for v in value)
        return inside if op == "in" else not inside
    if op == "between":
        return _order(value[0], actual) <= 0 <= _order(value[1], actual)
    if op == "contains":
        return str(value) in str(actual)
    if op == "eq":
        return _equal(actual, value)
    if op == "neq":
        return not _equal(actual, value)
    sign = _order(actual, value)
    return {"gt": sign > 0, "gte": sign >= 0, "lt": sign < 0, "lte": sign <= 0}[op]


def in_quiet_hours(rule: TriggerRule, time_ms: int) -> bool:
    if rule.quiet_hours is None:
        return False
    local = dt.datetime.fromtimestamp(time_ms / 1000, SHANGHAI).time()
    start, end = rule.quiet_hours.start, rule.quiet_hours.end
    return start <= local < end if start <= end else (local >= start or local < end)


def in_holdout(rule_id: str, share: float, oneid: int | None, key: str) -> bool:
    """Deterministic control group of a rule: a hash of the OneID (or key) and rule id."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{oneid if oneid is not None else key}\x1f{rule_id}".encode())
    return int(digest.hexdigest()[:12], 16) % HOLDOUT_BUCKETS < round(share * HOLDOUT_BUCKETS)


def _status(
    rule_id: str,
    rule: TriggerRule,
    state: KeyState,
    event: StreamEvent,
    oneid: int | None,
    batch: BatchFacts,
    key: str,
) -> str:
    times = state.fired.get(rule_id, [])
    if rule.cap.per == "day":
        day = _shanghai_day(event.time_ms)
        recent = [t for t in times if _shanghai_day(t) == day]
    else:
        recent = [t for t in times if t > event.time_ms - duration_seconds(rule.cap.per) * 1000]
    if len(recent) >= rule.cap.max:
        return CAPPED
    if in_quiet_hours(rule, event.time_ms):
        return QUIET
    if in_holdout(rule_id, rule.holdout, oneid, key) or _audience_holdout(rule, batch):
        return HOLDOUT
    return SENT


def _audience_holdout(rule: TriggerRule, batch: BatchFacts) -> bool:
    """A rule that targets members of an audience honours that audience's control group."""
    from oneid.conf.realtime import iter_rule_conditions

    return any(
        isinstance(c, AudienceRef) and c.include and batch.audiences.get(c.audience, False)
        for c in iter_rule_conditions(rule.when)
    )


def _cap_seconds(rule: TriggerRule) -> int:
    return 2 * 86400 if rule.cap.per == "day" else duration_seconds(rule.cap.per)


def _shanghai_day(time_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(time_ms / 1000, SHANGHAI).date()


def _iso(time_ms: int) -> str:
    return dt.datetime.fromtimestamp(time_ms / 1000, dt.timezone.utc).isoformat()


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _equal(actual: Any, value: Any) -> bool:
    left, right = _number(str(actual)), _number(str(value))
    if left is not None and right is not None:
        return left == right
    return str(actual) == str(value)


def _order(actual: Any, value: Any) -> int:
    left, right = _number(str(actual)), _number(str(value))
    if left is not None and right is not None:
        return (left > right) - (left < right)
    return (str(actual) > str(value)) - (str(actual) < str(value))
