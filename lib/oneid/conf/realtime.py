"""Typed configuration of the realtime stage (``conf/pipeline.yaml``, section ``realtime``).

Where the brokers are is environment conf (``kafka:`` in ``conf/<env>.yaml``); what the stream
does is here: the topics, the realtime tags, the trigger rules and where triggers are delivered.
Trigger conditions reuse the audience vocabulary (``{tag, op, value}`` on the latest batch tags,
``{audience, include}``, ``and`` / ``or`` / ``not``) and add ``{realtime_tag, op, value}`` and
``{event, where}`` (the event that arrived). ``docs/realtime.md`` documents it.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from oneid.conf.audiences import (
    AUDIENCE_ID,
    AudienceRef,
    TagCondition,
    TagOp,
    kind_by_first_key,
)
from oneid.conf.tags import TAG_NAME_LENGTH, is_tag_name

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TAG_TABLE_COLUMNS = ("key", "provisional", "oneid", "as_of", "batch_id")
"""Columns of ``realtime.tags`` besides one per tag: no tag takes their names."""
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@functools.lru_cache(maxsize=1024)
def duration_seconds(text: str) -> int:
    """``"10m"`` → 600; units s, m, h, d (cached: the stream asks per event)."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"expected a duration such as 30s, 10m, 1h, 24h, 7d, got {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class RealtimeTagConf(_Strict):
    """One realtime tag of a OneID (or provisional key), recomputed on each of its events.

    ``count`` / ``sum`` (of the numeric property ``sum``) over the events named ``event`` whose
    properties match ``where`` in the last ``window``; ``last_time``: event time of the latest
    matching event; ``last_value``: the property ``property`` of the latest matching event.
    """

    name: str
    kind: Literal["count", "sum", "last_time", "last_value"]
    event: str | None = None
    """Event name; None matches every event."""
    where: dict[str, Any] = Field(default_factory=dict)
    """Property filters: a value means equality, a list any of them (compared as text)."""
    window: str | None = None
    """``count`` / ``sum`` only: 10m, 1h, 24h ... (a sliding window ending at the key's latest
    event time)."""
    sum: str | None = None
    value_of: str | None = Field(default=None, alias="property")
    description: str = ""

    @model_validator(mode="after")
    def _shape(self) -> RealtimeTagConf:
        if not is_tag_name(self.name):
            raise ValueError(
                f"realtime tag name {self.name!r} must be lower_snake_case of at most "
                f"{TAG_NAME_LENGTH} characters"
            )
        if self.name in TAG_TABLE_COLUMNS:
            raise ValueError(
                f"realtime tag name {self.name!r} is a column of realtime.tags "
                f"({', '.join(TAG_TABLE_COLUMNS)}): choose another"
            )
        windowed = self.kind in ("count", "sum")
        if windowed != (self.window is not None):
            raise ValueError(f"{self.name}: `window` is required for count / sum, only for them")
        if self.window is not None:
            duration_seconds(self.window)
        if (self.kind == "sum") != (self.sum is not None):
            raise ValueError(f"{self.name}: `sum` (a numeric property) goes with kind sum")
        if (self.kind == "last_value") != (self.value_of is not None):
            raise ValueError(f"{self.name}: `property` goes with kind last_value")
        return self

    @property
    def window_seconds(self) -> int:
        return duration_seconds(self.window) if self.window else 0


class RealtimeTagCondition(_Strict):
    """``{realtime_tag, op, value}``: a realtime tag after the event counted."""

    realtime_tag: str
    op: TagOp
    value: Any = None


class EventMatch(_Strict):
    """``{event, where}``: the arriving event has this name and these properties."""

    event: str = Field(min_length=1)
    where: dict[str, Any] = Field(default_factory=dict)


class AllOf(_Strict):
    all_of: tuple[RuleCondition, ...] = Field(alias="and", min_length=1)


class AnyOf(_Strict):
    any_of: tuple[RuleCondition, ...] = Field(alias="or", min_length=1)


class Not(_Strict):
    negated: RuleCondition = Field(alias="not")


_KIND_BY_KEY = {
    "realtime_tag": "RealtimeTagCondition",
    "tag": "TagCondition",
    "audience": "AudienceRef",
    "event": "EventMatch",
    "and": "AllOf",
    "or": "AnyOf",
    "not": "Not",
}


RuleCondition = Annotated[
    Annotated[RealtimeTagCondition, Tag("RealtimeTagCondition")]
    | Annotated[TagCondition, Tag("TagCondition")]
    | Annotated[AudienceRef, Tag("AudienceRef")]
    | Annotated[EventMatch, Tag("EventMatch")]
    | Annotated[AllOf, Tag("AllOf")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[Not, Tag("Not")],
    Discriminator(
        kind_by_first_key(_KIND_BY_KEY),
        custom_error_type="condition",
        custom_error_message=(
            "a condition needs one of the keys realtime_tag, tag, audience, event, and, or, not"
        ),
    ),
]


class FrequencyCap(_Strict):
    """At most ``max`` triggers of the rule per OneID per ``per`` (a duration, or ``day``: the
    calendar day in Asia/Shanghai)."""

    max: PositiveInt = 1
    per: str = "day"

    @field_validator("per")
    @classmethod
    def _per(cls, value: str) -> str:
        if value != "day":
            duration_seconds(value)
        return value


class QuietHours(_Strict):
    """No push between ``start`` and ``end`` (Asia/Shanghai wall clock, may wrap midnight):
    a trigger in quiet hours is recorded with status ``quiet`` and not sent."""

    start: datetime.time
    end: datetime.time


class TriggerRule(_Strict):
    """A trigger: on ``on_event`` (the arriving event), when ``when`` holds → push ``message``."""

    description: str = ""
    on_event: EventMatch
    when: RuleCondition | None = None
    message: str = Field(min_length=1)
    """What the marketing platform should send (a template id on its side)."""
    cap: FrequencyCap = Field(default_factory=FrequencyCap)
    quiet_hours: QuietHours | None = None
    holdout: float = Field(default=0.0, ge=0, le=0.5)
    """Share of OneIDs kept as a control group for this rule (recorded, never sent)."""


class WebhookConf(_Strict):
    """The marketing-automation webhook every trigger is POSTed to."""

    url: str = "http://127.0.0.1:8765/oneid/triggers"
    secret_env: str = "ONEID_WEBHOOK_SECRET"
    """Environment variable holding the HMAC-SHA256 signing key (never in files or logs)."""
    allow_demo_secret: bool = False
    timeout_seconds: PositiveFloat = 5.0
    attempts: PositiveInt = 4
    backoff_seconds: PositiveFloat = 0.5
    """Wait before the 2nd attempt; doubled for each next one."""
    parallel: PositiveInt = 32
    """Requests in flight at once, one kept-alive connection each (one thread sends them all)."""
    payload_identifiers: Literal["none", "masked"] = "masked"
    """Identifiers in the payload: their masked form (default) or none; never raw values."""


class RealtimeConf(_Strict):
    """The realtime stage: Kafka events → realtime tags and triggers (``docs/realtime.md``)."""

    events_topic: str = "events"
    starting_offsets: Literal["earliest", "latest"] = "latest"
    """Where a new stream (no checkpoint yet) starts; a checkpoint always wins."""
    trigger_seconds: float = Field(default=0.5, ge=0)
    max_offsets_per_trigger: PositiveInt = 50_000
    max_restarts: int = Field(default=5, ge=0)
    """A failed query is restarted from its checkpoint this many times in a row, then fails."""
    checkpoint_dir: str | None = None
    """Default ``<warehouse>/_streaming/realtime``."""
    allowed_lateness: str = "10m"
    """An event older than its key's latest event by more than this is ``late``: counted in
    ``realtime.events`` (status late), left out of tags and triggers."""
    identity_refresh_seconds: PositiveFloat = 5.0
    """How often the stream looks for a newer ``identity.oneid_map`` version."""
    tags_every_seconds: PositiveFloat = 30.0
    """Cadence of ``realtime.tags`` snapshots of the keys that changed."""
    store_tags: bool = True
    """Also write each snapshot of a OneID's realtime tags into the data service's online
    store (``serve:``), where profiles answer them with ``updated_at``."""
    state_ttl: str = "2d"
    """A key's state goes when it has had no event for this long (longer than every window)."""
    state_buckets: int = Field(default=64, ge=1, le=100_000)
    """People per state key: the stateful operator is keyed by ``pmod(xxhash64(key),
    state_buckets)``. Fixed for a checkpoint's life (a new value needs a new checkpoint)."""
    jvm_options: str = "-XX:TieredStopAtLevel=1"
    """Extra options of the local driver JVM that ``oneid realtime`` starts. The default stops
    HotSpot at its quick compiler (C1): the optimising compiler's threads kept compiling
    through the benchmark's load and took most of the stream's JVM CPU on 2 cores, while the
    micro-batches are small."""
    tags: tuple[RealtimeTagConf, ...] = ()
    rules: dict[str, TriggerRule] = Field(default_factory=dict)
    webhook: WebhookConf = Field(default_factory=WebhookConf)

    @field_validator("allowed_lateness", "state_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _references(self) -> RealtimeConf:
        names = [tag.name for tag in self.tags]
        if len(names) != len(set(names)):
            raise ValueError(f"realtime tag names repeat: {names}")
        longest = max((tag.window_seconds for tag in self.tags), default=0)
        if duration_seconds(self.state_ttl) < longest:
            raise ValueError(f"state_ttl {self.state_ttl} is shorter than the longest window")
        for rule_id, rule in self.rules.items():
            if not _NAME.match(rule_id):
                raise ValueError(f"rule id {rule_id!r} must be lower_snake_case")
            for condition in iter_rule_conditions(rule.when):
                named = getattr(condition, "audience", None) or getattr(condition, "tag", None)
                if named is not None and not AUDIENCE_ID.match(named):
                    raise ValueError(f"rules.{rule_id}: {named!r} is not a tag or audience id")
                if isinstance(condition, RealtimeTagCondition) and condition.realtime_tag not in (
                    names
                ):
                    raise ValueError(
                        f"rules.{rule_id}: unknown realtime_tag {condition.realtime_tag!r}"
                    )
        return self

    @property
    def lateness_seconds(self) -> int:
        return duration_seconds(self.allowed_lateness)


def iter_rule_conditions(condition: RuleCondition | None) -> Iterator[RuleCondition]:
    """Every node of a rule's condition tree, parents first."""
    if condition is None:
        return
    yield condition
    children: tuple = ()
    if isinstance(condition, AllOf):
        children = condition.all_of
    elif isinstance(condition, AnyOf):
        children = condition.any_of
    elif isinstance(condition, Not):
        children = (condition.negated,)
    for child in children:
        yield from iter_rule_conditions(child)


for _model in (AllOf, AnyOf, Not, TriggerRule, RealtimeConf):
    _model.model_rebuild()
