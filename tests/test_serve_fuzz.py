"""Fuzz the API from its committed OpenAPI spec (schemathesis) through real uvicorn on
loopback: no input may cause a 500, and answers must match the spec."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from oneid.serve.models import MAX_TAGS
from oneid.serve.server import running
from oneid.serve.sqlite_store import SqliteStore
from tests.support import REPO
from tests.test_serve_api import KEYS, _app, load

schema = schemathesis.openapi.from_dict(
    json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))
)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    store = SqliteStore(folder / "store")
    load(store, 1, people=50)
    with running(_app(store, folder), "127.0.0.1", 0) as url:
        yield url
    store.close()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_breaks_the_api(case, api_url):
    # a generated key is refused (401): a case that sends the header sends a valid one; a case
    # that leaves the required header out (a negative case) must be refused as it is
    if case.headers and API_KEY in case.headers:
        case.headers[API_KEY] = KEYS["bench"]
    # a generated header that frames the message (an empty Transfer-Encoding) makes the request
    # malformed HTTP: uvicorn refuses it before the app, as any HTTP server must
    for name in [name for name in case.headers or {} if name.lower() in FRAMING_HEADERS]:
        del case.headers[name]
    case.call_and_validate(
        base_url=api_url,
        # a schema-valid string is not always a valid phone: 422 invalid_identifier is right
        excluded_checks=[positive_data_acceptance],
    )


API_KEY = "X-API-Key"
FRAMING_HEADERS = frozenset({"connection", "content-length", "host", "te", "transfer-encoding"})
"""Headers that frame or route an HTTP/1.1 message (RFC 9112), not parameters of the API."""


def test_the_most_tags_a_request_may_select_fit_the_servers_request_line(api_url):
    """The spec bounds ``tags`` (MAX_TAGS names of at most 64 characters) so that any valid GET
    reaches the API: uvicorn refuses a request line over 16 KB itself, with a plain-text 400.
    A name no tag can have is the API's own 422."""

    def status(tags: list[str]) -> tuple[int, str]:
        query = urllib.parse.urlencode([("tags", name) for name in tags])
        request = urllib.request.Request(
            f"{api_url}/v1/profiles/1?{query}", headers={API_KEY: KEYS["bench"]}
        )
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.headers["content-type"]
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"]

    longest = [f"t{i:03d}".ljust(64, "x") for i in range(MAX_TAGS)]
    assert status(longest) == (200, "application/json")  # the API answered, not uvicorn
    assert status(["Not-a-tag"]) == (422, "application/json")
    assert status(["x" * 65]) == (422, "application/json")
