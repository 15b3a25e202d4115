"""Tests for the identifier normaliser (lib/oneid/standardize/normalize.py). No Spark."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oneid.standardize import normalize as nz
from oneid.standardize.normalize import (
    DEFAULT_JUNK_VALUES,
    EMPTY,
    ID_TYPES,
    INVALID_DEVICE,
    INVALID_EMAIL,
    INVALID_ID,
    INVALID_PHONE,
    JUNK_DEVICE,
    JUNK_VALUE,
    NOT_MOBILE,
    REASONS,
    Normalized,
    mask,
    normalize,
    normalize_device,
    normalize_email,
    normalize_member_id,
    normalize_openid,
    normalize_phone,
    normalizer_for,
)

PHONE = "+8613812345678"
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
FULL_WIDTH = str.maketrans("0123456789+-()", "０１２３４５６７８９＋－（）")


def ok(value: str) -> Normalized:
    return Normalized(value, None)


def rejected(reason: str) -> Normalized:
    return Normalized(None, reason)


# ----------------------------------------------------------------------------------------------
# Golden tables
# ----------------------------------------------------------------------------------------------
PHONE_CASES = [
    # the same Chinese mobile, every way sources write it
    ("+86 138 1234 5678", ok(PHONE)),
    ("86-138-1234-5678", ok(PHONE)),
    ("0086 13812345678", ok(PHONE)),
    ("0086-138-1234-5678", ok(PHONE)),
    ("8613812345678", ok(PHONE)),
    ("13812345678", ok(PHONE)),
    ("138-1234-5678", ok(PHONE)),
    ("(138)12345678", ok(PHONE)),
    ("138.1234.5678", ok(PHONE)),
    ("138—1234—5678", ok(PHONE)),  # em dashes
    ("１３８１２３４５６７８", ok(PHONE)),  # full-width digits
    ("＋８６－１３８－１２３４－５６７８", ok(PHONE)),
    ("138\u30001234\u30005678", ok(PHONE)),  # ideographic spaces
    ("  13812345678\t", ok(PHONE)),
    ("\ufeff13812345678\u200b", ok(PHONE)),  # BOM, zero-width space
    ("13812345678.0", ok(PHONE)),  # spreadsheet export
    ("8613812345678.0", ok(PHONE)),
    ("+86 013812345678", ok(PHONE)),  # trunk 0 after the country code
    ("+86 (0)138 1234 5678", ok(PHONE)),
    (13812345678, ok(PHONE)),  # an int column
    ("13800138000", ok("+8613800138000")),  # valid; blocklisted later by the hub guard
    ("17012345678", ok("+8617012345678")),
    # landlines and other valid CN numbers are accepted
    ("021-6212 3456", ok("+862162123456")),
    ("(021) 6212-3456", ok("+862162123456")),
    ("+86 21 6212 3456", ok("+862162123456")),
    ("010-6552 9988", ok("+861065529988")),
    ("0571-8502 2088", ok("+8657185022088")),
    ("400-810-8888", ok("+864008108888")),
    # other countries, with + or 00
    ("+1 650 253 0000", ok("+16502530000")),
    ("+852 9123 4567", ok("+85291234567")),
    ("00852 9123 4567", ok("+85291234567")),
    ("+44 7911 123456", ok("+447911123456")),
    # rejected, never guessed
    ("12012345678", rejected(INVALID_PHONE)),  # 12x is not a mobile prefix
    ("+8612345678901", rejected(INVALID_PHONE)),
    ("11111111111", rejected(INVALID_PHONE)),
    ("1381234567", rejected(INVALID_PHONE)),  # 10 digits
    ("138123456789", rejected(INVALID_PHONE)),  # 12 digits
    ("+86 138 1234 567", rejected(INVALID_PHONE)),
    ("852 9123 4567", rejected(INVALID_PHONE)),  # no +: read as CN
    ("138abcd5678", rejected(INVALID_PHONE)),  # no vanity-letter mapping
    ("abc13812345678", rejected(INVALID_PHONE)),
    ("tel:+8613812345678", rejected(INVALID_PHONE)),
    ("13812345678 ext 12", rejected(INVALID_PHONE)),
    ("13812345678转123", rejected(INVALID_PHONE)),
    ("13812345678/13987654321", rejected(INVALID_PHONE)),  # two numbers
    ("13812345678,13987654321", rejected(INVALID_PHONE)),
    ("1.3812345678E10", rejected(INVALID_PHONE)),  # scientific notation may have lost digits
    ("++8613812345678", rejected(INVALID_PHONE)),
    ("138+12345678", rejected(INVALID_PHONE)),
    ("95555", rejected(INVALID_PHONE)),  # service short code
    ("+", rejected(INVALID_PHONE)),
    ("---", rejected(INVALID_PHONE)),
    ("1" * 100, rejected(INVALID_PHONE)),
    # missing / placeholders
    (None, rejected(EMPTY)),
    ("", rejected(EMPTY)),
    (" \u3000 ", rejected(EMPTY)),
    (float("nan"), rejected(EMPTY)),
    ("NULL", rejected(JUNK_VALUE)),
    ("-1", rejected(JUNK_VALUE)),
    ("0", rejected(JUNK_VALUE)),
    ("#N/A", rejected(JUNK_VALUE)),
]


@pytest.mark.parametrize(("raw", "expected"), PHONE_CASES)
def test_phone_golden(raw, expected):
    assert normalize_phone(raw) == expected
    assert normalize("phone", raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 1234 5678", ok(PHONE)),
        ("021-6212 3456", rejected(NOT_MOBILE)),
        ("400-810-8888", rejected(NOT_MOBILE)),
        ("+1 650 253 0000", ok("+16502530000")),  # US numbers are FIXED_LINE_OR_MOBILE
        ("12012345678", rejected(INVALID_PHONE)),
    ],
)
def test_phone_mobile_only(raw, expected):
    assert normalize_phone(raw, mobile_only=True) == expected


def test_phone_default_region():
    assert normalize_phone("(650) 253-0000", "US") == ok("+16502530000")
    assert normalize_phone("+86 138 1234 5678", "US") == ok(PHONE)
    # 0086 is an international prefix in China, not in the US (011)
    assert normalize_phone("0086 13812345678", "US") == rejected(INVALID_PHONE)
    assert normalize_phone("13812345678", "US") == rejected(INVALID_PHONE)
    with pytest.raises(ValueError, match="region"):
        normalize_phone("13812345678", "XX")


EMAIL_CASES = [
    ("zhang.wei@qq.com", ok("zhang.wei@qq.com")),
    ("Zhang.Wei@QQ.COM", ok("zhang.wei@qq.com")),
    ("  zhang.wei@qq.com\u3000", ok("zhang.wei@qq.com")),
    ("ｚｈａｎｇ＠ｑｑ．ｃｏｍ", ok("zhang@qq.com")),  # full-width
    ("user+tag@gmail.com", ok("user+tag@gmail.com")),  # no provider-specific rewriting
    ("12345678@163.com", ok("12345678@163.com")),
    ("li_na-88@sina.com.cn", ok("li_na-88@sina.com.cn")),
    ("wang@例子.中国", ok("wang@例子.中国")),  # IDN domain
    ("wang@xn--fsqu00a.xn--fiqs8s", ok("wang@xn--fsqu00a.xn--fiqs8s")),
    ("zhang wei@qq.com", rejected(INVALID_EMAIL)),
    ("zhang@@qq.com", rejected(INVALID_EMAIL)),
    ("zhang@li@qq.com", rejected(INVALID_EMAIL)),
    ("zhang.qq.com", rejected(INVALID_EMAIL)),
    ("zhang@qq", rejected(INVALID_EMAIL)),
    ("@qq.com", rejected(INVALID_EMAIL)),
    ("zhang@", rejected(INVALID_EMAIL)),
    ("zhang@.com", rejected(INVALID_EMAIL)),
    ("zhang@qq..com", rejected(INVALID_EMAIL)),
    ("zhang@-qq.com", rejected(INVALID_EMAIL)),
    ("zhang@qq_mail.com", rejected(INVALID_EMAIL)),
    ("zhang@qq.c", rejected(INVALID_EMAIL)),
    ("zhang@qq.123", rejected(INVALID_EMAIL)),
    ("zhang..wei@qq.com", rejected(INVALID_EMAIL)),
    (".zhang@qq.com", rejected(INVALID_EMAIL)),
    ("mailto:zhang@qq.com", rejected(INVALID_EMAIL)),
    ("zhang@qq.com,li@qq.com", rejected(INVALID_EMAIL)),
    ("张伟@qq.com", rejected(INVALID_EMAIL)),
    ("zhang@qq。com", rejected(INVALID_EMAIL)),  # ideographic full stop
    ("a" * 65 + "@qq.com", rejected(INVALID_EMAIL)),
    (None, rejected(EMPTY)),
    ("   ", rejected(EMPTY)),
    ("null", rejected(JUNK_VALUE)),
    ("N/A", rejected(JUNK_VALUE)),
]


@pytest.mark.parametrize(("raw", "expected"), EMAIL_CASES)
def test_email_golden(raw, expected):
    assert normalize_email(raw) == expected
    assert normalize("email", raw) == expected


DEVICE_CASES = [
    # IDFA
    ("idfa", IDFA.lower(), ok(IDFA)),
    ("idfa", f"  {IDFA} ", ok(IDFA)),
    ("idfa", IDFA.replace("-", "").lower(), ok(IDFA)),  # 32 hex digits get their dashes
    ("idfa", "00000000-0000-0000-0000-000000000000", rejected(JUNK_DEVICE)),
    ("idfa", "ffffffff-ffff-ffff-ffff-ffffffffffff", rejected(JUNK_DEVICE)),
    ("idfa", "6D92078A-8246-4BA4-AE5B", rejected(INVALID_DEVICE)),
    ("idfa", "6D92078A-8246-4BA4-AE5B-76104861E7DG", rejected(INVALID_DEVICE)),
    ("idfa", "6D92078A82464BA4", rejected(INVALID_DEVICE)),  # 16 hex is OAID-only
    ("idfa", "{6D92078A-8246-4BA4-AE5B-76104861E7DC}", rejected(INVALID_DEVICE)),
    # OAID: UUID, 16 or 64 hex digits
    ("oaid", "a1b2c3d4-e5f6-4789-abcd-ef0123456789", ok("A1B2C3D4-E5F6-4789-ABCD-EF0123456789")),
    ("oaid", "a1b2c3d4e5f60789", ok("A1B2C3D4E5F60789")),
    ("oaid", "ab" * 32, ok("AB" * 32)),
    ("oaid", "0000000000000000", rejected(JUNK_DEVICE)),
    ("oaid", "0" * 64, rejected(JUNK_DEVICE)),
    ("oaid", "00000000-0000-0000-0000-000000000000", rejected(JUNK_DEVICE)),
    ("oaid", "a1b2c3d4e5f6078", rejected(INVALID_DEVICE)),
    # IMEI: 15 digits, Luhn; 14 digits get their check digit
    ("imei", "490154203237518", ok("490154203237518")),
    ("imei", "49-015420-323751-8", ok("490154203237518")),
    ("imei", "49 015420 323751 8", ok("490154203237518")),
    ("imei", "49015420323751", ok("490154203237518")),
    ("imei", "４９０１５４２０３２３７５１８", ok("490154203237518")),
    ("imei", "490154203237519", rejected(INVALID_DEVICE)),  # bad check digit
    ("imei", "4901542032375180", rejected(INVALID_DEVICE)),  # 16 digits (IMEISV)
    ("imei", "1234567", rejected(INVALID_DEVICE)),
    ("imei", "A0000012345678", rejected(INVALID_DEVICE)),  # a MEID, not an IMEI
    ("imei", "000000000000000", rejected(JUNK_DEVICE)),
    ("imei", "00000000000000", rejected(JUNK_DEVICE)),
    # Android id: 16 hex digits, upper-case
    ("android_id", "a1b2c3d4e5f60789", ok("A1B2C3D4E5F60789")),
    ("android_id", "A1B2C3D4E5F60789", ok("A1B2C3D4E5F60789")),
    ("android_id", "9774d56d682e549c", rejected(JUNK_DEVICE)),
    ("android_id", "9774D56D682E549C", rejected(JUNK_DEVICE)),
    ("android_id", "ffffffffffffffff", rejected(JUNK_DEVICE)),
    ("android_id", "a1b2c3d4e5f6078", rejected(INVALID_DEVICE)),
    ("android_id", "a1b2c3d4e5f6078g", rejected(INVALID_DEVICE)),
    # missing / placeholders, any kind
    ("idfa", None, rejected(EMPTY)),
    ("oaid", "", rejected(EMPTY)),
    ("imei", "null", rejected(JUNK_VALUE)),
    ("android_id", "undefined", rejected(JUNK_VALUE)),
]


@pytest.mark.parametrize(("kind", "raw", "expected"), DEVICE_CASES)
def test_device_golden(kind, raw, expected):
    assert normalize_device(raw, kind) == expected
    assert normalize(f"device:{kind}", raw) == expected


def test_device_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="device kind"):
        normalize_device(IDFA, "gaid")


ID_CASES = [
    ("wx_openid", "oX1abCDefGhIjKlMnOpQrStUvWxY", ok("oX1abCDefGhIjKlMnOpQrStUvWxY")),
    ("wx_openid", "  oX1abCDef  ", ok("oX1abCDef")),  # trimmed, case kept
    ("wx_openid", "ｏＸ１ａｂＣＤｅｆ", ok("oX1abCDef")),  # NFKC
    ("wx_openid", "\u200boX1abCDef\ufeff", ok("oX1abCDef")),
    ("wx_unionid", "o6_bmasdasdsad6_2sgVt7hMZOPfL", ok("o6_bmasdasdsad6_2sgVt7hMZOPfL")),
    ("douyin_openid", "_000Qz6aBcD-eFgH", ok("_000Qz6aBcD-eFgH")),
    ("wecom_external_userid", "wmAbCdEf123", ok("wmAbCdEf123")),
    ("member_id", "VIP-000123", ok("VIP-000123")),
    ("member_id", "12345.0", ok("12345")),  # spreadsheet export
    ("member_id", 12345, ok("12345")),
    ("member_id", "V1.0", ok("V1.0")),
    ("member_id", "0.0", rejected(JUNK_VALUE)),
    ("wx_openid", "NULL", rejected(JUNK_VALUE)),
    ("wx_openid", "None", rejected(JUNK_VALUE)),
    ("wx_unionid", "nil", rejected(JUNK_VALUE)),
    ("douyin_openid", "undefined", rejected(JUNK_VALUE)),
    ("member_id", "-1", rejected(JUNK_VALUE)),
    ("member_id", "0", rejected(JUNK_VALUE)),
    ("wecom_external_userid", "n/a", rejected(JUNK_VALUE)),
    ("wx_openid", "#N/A", rejected(JUNK_VALUE)),
    ("member_id", " nan ", rejected(JUNK_VALUE)),
    ("member_id", "\\N", rejected(JUNK_VALUE)),  # MySQL NULL export
    ("wx_openid", None, rejected(EMPTY)),
    ("wx_openid", "", rejected(EMPTY)),
    ("member_id", " \t ", rejected(EMPTY)),
    ("member_id", "abc\x00def", rejected(INVALID_ID)),
    ("wx_openid", "oX1\nabc", rejected(INVALID_ID)),
    ("member_id", "a" * 257, rejected(INVALID_ID)),
]


@pytest.mark.parametrize(("id_type", "raw", "expected"), ID_CASES)
def test_account_id_golden(id_type, raw, expected):
    assert normalize(id_type, raw) == expected


def test_namespaced_types_dispatch_like_their_base_type():
    assert normalize("wx_openid:wx1234567890abcdef", " oX1ab ") == ok("oX1ab")
    assert normalize("douyin_openid:app1", "NULL") == rejected(JUNK_VALUE)
    assert normalizer_for("wx_openid:wxabc") is normalize_openid
    assert normalizer_for("member_id") is normalize_member_id


@pytest.mark.parametrize(
    "id_type", ["mobile", "wx_openid:", "phone:cn", "device", "device:gaid", ""]
)
def test_unknown_type_is_a_programming_error(id_type):
    with pytest.raises(ValueError, match="unknown identifier type"):
        normalize(id_type, "x")
    with pytest.raises(ValueError, match="unknown identifier type"):
        mask(id_type, "x")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    ("id_type", "raw", "expected"),
    [
        pytest.param("member_id", 10**5000, rejected(INVALID_ID), id="huge-int"),  # str() raises
        ("member_id", "x" * 5000, rejected(INVALID_ID)),
        ("phone", "1" * 5000, rejected(INVALID_PHONE)),
        ("email", "a" * 5000 + "@qq.com", rejected(INVALID_EMAIL)),
        ("device:imei", _Unprintable(), rejected(INVALID_DEVICE)),
        ("phone", float("inf"), rejected(INVALID_PHONE)),
        ("phone", 13812345678.0, ok(PHONE)),
    ],
)
def test_odd_inputs_are_rejected_not_raised(id_type, raw, expected):
    assert normalize(id_type, raw) == expected


def test_normalized_holds_exactly_one_of_value_and_reason():
    with pytest.raises(ValueError):
        Normalized(None, None)
    with pytest.raises(ValueError):
        Normalized("x", EMPTY)
    assert ok("x").ok and not rejected(EMPTY).ok


def test_reason_codes_are_documented_snake_case():
    codes = {getattr(nz, name) for name in nz.__all__ if name.isupper() and name in REASONS}
    assert set(REASONS) >= codes
    for code, doc in REASONS.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code) and doc
    returned = {e.reason for _, e in PHONE_CASES + EMAIL_CASES} | {e.reason for *_, e in ID_CASES}
    returned |= {e.reason for *_, e in DEVICE_CASES} | {NOT_MOBILE}
    assert returned - {None} <= set(REASONS)


def test_default_junk_values():
    assert set(DEFAULT_JUNK_VALUES) == set(ID_TYPES)
    # phone placeholders are in normalised form: valid numbers the hub guard blocks
    for value in DEFAULT_JUNK_VALUES["phone"]:
        assert normalize_phone(value) == ok(value)
    # device placeholders are well-formed but rejected by the normaliser itself
    for id_type, values in DEFAULT_JUNK_VALUES.items():
        if id_type.startswith("device:"):
            for value in values:
                assert normalize(id_type, value) == rejected(JUNK_DEVICE)
                assert normalize(id_type, value.lower()) == rejected(JUNK_DEVICE)
    with pytest.raises(TypeError):
        DEFAULT_JUNK_VALUES["phone"] = frozenset()  # read-only; conf extends a copy
    assert (
        "+8613800138001"
        in (DEFAULT_JUNK_VALUES | {"phone": frozenset({"+8613800138001"})})["phone"]
    )


# ----------------------------------------------------------------------------------------------
# Masking
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("id_type", "value", "expected"),
    [
        ("phone", "+8613812345678", "138****5678"),
        ("phone", "+862162123456", "216****456"),
        ("phone", "+16502530000", "+1 650****000"),
        ("phone", "+85291234567", "+852 91****67"),
        ("phone", "+447911123456", "+44 79*****456"),
        ("email", "zhang.wei@qq.com", "z***@qq.com"),
        ("email", "abc@qq.com", "***@qq.com"),
        ("device:idfa", IDFA, "6D92…E7DC"),
        ("device:oaid", "AB" * 32, "ABAB…ABAB"),
        ("device:oaid", "A1B2C3D4E5F60789", "A1…89"),
        ("device:imei", "490154203237518", "49…18"),
        ("device:android_id", "A1B2C3D4E5F60789", "A1…89"),
        ("wx_openid", "oX1abCDefGhIjKlMnOpQrStUvWxY", "oX1***xY"),
        ("wx_openid:wxabc", "oX1abCDefGhIjKlMnOpQrStUvWxY", "oX1***xY"),
        ("member_id", "VIP-000123", "VI***3"),
        ("member_id", "12345", "1***"),
        ("member_id", "12", "***"),
    ],
)
def test_mask_golden(id_type, value, expected):
    assert mask(id_type, value) == expected


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------
_CN_MOBILE_PREFIXES = sorted(
    p
    for p in (str(n) for n in range(130, 200))
    if phonenumbers.is_valid_number(phonenumbers.parse(p + "12345678", "CN"))
)


@st.composite
def cn_mobiles(draw) -> str:
    """An 11-digit Chinese mobile number that phonenumbers calls valid."""
    national = draw(st.sampled_from(_CN_MOBILE_PREFIXES)) + draw(
        st.text("0123456789", min_size=8, max_size=8)
    )
    assume(phonenumbers.is_valid_number(phonenumbers.parse(national, "CN")))
    return national


def _grouped(n: str, sep: str) -> str:
    return sep.join((n[:3], n[3:7], n[7:]))


_VARIANTS = [
    lambda n: n,
    lambda n: "+86" + n,
    lambda n: "+86 " + _grouped(n, " "),
    lambda n: "+86-" + _grouped(n, "-"),
    lambda n: "86" + n,
    lambda n: "86 " + _grouped(n, " "),
    lambda n: "0086" + n,
    lambda n: "0086-" + _grouped(n, "-"),
    lambda n: _grouped(n, " "),
    lambda n: _grouped(n, "-"),
    lambda n: _grouped(n, "\u3000"),
    lambda n: f"({n[:3]}){n[3:]}",
    lambda n: n + ".0",
    lambda n: n.translate(FULL_WIDTH),
    lambda n: ("+86 " + _grouped(n, "-")).translate(FULL_WIDTH),
    lambda n: "+86 0" + n,
]
_WHITESPACE = st.sampled_from(["", " ", "  ", "\t", "\u3000", "\u00a0", "\ufeff"])

_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(cn_mobiles(), st.sampled_from(_VARIANTS), _WHITESPACE, _WHITESPACE)
def test_every_formatting_of_a_cn_mobile_gives_one_e164(national, variant, before, after):
    assert normalize_phone(before + variant(national) + after) == ok("+86" + national)


def _phonenumbers_reference(digits: str) -> Normalized:
    """What plain phonenumbers says about a digit string read in CN (no fast path)."""
    try:
        number = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        return rejected(INVALID_PHONE)
    if not phonenumbers.is_valid_number(number):
        return rejected(INVALID_PHONE)
    return ok(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@_PROPERTY
@given(
    st.one_of(
        st.text("0123456789", min_size=10, max_size=12).map(lambda s: "1" + s),
        st.text("0123456789", min_size=11, max_size=11).map(lambda s: "86" + s),
        st.text("0123456789", min_size=11, max_size=11).map(lambda s: "0086" + s),
        st.text("0123456789", min_size=11, max_size=13).map(lambda s: "+86" + s),
        st.text("0123456789", min_size=5, max_size=16),
    )
)
def test_cn_mobile_fast_path_agrees_with_phonenumbers(digits):
    assume(digits not in nz.JUNK_TOKENS)
    assert normalize_phone(digits) == _phonenumbers_reference(digits)


_ARBITRARY = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text("0123456789 +-().０１２３４５６７８９\u3000", max_size=24),
    st.text("0123456789abcdefABCDEF-", max_size=70),
    st.integers(),
    st.floats(),
)


@_PROPERTY
@given(st.sampled_from(ID_TYPES), _ARBITRARY)
def test_never_raises_and_is_idempotent(id_type, raw):
    result = normalize(id_type, raw)
    assert isinstance(result, Normalized)
    assert (result.value is None) != (result.reason is None)
    assert result.reason is None or result.reason in REASONS
    if result.value is not None:
        assert normalize(id_type, result.value) == result
        masked = mask(id_type, result.value)
        assert result.value not in masked or "*" in result.value or "…" in result.value


@_PROPERTY
@given(st.sampled_from(_VARIANTS), cn_mobiles())
def test_phone_normalisation_is_idempotent(variant, national):
    first = normalize_phone(variant(national))
    assert normalize_phone(first.value) == first


_VALID_PHONES = st.one_of(
    cn_mobiles().map(lambda n: "+86" + n),
    st.sampled_from(
        [
            "+862162123456",
            "+861065529988",
            "+8657185022088",
            "+864008108888",
            "+16502530000",
            "+85291234567",
            "+447911123456",
            "+886912345678",
            "+6591234567",
            "+4915123456789",
        ]
    ),
)


@_PROPERTY
@given(_VALID_PHONES)
def test_phone_mask_shows_at_most_seven_digits(value):
    masked = mask("phone", value)
    assert value not in masked and value[1:] not in masked
    assert sum(ch.isdigit() for ch in masked) <= 7
    assert masked.count("*") >= 4


def _hex(size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdefABCDEF", min_size=size, max_size=size)


_MASKABLE = st.one_of(
    st.tuples(st.just("device:idfa"), st.uuids().map(str)),
    st.tuples(st.just("device:oaid"), st.one_of(st.uuids().map(str), _hex(16), _hex(64))),
    st.tuples(st.just("device:imei"), st.text("0123456789", min_size=14, max_size=14)),
    st.tuples(st.just("device:android_id"), _hex(16)),
    st.tuples(
        st.sampled_from(
            ["member_id", "wx_openid", "wx_unionid", "douyin_openid", "wecom_external_userid"]
        ),
        st.text(min_size=1, max_size=80),
    ),
)


@_PROPERTY
@given(_MASKABLE)
def test_mask_reveals_at_most_30_percent(case):
    id_type, raw = case
    value = normalize(id_type, raw).value
    assume(value is not None and "*" not in value and "…" not in value)
    masked = mask(id_type, value)
    filler = "…" if id_type.startswith("device:") else "***"
    assert value not in masked
    assert len(masked) - len(filler) <= 0.3 * len(value)


@_PROPERTY
@given(st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,10}\.(com|cn|net)", fullmatch=True))
def test_email_mask_hides_the_local_part(raw):
    value = normalize_email(raw).value
    assume(value is not None)
    local, _, domain = value.partition("@")
    masked = mask("email", value)
    assert value not in masked
    assert masked.endswith("***@" + domain)
    assert len(masked) - len("***@" + domain) <= 0.3 * len(local)
