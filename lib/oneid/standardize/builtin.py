"""The normaliser's common cases as Spark built-in expressions, and HMAC-SHA256 from ``sha2``.

:mod:`oneid.standardize.normalize` is the one definition of every rule; this module evaluates
the same rules without leaving the JVM for the inputs where that is certain to agree with it:
printable ASCII (so NFKC, invisible characters and Unicode whitespace cannot matter), Chinese
mobile numbers in any of their spellings, e-mail addresses, IDFA / OAID / Android ids and
account ids. Every other input (non-ASCII text, landlines and foreign numbers, IMEIs, an unknown
type) is *undecided* and goes through the Python normaliser, so the two paths never disagree by
construction; ``tests/test_builtin_normalize.py`` checks that on a large random sample.

The HMAC key never becomes a literal of a plan: :func:`key_pads` produces the two padded keys
as the one row of a Python UDF whose closure holds them (the plan shows the UDF's name only),
and :func:`hmac_sha256_hex` hashes with them as columns of that broadcast row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.standardize.hashing import HashKey, normalize_and_hash
from oneid.standardize.normalize import (
    _CN_GENERAL_RE,
    _CN_MOBILE_RE,
    _DEVICE_JUNK,
    _EMAIL_DOMAIN_RE,
    _EMAIL_LOCAL_RE,
    _MAX_ID,
    _MAX_RAW,
    _MAX_SHARE,
    _NAMESPACED_TYPES,
    BLOCKLISTED,
    EMPTY,
    INVALID_DEVICE,
    INVALID_EMAIL,
    INVALID_ID,
    INVALID_PHONE,
    JUNK_DEVICE,
    JUNK_TOKENS,
    JUNK_VALUE,
)

_BLOCK = 64  # SHA-256 block size in bytes
_ACCOUNT_TYPES = ("member_id", "wx_openid", "wx_unionid", "douyin_openid", "wecom_external_userid")
_DECIDED_DEVICES = ("idfa", "oaid", "android_id")
_HEX = "[0-9A-F]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"


def _full(pattern: str) -> str:
    return f"^(?:{pattern})\\z"


def _kind(id_type: Column) -> Column:
    """The rule set a type uses, or NULL when the built-ins do not handle it."""
    known = F.when(id_type.isin("phone", "email"), id_type)
    known = known.when(id_type.isin(*_ACCOUNT_TYPES), F.lit("account"))
    for kind in _DECIDED_DEVICES:
        known = known.when(id_type == f"device:{kind}", F.lit(kind))
    namespaced = "|".join(sorted(_NAMESPACED_TYPES))
    return known.when(id_type.rlike(f"^(?:{namespaced}):.+"), F.lit("account"))


def _texts(kind: Column, text: Column, id_type: Column) -> dict[str, Column]:
    """Stage 2: each rule's working text, only for the rows of its kind."""
    unsuffixed = F.regexp_extract(text, r"^(\+?[0-9]+)\.0+\z", 1)
    member = F.regexp_extract(text, r"^([0-9]+)\.0+\z", 1)
    return {
        "_pt": F.when(
            kind == "phone", F.when(F.length(unsuffixed) > 0, unsuffixed).otherwise(text)
        ),
        "_lower": F.when(kind == "email", F.lower(text)),
        "_upper": F.when(kind.isin(*_DECIDED_DEVICES), F.upper(text)),
        "_at": F.when(
            kind == "account",
            F.when((id_type == "member_id") & (F.length(member) > 0), member).otherwise(text),
        ),
    }


