"""Tests for ad-platform match keys (lib/oneid/publish/platforms.py).

A *quoted* vector is an input and its hash printed in the platform's documentation (URL given).
A *derived* vector was computed here from the documented rule because the documentation prints
no hash; it checks that the rule is implemented as written, not that the platform agrees.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oneid.publish.platforms import (
    ID_TYPES,
    KEY_FORMATS,
    PLATFORMS,
    Digest,
    UnsupportedMatchKey,
    key_format,
    match_key,
    match_key_column,
    supported_types,
    upload_column,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ad_platforms.md"

# (platform, id_type, OneID-normalised input, expected key)
QUOTED = [
    # https://developers.e.qq.com/docs/audience_management/file (HASH_IDFA example)
    (
        "tencent_ads",
        "device:idfa",
        "FF1999CD-7177-4937-A474-74937A102630",
        "2c010ed96aef2fc34983e1e7e9176b7e",
    ),
    # https://datanexus.qq.com/doc/develop/intro/inner_app_intro/attribution/user_id
    # (IMEI 测试用例: 868049039501257 -> 8d3ebd3654fb46a2832296669cf1b536)
    ("tencent_ads", "device:imei", "868049039501257", "8d3ebd3654fb46a2832296669cf1b536"),
    # https://developers.facebook.com/docs/marketing-api/custom-audiences-targeting/
    # (hash("sha256", "mary@example.com"))
    (
        "meta",
        "email",
        "mary@example.com",
        "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79",
    ),
]

DERIVED = [
    # Tencent's conversion doc gives the input form md5(13500000000) but no hash.
    ("tencent_ads", "phone", "+8613500000000", "4dbeaa3acd2620411c7ba4fd78bb32d0"),
    (
        "ocean_engine",
        "phone",
        "+8613812345678",
        "38aed9048140b0e437ea81461d9ea4524169f6795004da120bcf7d41894e4d15",
    ),
    ("ocean_engine", "device:imei", "868049039501257", "8d3ebd3654fb46a2832296669cf1b536"),
    (
        "ocean_engine",
        "device:idfa",
        "FF1999CD-7177-4937-A474-74937A102630",
        "ff1999cd-7177-4937-a474-74937a102630",
    ),
    (
        "ocean_engine",
        "device:oaid",
        "1FE9A970-EFBB-29E0-0BDD-F5DBBF751AB5",
        "1fe9a970-efbb-29e0-0bdd-f5dbbf751ab5",
    ),
    (
        "meta",
        "phone",
        "+8613812345678",
        "f32dd5bb1e1e0ce7de6509513f1147fe420b2e69122319cea71268990236ed95",
    ),
    (
        "meta",
        "phone",
        "+16505551234",
        "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599",
    ),
    # The input is the madid example of Meta's customer-list help page; the output is derived.
    (
        "meta",
        "device:idfa",
        "AECE52E7-03EE-455A-B3C4-E57283966239",
        "aece52e7-03ee-455a-b3c4-e57283966239",
    ),
]

NOT_ACCEPTED = [
    ("tencent_ads", "phone", "+16505551234"),  # not a mainland China number
    ("tencent_ads", "phone", "+861012345678"),  # Beijing landline, not an 11-digit mobile
    ("ocean_engine", "phone", "+85291234567"),  # Hong Kong
    ("meta", "phone", "8613812345678"),  # not E.164: OneID always writes '+'
    ("meta", "email", "Mary@example.com"),  # not OneID's lower-case form
    ("tencent_ads", "device:idfa", "ff1999cd-7177-4937-a474-74937a102630"),
    ("tencent_ads", "device:imei", "86804903950125"),  # 14 digits: OneID adds the check digit
]


@pytest.mark.parametrize(("platform", "id_type", "value", "expected"), QUOTED)
def test_quoted_vectors_from_platform_docs(platform, id_type, value, expected):
    """Quoted: input and hash are both printed in the cited documentation."""
    assert match_key(platform, id_type, value) == expected


def test_tencent_imei_rule_on_its_quoted_meid_example():
    """Quoted (developers.e.qq.com/docs/audience_management/file, HASH_IMEI): a000002c9060f7 ->
    f2d5a650733ca8c27d502b1c08da14e5. OneID never emits 14-character MEIDs, so the row's rule is
    checked directly; the upper-case input shows the lower-casing is applied."""
    fmt = key_format("tencent_ads", "device:imei")
    assert fmt.key("a000002c9060f7") == "f2d5a650733ca8c27d502b1c08da14e5"
    assert fmt.key("A000002C9060F7") == "f2d5a650733ca8c27d502b1c08da14e5"


@pytest.mark.parametrize(("platform", "id_type", "value", "expected"), DERIVED)
def test_derived_vectors_follow_the_documented_rules(platform, id_type, value, expected):
    """Derived: the platform docs state the rule but print no hash for it."""
    assert match_key(platform, id_type, value) == expected


def test_tencent_oaid_is_unsupported_because_oneid_upper_cases_it():
    """Quoted (datanexus.qq.com/doc/develop/guider/interface/user_id, OAID 测试用例): the MD5 is of
    the OAID in its original case, which OneID's upper-cased form cannot give back."""
    original = "1fe9a970-efbb-29e0-0bdd-f5dbbf751ab5"
    assert hashlib.md5(original.encode()).hexdigest() == "83e9158a4fb54c0e1ef0b238639a23ae"
    assert hashlib.md5(original.upper().encode()).hexdigest() != "83e9158a4fb54c0e1ef0b238639a23ae"
    with pytest.raises(UnsupportedMatchKey, match="original case"):
        match_key("tencent_ads", "device:oaid", original.upper())


