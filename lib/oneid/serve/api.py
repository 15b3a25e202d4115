"""The look-up API (FastAPI). It reads the online store only and never starts a Spark job.

Handlers are ``async`` and call the store directly: a store read is a local SQLite page, or a
Redis round trip that look-ups await together (:meth:`ProfileStore.lookup_async`), cheaper
than the thread-pool hop a sync handler costs (BENCHMARKS.md); scale out with
``serve.workers``.

Routes: ``POST /v1/lookup``, ``POST /v1/lookup/batch``, ``GET /v1/profiles/{oneid}`` (and its
``/identifiers`` and ``/audiences`` pages), ``GET /health``, ``GET /ready``. Every error is
``{"error": {"code", "message"}}``; validation errors never echo the values sent.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from oneid.serve.answers import Answers, ApiError
from oneid.serve.auth import Caller, KeyRing
from oneid.serve.models import (
    MAX_TAGS,
    AudiencePage,
    BatchLookupRequest,
    BatchLookupResponse,
    ErrorResponse,
    Health,
    IdentifierPage,
    LookupRequest,
    LookupResponse,
    Profile,
    RetiredResponse,
    TagName,
)

logger = logging.getLogger(__name__)

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (serve-key)")
ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "the body cannot be decoded (not UTF-8)",
        401: "missing or unknown API key",
        403: "the key lacks the scope",
        404: "not found",
        422: "invalid request (a body that is not valid JSON too) or identifier",
        429: "rate limit exceeded (see Retry-After)",
        503: "no store version serving",
    }.items()
}
PROFILE_ERRORS = {
    **ERRORS,
    410: {
        "model": RetiredResponse,
        "description": "the OneID retired without a merge (its identifiers are gone)",
    },
}
OneIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="A OneID")]
MAX_OFFSET = 1_000_000


def create_app(answers: Answers, keys: KeyRing) -> FastAPI:
    """The API over ``answers`` (store, HMAC key, access log) with ``keys``."""
    conf = answers.conf

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await answers.store.aclose()  # what look-ups opened in this event loop

    app = FastAPI(
        title="OneID data service",
        version="1",
        description="Look up OneIDs by identifier and read masked profiles, tags and "
        "audiences from the online store (docs/serving.md).",
        lifespan=lifespan,
    )

    async def caller(request: Request, key: Annotated[str | None, Depends(API_KEY)]) -> Caller:
        found = keys.caller(key)
        if found is None:
            raise ApiError(401, "unauthorized", "missing or unknown API key (header X-API-Key)")
        wait = keys.wait(found)
        if wait > 0:
            retry = {"Retry-After": str(max(1, round(wait)))}
            raise ApiError(429, "rate_limited", "rate limit of this API key exceeded", retry)
        return found

    Who = Annotated[Caller, Depends(caller)]
    PageSize = Annotated[int, Query(ge=1, le=conf.max_page_size)]
    Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

    @app.post("/v1/lookup", response_model=LookupResponse, responses=ERRORS)
    async def lookup(body: LookupRequest, who: Who) -> dict:
        """The OneID of one identifier (the raw value goes in the body, never in a URL)."""
        return await answers.lookup(who, body.id_type, body.value, body.with_profile, body.tags)

    @app.post("/v1/lookup/batch", response_model=BatchLookupResponse, responses=ERRORS)
    async def lookup_batch(body: BatchLookupRequest, who: Who) -> dict:
        """The OneIDs of up to ``serve.batch_limit`` identifiers, in the order sent."""
        return await answers.batch(who, [(item.id_type, item.value) for item in body.items])

    @app.get(
        "/v1/profiles/{oneid}",
        response_model=Profile,
        responses=PROFILE_ERRORS,
        dependencies=[_only("tags", "page_size")],
    )
    async def profile(
        oneid: OneIdPath,
        who: Who,
        tags: Annotated[list[TagName], Query(max_length=MAX_TAGS, default_factory=list)],
        page_size: PageSize = conf.page_size,
    ) -> dict:
        """A OneID's masked profile, tags (``tags=`` selects by name) and audiences; a OneID
        merged into another answers with that one; one retired without a merge answers 410."""
        return answers.profile(who, oneid, tags, page_size)

    @app.get(
        "/v1/profiles/{oneid}/identifiers",
        response_model=IdentifierPage,
        responses=PROFILE_ERRORS,
        dependencies=[_only("offset", "limit")],
    )
    async def identifiers(
        oneid: OneIdPath, who: Who, offset: Offset = 0, limit: PageSize = conf.page_size
    ) -> dict:
        """A page of the OneID's identifiers (masked, with sources, first and last seen)."""
        return answers.page(who, oneid, "identifiers", offset, limit)

    @app.get(
        "/v1/profiles/{oneid}/audiences",
        response_model=AudiencePage,
        responses=PROFILE_ERRORS,
        dependencies=[_only("offset", "limit")],
    )
    async def audiences(
        oneid: OneIdPath, who: Who, offset: Offset = 0, limit: PageSize = conf.page_size
    ) -> dict:
        """A page of the audiences the OneID is in, with the day it entered each."""
        return answers.page(who, oneid, "audiences", offset, limit)

    @app.get("/health", response_model=Health)
    async def health() -> dict:
        """Liveness, and which store version serves."""
        return {**answers.readiness(), "status": "ok"}

    @app.get("/ready", response_model=Health, responses={503: {"model": Health}})
    async def ready() -> JSONResponse | dict:
        """Ready when a store version serves, hashed with this service's HMAC key."""
        state = answers.readiness()
        return state if state["status"] == "ok" else JSONResponse(state, status_code=503)

    _error_handlers(app)
    return app


def _only(*names: str):
    """Refuse query parameters the route does not know (``tag=`` for ``tags=`` would
    otherwise silently answer every tag)."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            raise ApiError(422, "invalid_request", f"unknown query parameter(s): {unknown}")

    return Depends(check)


def _error(
    status: int, code: str, message: str, headers: dict | None = None, details: dict | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, **(details or {})}}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers, exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # only where and what: the input (maybe a raw phone number) is never echoed
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()[:10]
        ]
        return _error(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(500, "internal", "internal error")