def _parts(kind: Column) -> dict[str, Column]:
    """Stage 3: phone digits, e-mail local part, device value."""
    text = F.col("_pt")
    plus = text.startswith("+")
    upper = F.col("_upper")
    hex32 = F.regexp_replace(
        upper,
        rf"^({_HEX}{{8}})({_HEX}{{4}})({_HEX}{{4}})({_HEX}{{4}})({_HEX}{{12}})\z",
        "$1-$2-$3-$4-$5",
    )
    uuid = F.when(upper.rlike(rf"^{_UUID}\z"), upper).when(upper.rlike(rf"^{_HEX}{{32}}\z"), hex32)
    device = (
        F.when(kind == "android_id", F.when(upper.rlike(rf"^{_HEX}{{16}}\z"), upper))
        .when(kind == "idfa", uuid)
        .when(
            kind == "oaid",
            uuid.when(upper.rlike(rf"^(?:{_HEX}{{16}}|{_HEX}{{64}})\z"), upper),
        )
    )
    return {
        "_pd": F.regexp_replace(
            F.when(plus, F.substring(text, 2, 1 << 20)).otherwise(text), r"[ \t\-.()/]+", ""
        ),
        "_local": F.substring_index(F.col("_lower"), "@", 1),
        "_dv": F.when(F.length(F.col("_text")) <= 80, device),
    }


def _national() -> dict[str, Column]:
    """Stage 4: the national number of a phone's digits."""
    digits, plus = F.col("_pd"), F.col("_pt").startswith("+")
    return {
        "_pn": F.when(plus & digits.startswith("86"), F.substring(digits, 3, 1 << 20))
        .when(plus, F.lit(None))
        .when(digits.startswith("0086"), F.substring(digits, 5, 1 << 20))
        .when((F.length(digits) == 13) & digits.startswith("86"), F.substring(digits, 3, 1 << 20))
        .otherwise(digits)
    }


def _flags(kind: Column) -> dict[str, Column]:
    """Stage 5: each rule's verdict on the rows of its kind, computed once per row."""
    text, digits, national = F.col("_pt"), F.col("_pd"), F.col("_pn")
    mobile = (
        (F.length(national) == 11)
        & national.startswith("1")
        & national.rlike(_full(_CN_MOBILE_RE.pattern))
        & national.rlike(_full(_CN_GENERAL_RE.pattern))
    )
    bad_phone = (
        (F.length(text) > 64)
        | ~text.rlike(r"^\+?[0-9 \t\-.()/]+\z")
        | ~digits.rlike(r"^[0-9]{1,20}\z")
    )
    lower, local = F.col("_lower"), F.col("_local")
    domain = F.substring(lower, F.length(local) + 2, 1 << 20)
    good_email = (
        (F.length(F.col("_text")) <= 254)
        & (F.instr(lower, "@") > 0)
        & (F.length(local) <= 64)
        & ~domain.contains("_")
        & local.rlike(_full(_EMAIL_LOCAL_RE.pattern))
        & domain.rlike(_full(_EMAIL_DOMAIN_RE.pattern))
    )
    device = F.col("_dv")
    junk_device = F.regexp_replace(device, "-", "").rlike(r"^(.)\1*\z")
    for name in _DECIDED_DEVICES:
        junk_device = junk_device | ((kind == name) & device.isin(*sorted(_DEVICE_JUNK[name])))
    return {
        "_bad_phone": F.when(kind == "phone", bad_phone),
        "_mobile": F.when(kind == "phone", F.coalesce(mobile, F.lit(False))),
        "_good_email": F.when(kind == "email", good_email),
        "_junk_device": F.when(kind.isin(*_DECIDED_DEVICES), junk_device),
    }


def _phone() -> tuple[Column, Column, Column]:
    """(value, reason, decided) of a phone: Chinese mobiles only."""
    bad = F.col("_bad_phone")
    good = ~bad & F.col("_mobile")
    return (
        F.when(good, F.concat(F.lit("+86"), F.col("_pn"))),
        F.when(bad, F.lit(INVALID_PHONE)),
        bad | good,
    )


def _email() -> tuple[Column, Column, Column]:
    good = F.col("_good_email")
    return F.when(good, F.col("_lower")), F.when(~good, F.lit(INVALID_EMAIL)), F.lit(True)


def _device() -> tuple[Column, Column, Column]:
    value = F.col("_dv")
    reason = F.when(value.isNull(), F.lit(INVALID_DEVICE)).when(
        F.col("_junk_device"), F.lit(JUNK_DEVICE)
    )
    return F.when(value.isNotNull() & ~F.col("_junk_device"), value), reason, F.lit(True)


