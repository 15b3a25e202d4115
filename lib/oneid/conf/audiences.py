"""The audience rule tree: typed, frozen models of ``conf/audiences.yaml``.

A condition is a mapping whose first key says what it is::

    {tag: recency_days, op: gt, value: 60}                       # a tag column
    {event: purchase, sum: amount, in_last_days: 30, min: 500}   # events of a type
    {audience: vip_members, include: false}                      # another audience
    {and: [...]}, {or: [...]}, {not: {...}}                      # nesting

These models check the *shape* only, when the conf is loaded. Whether a tag exists, an
operator fits its type or a referenced audience is defined needs the tag registry and the event
columns: the audiences stage checks that when it compiles the rules
(``oneid.audiences.compile_audiences``), so commands that do not use audiences never pay for it.
The language is documented in ``docs/audiences.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
)

from oneid.conf.yaml_file import read_yaml
from oneid.errors import ConfigError

TagOp = Literal[
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "is_null",
    "not_null",
    "contains",
]
AUDIENCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagCondition(_Strict):
    """``{tag, op, value}``: compare one tag column of the OneID."""

    tag: str
    op: TagOp
    value: Any = None
    """Absent for ``is_null`` / ``not_null``; a list for ``between``, ``in``, ``not_in``."""

    @property
    def has_value(self) -> bool:
        return "value" in self.model_fields_set


class EventCondition(_Strict):
    """Count (or ``sum`` of a numeric property) of events of one type in the last N days.

    ``where`` filters on event properties: a value means equality, a list means any of them.
    The condition holds when the count (or sum) is ``>= min`` and ``<= max``.
    """

    event: str = Field(min_length=1)
    in_last_days: PositiveInt
    where: dict[str, Any] = Field(default_factory=dict)
    sum: str | None = None
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None


def _non_empty_list(value: Any, key: str) -> Any:
    if isinstance(value, list | tuple) and not value:
        raise ValueError(f"'{key}' needs at least one condition")
    return value


class AudienceRef(_Strict):
    """Membership of another audience (``include: false`` means not a member of it)."""

    audience: str
    include: bool = True


class AllOf(_Strict):
    """``{and: [...]}``: every condition holds."""

    all_of: tuple[Condition, ...] = Field(alias="and")

    @field_validator("all_of", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        return _non_empty_list(value, "and")


class AnyOf(_Strict):
    """``{or: [...]}``: at least one condition holds."""

    any_of: tuple[Condition, ...] = Field(alias="or")

    @field_validator("any_of", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        return _non_empty_list(value, "or")


class Not(_Strict):
    """``{not: {...}}``: the condition does not hold."""

    negated: Condition = Field(alias="not")


_KIND_BY_KEY = {
    "tag": "TagCondition",
    "event": "EventCondition",
    "audience": "AudienceRef",
    "and": "AllOf",
    "or": "AnyOf",
    "not": "Not",
}
_MODEL_NAMES = frozenset(_KIND_BY_KEY.values())


def kind_by_first_key(kinds: Mapping[str, str]):
    """A discriminator: the model name of a condition, told by which of ``kinds``' keys the
    mapping has (the audience rules here, the realtime trigger rules in conf/realtime.py)."""

    def kind(raw: Any) -> str | None:
        if isinstance(raw, BaseModel):
            return type(raw).__name__
        if isinstance(raw, Mapping):
            return next((kind for key, kind in kinds.items() if key in raw), None)
        return None

    return kind


_condition_kind = kind_by_first_key(_KIND_BY_KEY)


Condition = Annotated[
    Annotated[TagCondition, Tag("TagCondition")]
    | Annotated[EventCondition, Tag("EventCondition")]
    | Annotated[AudienceRef, Tag("AudienceRef")]
    | Annotated[AllOf, Tag("AllOf")]
    | Annotated[AnyOf, Tag("AnyOf")]
    | Annotated[Not, Tag("Not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition needs one of the keys tag, event, audience, and, or, not",
    ),
]


class AudienceConf(_Strict):
    """One audience: its rule and how its membership is published."""

    version: PositiveInt = 1
    """Bump when the rule changes meaning; the diff job treats a new version per
    ``on_new_version``."""
    description: str = ""
    holdout: float = Field(default=0.0, ge=0, le=0.5)
    """Share of members flagged ``holdout`` (control group), from ``xxhash64(oneid, id)``."""
    on_new_version: Literal["emit_all", "baseline"] = "emit_all"
    """First run of a new version: publish every member as entered (``emit_all``) or take the
    membership as the baseline and publish nothing (``baseline``)."""
    rule: Condition


class AudiencesConf(_Strict):
    """``conf/audiences.yaml``: global exclusions and the audiences, by id."""

    exclusions: tuple[Condition, ...] = ()
    """A OneID matching any of these is in no audience (opted out, test accounts)."""
    audiences: dict[str, AudienceConf] = Field(default_factory=dict)

    @field_validator("audiences")
    @classmethod
    def _ids(cls, value: dict[str, AudienceConf]) -> dict[str, AudienceConf]:
        bad = [key for key in value if not AUDIENCE_ID.match(key)]
        if bad:
            raise ValueError(
                f"audience id(s) {bad} must start with a letter and hold only letters, digits, _"
            )
        return value


for _model in (AllOf, AnyOf, Not, AudienceConf, AudiencesConf):
    _model.model_rebuild()


def parse_audiences(raw: Any, source: str | None = None) -> AudiencesConf:
    """Validate a parsed YAML document; errors name ``source``, the key path and the problem."""
    try:
        return AudiencesConf.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        prefix = f"{source}: " if source else ""
        lines = [prefix + _error_line(err) for err in exc.errors()]
        raise ConfigError("invalid audience rules\n  " + "\n  ".join(lines)) from None


def load_audiences(path: str | Path) -> AudiencesConf:
    """Read and validate an audiences YAML file (e.g. ``conf/audiences.yaml``)."""
    path = Path(path)
    return parse_audiences(read_yaml(path), str(path))


def iter_conditions(condition: Condition, path: str) -> Iterator[tuple[Condition, str]]:
    """Every node of a rule tree with its path (``audiences.a.rule.and[1].not``), parents first."""
    yield condition, path
    if isinstance(condition, AllOf):
        for i, child in enumerate(condition.all_of):
            yield from iter_conditions(child, f"{path}.and[{i}]")
    elif isinstance(condition, AnyOf):
        for i, child in enumerate(condition.any_of):
            yield from iter_conditions(child, f"{path}.or[{i}]")
    elif isinstance(condition, Not):
        yield from iter_conditions(condition.negated, f"{path}.not")


def format_path(loc: tuple[str | int, ...]) -> str:
    """``('audiences', 'a', 'rule', 'AllOf', 'and', 1)`` → ``audiences.a.rule.and[1]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in _MODEL_NAMES:
            text += f".{part}" if text else part
    return text or "(top level)"


_KEY_HINTS = {
    "count": " (an event condition counts by default: write min / max on it directly)",
}


def _error_line(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        hint = _KEY_HINTS.get(str(loc[-1]), "")
        return f"{format_path(loc[:-1])}: unknown key {loc[-1]!r}{hint}"
    if kind == "missing":
        return f"{format_path(loc[:-1])}: missing key {loc[-1]!r}"
    message = err["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"{format_path(loc)}: {message}"
    if kind == "condition":
        got = err.get("input")
        shown = f"keys {sorted(got)}" if isinstance(got, Mapping) else repr(got)
        return f"{format_path(loc)}: {message} (got {shown})"
    return f"{format_path(loc)}: {message} (got {err.get('input')!r})"
