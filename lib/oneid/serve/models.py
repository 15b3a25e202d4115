"""Request and response bodies of the API (they make its OpenAPI spec, docs/openapi.json)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from oneid.conf.tags import TAG_NAME, TAG_NAME_LENGTH

Scalar = str | int | float | bool | None
MAX_TAGS = 200
"""Most tag names one request selects."""
TagName = Annotated[str, StringConstraints(pattern=TAG_NAME.pattern, max_length=TAG_NAME_LENGTH)]
"""A tag's name as conf names tags (``oneid.conf.tags.is_tag_name``): a GET selecting
``MAX_TAGS`` of them fits the HTTP server's request line (16 KB), which refuses a longer one
before the API answers."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifierIn(_Body):
    id_type: str = Field(
        min_length=1,
        max_length=100,
        description="phone, email, member_id, wx_openid:<appid>, wx_unionid, "
        "douyin_openid:<app>, device:idfa|oaid|imei|android_id, wecom_external_userid",
        examples=["phone"],
    )
    value: str = Field(
        min_length=1,
        max_length=512,
        description="The raw value as the caller has it; normalised and keyed-hashed by the "
        "service, never stored or logged.",
        examples=["138 1234 5678"],
    )


class LookupRequest(IdentifierIn):
    with_profile: bool = Field(False, description="Also answer the profile (profile:read).")
    tags: list[TagName] | None = Field(
        None, max_length=MAX_TAGS, description="Only these tags in the profile (default: all)."
    )


class BatchLookupRequest(_Body):
    items: list[IdentifierIn] = Field(min_length=1, description="At most serve.batch_limit.")


class Error(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: Error


class RetiredError(Error):
    code: Literal["oneid_retired"]
    oneid: int = Field(
        description="The retired OneID (where the merges from the one asked for end)."
    )
    requested_oneid: int | None = Field(
        None, description="The OneID asked for, when it was merged into ``oneid``."
    )
    split_into: list[int] = Field(
        description="Live OneIDs that split off ``oneid`` before it retired (may be empty): "
        "look them up, or look the person up again by an identifier."
    )


class RetiredResponse(BaseModel):
    error: RetiredError


class IdentifierOut(BaseModel):
    id_type: str
    masked: str | None
    sources: list[str] | None
    first_seen: str | None
    last_seen: str | None


class TagOut(BaseModel):
    name: str
    value: Scalar | list | dict
    source: Literal["batch", "realtime"]
    as_of: str | None = Field(None, description="Batch tags: the day they were computed for.")
    updated_at: str | None = Field(None, description="Realtime tags: when they last changed.")


class AudienceOut(BaseModel):
    audience_id: str
    version: int | None
    entered_at: str | None
    holdout: bool | None = Field(None, description="In the audience's control group.")


class IdentifierPage(BaseModel):
    items: list[IdentifierOut]
    total: int
    next_offset: int | None


class AudiencePage(BaseModel):
    items: list[AudienceOut]
    total: int
    next_offset: int | None
    as_of: str | None = Field(None, description="Day of the audience snapshot.")


class Profile(BaseModel):
    oneid: int
    requested_oneid: int | None = Field(
        None, description="The OneID asked for, when it was merged into ``oneid``."
    )
    merged_into: int | None = Field(
        None, description="Set when the OneID asked for was retired by a merge."
    )
    store_version: str
    identifier_counts: dict[str, int] | None
    best_phone: str | None
    best_email: str | None
    first_seen: str | None
    last_seen: str | None
    sources: list[str] | None
    records: int | None
    identifiers: IdentifierPage
    tags: list[TagOut]
    audiences: AudiencePage


class LookupResponse(BaseModel):
    oneid: int
    store_version: str
    profile: Profile | None = None


class BatchItem(BaseModel):
    index: int
    status: Literal["found", "not_found", "invalid"]
    oneid: int | None = None
    reason: str | None = Field(None, description="Why a value is invalid (e.g. invalid_phone).")


class BatchLookupResponse(BaseModel):
    store_version: str
    results: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok", "not_ready"]
    store: str
    version: str | None
    identity_run: str | None = None
    as_of: str | None = None
    loaded_at: str | None = None
    reason: str | None = None