def _account() -> tuple[Column, Column, Column]:
    text = F.col("_at")
    long, junk = F.length(text) > _MAX_ID, F.lower(text).isin(*sorted(JUNK_TOKENS))
    reason = F.when(long, F.lit(INVALID_ID)).when(junk, F.lit(JUNK_VALUE))
    return F.when(~long & ~junk, text), reason, F.lit(True)


_WORK = ("_kind", "_text", "_pt", "_lower", "_upper", "_at", "_pd", "_local", "_dv", "_pn")
_FLAGS = ("_bad_phone", "_mobile", "_good_email", "_junk_device")
_RULE = ("_rv", "_rr", "_rd", "_early", "_handled", "_blocked")


def with_checks(frame: DataFrame, junk_values: Mapping[str, frozenset[str]]) -> DataFrame:
    """``frame`` (``id_type``, ``raw_value`` strings) plus the normaliser's outcome as built-in
    expressions: ``_value`` (normalised) or ``_reason``, and ``_decided`` (false: the Python
    normaliser must decide the row). The conf blocklist gives ``blocklisted``, as in Python.

    The rules build on columns of earlier projections, never on the expressions behind them:
    nested expressions referenced several times grow a plan exponentially and are evaluated
    once per reference, while Spark keeps apart a projection whose costly columns later ones
    read more than once."""
    id_type, raw = F.col("id_type"), F.col("raw_value")
    staged = frame.withColumns({"_kind": _kind(id_type), "_text": F.trim(raw)})
    kind, text = F.col("_kind"), F.col("_text")
    staged = staged.withColumns(_texts(kind, text, id_type))
    staged = staged.withColumns(_parts(kind))
    staged = staged.withColumns(_national())
    staged = staged.withColumns(_flags(kind))
    rules = {
        "phone": _phone(),
        "email": _email(),
        "account": _account(),
        **{name: _device() for name in _DECIDED_DEVICES},
    }
    value, reason, decided = F.lit(None), F.lit(None), F.lit(False)
    for name, (v, r, d) in rules.items():
        value = F.when(kind == name, v).otherwise(value)
        reason = F.when(kind == name, r).otherwise(reason)
        decided = F.when(kind == name, d).otherwise(decided)
    printable = raw.rlike(r"^[ -~]*\z") & (F.length(raw) <= _MAX_RAW)
    token = (F.length(text) <= 9) & F.lower(text).isin(*sorted(JUNK_TOKENS))
    early = F.when(raw.isNull(), F.lit(EMPTY)).when(F.length(text) == 0, F.lit(EMPTY))
    staged = staged.withColumns(
        {
            "_rv": value,
            "_rr": reason,
            "_rd": F.coalesce(decided, F.lit(False)),
            "_early": early.when(token, F.lit(JUNK_VALUE)),
            "_handled": kind.isNotNull() & (raw.isNull() | printable),
        },
    )
    early, handled = F.col("_early"), F.col("_handled")
    staged = staged.withColumns({"_rv": F.when(early.isNull(), F.col("_rv"))})
    staged = staged.withColumns({"_blocked": _blocklisted(id_type, F.col("_rv"), junk_values)})
    blocked = F.col("_blocked")
    return staged.withColumns(
        {
            "_value": F.when(handled & ~blocked, F.col("_rv")),
            "_reason": F.when(
                handled,
                F.when(blocked, F.lit(BLOCKLISTED)).otherwise(F.coalesce(early, F.col("_rr"))),
            ),
            "_decided": handled & (early.isNotNull() | F.col("_rd")),
        },
    ).drop(*_WORK, *_FLAGS, *_RULE)


def _blocklisted(
    id_type: Column, value: Column, junk_values: Mapping[str, frozenset[str]]
) -> Column:
    """As the Python path: the value is listed under its full type or its base (``device``)."""
    base = F.substring_index(id_type, ":", 1)
    listed = F.lit(False)
    for listed_type, values in sorted(junk_values.items()):
        if values:
            under = (id_type == listed_type) | (base == listed_type)
            listed = listed | (under & value.isin(*sorted(values)))
    return F.coalesce(listed & value.isNotNull(), F.lit(False))


