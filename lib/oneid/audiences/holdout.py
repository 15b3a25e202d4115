"""The holdout (control group) flag: deterministic from the OneID and the audience id.

``bucket = pmod(xxhash64(oneid, audience_id), 1000000)`` with ``oneid`` a bigint and
``audience_id`` a string (Spark's ``xxhash64``, seed 42); a member is in the holdout when
``bucket < round(share * 1000000)``. The flag does not depend on the run, the as-of date or the
audience version, so a OneID stays in (or out of) an audience's control group across runs.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from oneid.audiences.literals import string_literal

HOLDOUT_BUCKETS = 1_000_000


def holdout_threshold(share: float) -> int:
    """Buckets below this number are in the holdout."""
    return round(share * HOLDOUT_BUCKETS)


def holdout_sql(audience_id: str, share: float) -> str:
    """SQL for the holdout flag of one audience, over a column ``oneid``."""
    if holdout_threshold(share) == 0:
        return "false"
    bucket = (
        f"pmod(xxhash64(CAST(oneid AS BIGINT), {string_literal(audience_id)}), {HOLDOUT_BUCKETS})"
    )
    return f"{bucket} < {holdout_threshold(share)}"


def holdout_flag(oneid: Column, audience_id: Column, threshold: Column) -> Column:
    """The same flag as :func:`holdout_sql`, with the audience id and threshold as columns."""
    bucket = F.pmod(F.xxhash64(oneid.cast("bigint"), audience_id), F.lit(HOLDOUT_BUCKETS))
    return bucket < threshold
