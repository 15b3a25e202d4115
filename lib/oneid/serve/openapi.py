"""The API's OpenAPI spec as committed in ``docs/openapi.json`` (default conf: page sizes).

Regenerate after changing the API: ``python -m oneid.serve.openapi docs/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from oneid.conf.models import ServeConf
from oneid.serve.answers import Answers
from oneid.serve.api import create_app
from oneid.serve.auth import KeyRing


def openapi_spec(conf: ServeConf | None = None) -> dict:
    """The spec of the API with ``conf`` (no store is opened)."""
    answers = Answers(None, None, conf or ServeConf(), None)  # type: ignore[arg-type]
    return create_app(answers, KeyRing(())).openapi()


def spec_text() -> str:
    return json.dumps(openapi_spec(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(spec_text(), encoding="utf-8")