def _reveal(value: Column, head: int, tail: int, filler: str) -> Column:
    """:func:`oneid.standardize.normalize._reveal` (at most 30 % of the value shows)."""
    budget = F.floor(F.length(value) * F.lit(_MAX_SHARE)).cast("int")
    tail_n = F.least(F.lit(tail), F.floor(budget / 2).cast("int"))
    head_n = F.least(F.lit(head), budget - tail_n)
    end = F.when(tail_n > 0, F.right(value, tail_n)).otherwise(F.lit(""))
    return F.concat(F.left(value, head_n), F.lit(filler), end)


def mask(id_type: Column, value: Column) -> Column:
    """:func:`oneid.standardize.normalize.mask` of the values the built-ins decided."""
    kind = _kind(id_type)
    local = F.substring_index(value, "@", 1)
    national = F.substring(value, 4, 11)
    email = F.concat(
        F.when(F.length(local) >= 4, F.substring(local, 1, 1)).otherwise(F.lit("")),
        F.lit("***@"),
        F.substring_index(value, "@", -1),
    )
    return (
        F.when(
            kind == "phone",
            F.concat(F.left(national, F.lit(3)), F.lit("****"), F.right(national, F.lit(4))),
        )
        .when(kind == "email", email)
        .when(kind == "account", _reveal(value, 3, 2, "***"))
        .otherwise(_reveal(value, 4, 4, "…"))
    )


def key_pads(spark: SparkSession, key: HashKey) -> DataFrame:
    """One row ``(ipad binary, opad binary)``: the key padded and XORed as HMAC prescribes.

    The row comes from a Python UDF whose closure holds it, so no plan, log or conf shows the key.
    """
    secret = hashlib.sha256(key.secret).digest() if len(key.secret) > _BLOCK else key.secret
    secret = secret.ljust(_BLOCK, b"\0")
    pads = (bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret))

    @F.udf("ipad binary, opad binary")
    def oneid_key_pads() -> tuple[bytes, bytes]:
        return pads

    one = spark.range(1).select(oneid_key_pads.asNondeterministic()().alias("p"))
    return one.select("p.ipad", "p.opad")


def hmac_sha256_hex(value: Column, ipad: Column, opad: Column) -> Column:
    """Hex HMAC-SHA256 of a string column, from the pads of :func:`key_pads`."""
    inner = F.unhex(F.sha2(F.concat(ipad, F.encode(value, "UTF-8")), 256))
    return F.sha2(F.concat(opad, inner), 256)


def normalized_and_hashed(
    spark: SparkSession, frame: DataFrame, key: HashKey, junk_values: Mapping[str, frozenset[str]]
) -> DataFrame:
    """``frame`` (with ``id_type``, ``raw_value`` strings) plus ``_h`` struct<value_hash,
    masked, reason>: the built-ins where they decide, the Python normaliser for the rest."""
    columns = frame.columns
    if dict(frame.dtypes)["raw_value"] == "string":
        checked = with_checks(frame, junk_values)
    else:  # typed cells (a Parquet number): the Python normaliser reads them as text
        checked = frame.withColumns(
            {"_value": F.lit(None), "_reason": F.lit(None), "_decided": F.lit(False)}
        )
    python = normalize_and_hash(key, junk_values)
    with_pads = checked.crossJoin(F.broadcast(key_pads(spark, key)))
    value, decided = F.col("_value"), F.col("_decided")
    slow = python(F.col("id_type"), F.col("raw_value"), ~decided)
    fast = F.struct(
        F.when(value.isNotNull(), hmac_sha256_hex(value, F.col("ipad"), F.col("opad"))).alias(
            "value_hash"
        ),
        F.when(value.isNotNull(), mask(F.col("id_type"), value)).alias("masked"),
        F.col("_reason").alias("reason"),
    )
    return with_pads.select(*columns, F.when(decided, fast).otherwise(slow).alias("_h"))
