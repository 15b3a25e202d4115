"""Keyed hashing of normalised identifiers: HMAC-SHA256 with a versioned key.

The key is read from the environment variable that conf names and is only ever captured in the
closure of the pandas UDF below: it is not a literal in any query plan, not a Spark conf value
and never logged. Plain SHA-256 of a mobile number is reversible by brute force; it is produced
only at export time, in each ad platform's format.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from pyspark.sql.functions import pandas_udf

from oneid.conf.models import SecretsConf
from oneid.errors import SecretMissingError
from oneid.standardize.normalize import BLOCKLISTED, mask, normalizer_for

logger = logging.getLogger(__name__)

DEMO_KEY = b"oneid-demo-key--not-a-secret--do-not-use-in-production"
RESULT_TYPE = "value_hash string, masked string, reason string"
UNKNOWN_TYPE = "unknown_identifier_type"
"""The rejection reason of an identifier type no normaliser knows."""
_WARNED: set[str] = set()  # warn about the demo key once per process
MEMO_LIMIT = 300_000
"""Results a Python worker keeps per run of :func:`normalize_and_hash` (emptied when full;
about 150 MB of the worker's memory at the limit)."""
_MEMO: dict[str, dict[tuple[str, str | None], tuple[str | None, str | None, str | None]]] = {}
"""The worker's results of one UDF (keyed by a token of the UDF, not by the HMAC key)."""


@dataclass(frozen=True)
class HashKey:
    """The HMAC key and its version. ``repr`` never shows the key."""

    secret: bytes
    version: int

    def __repr__(self) -> str:
        return f"HashKey(version={self.version}, secret=<{len(self.secret)} bytes hidden>)"


def load_key(secrets: SecretsConf) -> HashKey:
    """Read the key from ``secrets.hmac_key_env``; the demo key only where conf allows it."""
    value = os.environ.get(secrets.hmac_key_env, "")
    if value:
        if len(value) < 16:
            raise SecretMissingError(
                f"environment variable {secrets.hmac_key_env} is shorter than 16 characters"
            )
        return HashKey(value.encode("utf-8"), secrets.hmac_key_version)
    if secrets.allow_demo_key:
        if secrets.hmac_key_env not in _WARNED:
            _WARNED.add(secrets.hmac_key_env)
            logger.warning(
                "%s is unset: using the published demo key (secrets.allow_demo_key=true); "
                "never do this with real data",
                secrets.hmac_key_env,
            )
        return HashKey(DEMO_KEY, 0)
    raise SecretMissingError(
        f"environment variable {secrets.hmac_key_env} (conf secrets.hmac_key_env) is not set; "
        "it holds the HMAC key for identifiers"
    )


def keyed_hash(key: HashKey, value: str) -> str:
    """HMAC-SHA256 hex digest of a normalised value."""
    return hmac.new(key.secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def normalize_and_hash(key: HashKey, junk_values: Mapping[str, frozenset[str]]):
    """A pandas UDF ``(id_type, raw) -> struct<value_hash, masked, reason>``.

    ``reason`` is set (and the hash NULL) for rejected and blocklisted values. A value is
    normalised and hashed once per Python worker: the worker remembers the results of this UDF
    (up to :data:`MEMO_LIMIT`; a phone or device recurs in many records), so the same input
    gives the same output at a fraction of the cost.
    """
    token = uuid.uuid4().hex

    @pandas_udf(RESULT_TYPE)
    def oneid_normalize_and_hash(id_types: pd.Series, raws: pd.Series) -> pd.DataFrame:
        memo = _memo(token)
        rows = []
        for pair in zip(id_types, raws, strict=True):
            result = memo.get(pair)
            if result is None:
                result = hash_identifier(key, junk_values, *pair)
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()
                memo[pair] = result
            rows.append(result)
        return pd.DataFrame(rows, columns=["value_hash", "masked", "reason"])

    return oneid_normalize_and_hash


def _memo(token: str) -> dict[tuple[str, str | None], tuple[str | None, str | None, str | None]]:
    """This worker's results of the UDF ``token`` (those of any other UDF are dropped)."""
    memo = _MEMO.get(token)
    if memo is None:
        _MEMO.clear()
        memo = _MEMO[token] = {}
    return memo


def hash_identifier(
    key: HashKey, junk_values: Mapping[str, frozenset[str]], id_type: str, raw: str | None
) -> tuple[str | None, str | None, str | None]:
    """``(value_hash, masked, None)`` of one raw identifier, or ``(None, None, reason)``: the
    one normalise-and-hash every stage uses (the standardize UDF, the realtime stream)."""
    value, reason = _normalized(id_type, raw, junk_values)
    if value is None:
        return None, None, reason
    return keyed_hash(key, value), mask(id_type, value), None


def normalize_for_export(key: HashKey, junk_values: Mapping[str, frozenset[str]]):
    """A pandas UDF ``(id_type, raw) -> struct<value, value_hash>`` for exports only.

    ``value`` is the normalised identifier: it exists in memory while an export turns it into
    a platform's match key and is never written. Rejected values give NULLs.
    """

    def one(id_type: str, raw: str | None) -> tuple[str | None, str | None]:
        value, _ = _normalized(id_type, raw, junk_values)
        return (value, keyed_hash(key, value)) if value is not None else (None, None)

    @pandas_udf("value string, value_hash string")
    def oneid_normalize_for_export(id_types: pd.Series, raws: pd.Series) -> pd.DataFrame:
        rows = [one(t, r) for t, r in zip(id_types, raws, strict=True)]
        return pd.DataFrame(rows, columns=["value", "value_hash"])

    return oneid_normalize_for_export


def _normalized(
    id_type: str, raw: str | None, junk_values: Mapping[str, frozenset[str]]
) -> tuple[str | None, str | None]:
    """(normalised value, None) or (None, rejection reason)."""
    try:
        normalizer = normalizer_for(id_type)
    except ValueError:
        return None, UNKNOWN_TYPE
    result = normalizer(raw)
    if result.value is None:
        return None, result.reason
    base = id_type.split(":", 1)[0]
    if result.value in junk_values.get(id_type, ()) or result.value in junk_values.get(base, ()):
        return None, BLOCKLISTED
    return result.value, None