def test_supported_types_per_platform():
    assert supported_types("tencent_ads") == ("phone", "device:idfa", "device:imei")
    assert supported_types("ocean_engine") == ("phone", "device:idfa", "device:oaid", "device:imei")
    assert supported_types("meta") == ("phone", "email", "device:idfa")


def test_upload_column_names_are_the_platforms_own():
    columns = {
        (f.platform, f.id_type): upload_column(f.platform, f.id_type)
        for f in KEY_FORMATS
        if f.supported
    }
    assert columns == {
        ("tencent_ads", "phone"): "HASH_MOBILE_PHONE",
        ("tencent_ads", "device:idfa"): "HASH_IDFA",
        ("tencent_ads", "device:imei"): "HASH_IMEI",
        ("ocean_engine", "phone"): "MOBILE_HASH_SHA256",
        ("ocean_engine", "device:idfa"): "IDFA",
        ("ocean_engine", "device:oaid"): "OAID",
        ("ocean_engine", "device:imei"): "IMEI_MD5",
        ("meta", "phone"): "PHONE",
        ("meta", "email"): "EMAIL",
        ("meta", "device:idfa"): "MADID",
    }


def test_table_has_one_row_per_platform_and_type_each_with_a_source():
    assert sorted((f.platform, f.id_type) for f in KEY_FORMATS) == sorted(
        (p, t) for p in PLATFORMS for t in ID_TYPES
    )
    assert all(f.source for f in KEY_FORMATS)
    assert all(f.unsupported for f in KEY_FORMATS if not f.supported)


@pytest.mark.parametrize("fmt", [f for f in KEY_FORMATS if not f.supported], ids=str)
def test_unsupported_combinations_raise_with_the_reason(fmt):
    value = {"phone": "+8613812345678", "email": "mary@example.com"}.get(fmt.id_type, "0" * 15)
    with pytest.raises(UnsupportedMatchKey, match=f"{fmt.platform} does not take {fmt.id_type}"):
        match_key(fmt.platform, fmt.id_type, value)
    with pytest.raises(UnsupportedMatchKey):
        upload_column(fmt.platform, fmt.id_type)
    with pytest.raises(UnsupportedMatchKey):
        match_key_column(fmt.platform, fmt.id_type, "value")


@pytest.mark.parametrize(("platform", "id_type", "value"), NOT_ACCEPTED)
def test_values_outside_the_accepted_form_raise_without_echoing_the_value(platform, id_type, value):
    with pytest.raises(ValueError) as caught:
        match_key(platform, id_type, value)
    assert not isinstance(caught.value, UnsupportedMatchKey)
    assert value not in str(caught.value)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown ad platform 'tiktok'"):
        supported_types("tiktok")
    with pytest.raises(ValueError, match="unknown identifier type 'device:gaid'"):
        match_key("meta", "device:gaid", "x")


def test_hashed_keys_are_lower_case_hex_of_the_right_length():
    for platform, id_type, value, _ in QUOTED + DERIVED:
        fmt = key_format(platform, id_type)
        key = match_key(platform, id_type, value)
        if fmt.digest is Digest.NONE:
            continue
        assert len(key) == {Digest.MD5: 32, Digest.SHA256: 64}[fmt.digest]
        assert key == key.lower()


def test_docs_table_names_every_supported_column():
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    for fmt in KEY_FORMATS:
        row = [ln for ln in lines if ln.startswith(f"| {fmt.platform} | `{fmt.id_type}` |")]
        assert len(row) == 1, (fmt.platform, fmt.id_type)
        assert (f"`{fmt.column}`" if fmt.supported else "not accepted") in row[0]


def test_spark_column_equals_python_on_every_vector_and_reject(spark):
    """Each supported key as a Spark column over all test values: the same key where Python
    gives one, NULL where Python raises, and no Python UDF in the plan."""
    values = sorted({v for _, _, v, _ in QUOTED + DERIVED} | {v for _, _, v in NOT_ACCEPTED})
    supported = [f for f in KEY_FORMATS if f.supported]
    frame = spark.createDataFrame([(v,) for v in [*values, None]], "value string")
    keyed = frame.select(
        "value",
        *[
            match_key_column(f.platform, f.id_type, "value").alias(f"{f.platform}|{f.id_type}")
            for f in supported
        ],
    )
    plan = keyed._jdf.queryExecution().executedPlan().toString()
    assert "EvalPython" not in plan

    def python_key(platform: str, id_type: str, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return match_key(platform, id_type, value)
        except ValueError:
            return None

    rows = {row["value"]: row.asDict() for row in keyed.collect()}
    for value in [*values, None]:
        for f in supported:
            name = f"{f.platform}|{f.id_type}"
            assert rows[value][name] == python_key(f.platform, f.id_type, value), (name, value)
    for platform, id_type, value, expected in QUOTED + DERIVED:
        assert rows[value][f"{platform}|{id_type}"] == expected
