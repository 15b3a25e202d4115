"""The one versioned identifier normaliser (identifiers, masked values: ``docs/glossary.md``).

Pure Python, no Spark: the standardize stage calls these functions inside a pandas UDF, so they
are fast, deterministic and **never raise on bad data**. Every function returns a
:class:`Normalized` holding either the normalised ``value`` or a rejection ``reason`` (one of the
reason codes below), which ingest/standardize write to quarantine. Only programming errors raise
``ValueError``: an unknown identifier type, device kind or phone region.

Identifier types (typed and namespaced)::

    phone, email, member_id, wx_openid, wx_unionid, douyin_openid, wecom_external_userid,
    device:idfa, device:oaid, device:imei, device:android_id

``wx_openid`` and ``douyin_openid`` may carry their namespace (``wx_openid:<appid>``,
``douyin_openid:<app>``); the namespace does not change how the value is normalised.

Normalised forms
----------------
phone
    E.164 (``+8613812345678``) via ``phonenumbers``. ``+86`` / ``86`` / ``0086`` / trunk ``0`` /
    spaces (incl. ideographic) / dashes / dots / parentheses / full-width characters all agree,
    and a spreadsheet ``.0`` suffix is dropped. Anything else (letters, ``,``, ``;``, ``ext``,
    ``转``, scientific notation such as ``1.38E+10``) is rejected, never guessed: phonenumbers'
    vanity-letter mapping (``138abcd5678``) and extension parsing are not used. A number without
    ``+``/``00`` is read in ``default_region`` (``CN``). **Landlines**: every number that
    phonenumbers says is *valid* is accepted, whatever its type (mobile, fixed line, 400
    shared-cost ...), because lead forms and orders legitimately carry office numbers; a shared
    store number is the hub guard's job (``docs/identity.md``). Pass ``mobile_only=True`` to reject
    non-mobile numbers with ``NOT_MOBILE``.
email
    NFKC, trim, lower-case (the whole address, including the local part). Shape check: exactly one
    ``@``; ASCII local part of RFC 5322 "atext" characters and dots (no leading/trailing/double
    dot, at most 64 chars); a domain of at least two dot-separated labels (letters/digits/hyphens,
    IDN letters allowed), a top-level label of 2+ letters (or ``xn--`` punycode); at most 254
    chars. No provider-specific rewriting (gmail dots, ``+tag``): that would be a guess.
device
    IDFA: UUID ``8-4-4-4-12``, upper-case (32 hex digits without dashes are re-dashed).
    OAID: UUID as for IDFA, or 16 / 64 hex digits (Xiaomi, vivo/OPPO ...), upper-case.
    IMEI: 15 digits with a valid Luhn check digit; separators (space, ``-``, ``/``) are removed
    and a 14-digit IMEI (no check digit) gets its check digit appended, so both forms agree.
    Android id: 16 hex digits, **upper-case** like every other device id, so
    ``9774d56d682e549c`` and ``9774D56D682E549C`` agree; exporters that need lower case
    lower-case at export time.
    Known placeholders (:data:`DEFAULT_JUNK_VALUES`) and any value whose hex digits are all the
    same character (``FFFFFFFF-FFFF-...``, ``0000000000000000``) are rejected with ``JUNK_DEVICE``.
member_id, openids, unionid, external_userid
    NFKC, trim, case kept (openids are case-sensitive). A member id that is all digits followed by
    a spreadsheet ``.0`` (``12345.0``) loses the ``.0``.

Common to all types: ``None``, NaN and whitespace-only input is ``EMPTY``; zero-width characters
and BOMs are removed; a value equal (case-insensitively) to a placeholder token such as ``null``,
``-1``, ``#N/A`` (:data:`JUNK_TOKENS`) is ``JUNK_VALUE``. Non-string input is tolerated (an ``int``
or integral ``float`` is read as its digits) although the UDFs pass strings.

Versioning
----------
:data:`NORMALIZER_VERSION` changes whenever any input would normalise differently (new rule,
new reason, different output). Phone validity also depends on the ``phonenumbers`` metadata, whose
version is :data:`PHONE_METADATA_VERSION`; record both with the run.

Masking (:func:`mask`)
----------------------
A display form for profiles and logs; see :func:`mask` for the rules.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from oneid.conf.pipeline import DEVICE_KINDS

__all__ = [
    "BLOCKLISTED",
    "DEFAULT_JUNK_VALUES",
    "DEVICE_KINDS",
    "EMPTY",
    "ID_TYPES",
    "INVALID_DEVICE",
    "INVALID_EMAIL",
    "INVALID_ID",
    "INVALID_PHONE",
    "JUNK_DEVICE",
    "JUNK_TOKENS",
    "JUNK_VALUE",
    "NORMALIZER_VERSION",
    "NOT_MOBILE",
    "PHONE_METADATA_VERSION",
    "REASONS",
    "Normalized",
    "mask",
    "normalize",
    "normalize_device",
    "normalize_email",
    "normalize_external_userid",
    "normalize_member_id",
    "normalize_openid",
    "normalize_phone",
    "normalize_unionid",
    "normalizer_for",
]

NORMALIZER_VERSION: str = "1"
"""Bump whenever any input would normalise (or be rejected) differently."""

PHONE_METADATA_VERSION: str = phonenumbers.__version__
"""Version of the phonenumbers metadata that decides which phone numbers are valid."""

# --------------------------------------------------------------------------------------------
# Reason codes: the only values ``Normalized.reason`` (and quarantine.reason) can take here.
# --------------------------------------------------------------------------------------------
EMPTY = "empty"
"""None, NaN, empty or whitespace-only input."""
JUNK_VALUE = "junk_value"
"""A placeholder token (``null``, ``none``, ``-1``, ``0``, ``#N/A`` ... see JUNK_TOKENS)."""
INVALID_PHONE = "invalid_phone"
"""Not a valid phone number per phonenumbers (wrong length, unassigned prefix such as 12x,
letters or other characters, several numbers in one field, scientific notation)."""
NOT_MOBILE = "not_mobile"
"""A valid phone number that is not a mobile number; only with ``mobile_only=True``."""
INVALID_EMAIL = "invalid_email"
"""Not shaped like an e-mail address (see module docstring)."""
INVALID_DEVICE = "invalid_device"
"""Wrong format for the device kind (not a UUID / hex string, bad IMEI length or Luhn digit)."""
JUNK_DEVICE = "junk_device"
"""A well-formed device id that is a known placeholder (all-zero IDFA/OAID after the user limited
ad tracking, IMEI 000000000000000, Android id 9774d56d682e549c) or one repeated character."""
UNDETECTED_DEVICE = "undetected_device"
"""A device id to be typed by its shape (``kind: auto`` or an empty kind cell) that fits no
kind's shape."""
INVALID_ID = "invalid_id"
"""An account id (member id, openid, unionid, external userid) with control characters or longer
than 256 characters."""
BLOCKLISTED = "blocklisted"
"""Reserved for the hub guard: a normalised value found in the configured blocklist
(DEFAULT_JUNK_VALUES extended by conf). Never returned by this module."""

REASONS: Mapping[str, str] = MappingProxyType(
    {
        code: doc
        for code, doc in (
            (EMPTY, "empty or whitespace-only input"),
            (JUNK_VALUE, "placeholder token such as null, -1, #N/A"),
            (INVALID_PHONE, "not a valid phone number"),
            (NOT_MOBILE, "valid phone number that is not a mobile (mobile_only=True)"),
            (INVALID_EMAIL, "not shaped like an e-mail address"),
            (INVALID_DEVICE, "wrong format for the device id kind"),
            (JUNK_DEVICE, "known placeholder device id or one repeated character"),
            (UNDETECTED_DEVICE, "device id whose kind could not be told from its shape"),
            (INVALID_ID, "account id with control characters or too long"),
            (BLOCKLISTED, "value in the configured blocklist (hub guard only)"),
        )
    }
)
"""Every reason code with a one-line description (for docs and quarantine reports)."""


@dataclass(frozen=True, slots=True)
class Normalized:
    """Result of normalising one raw value: exactly one of ``value`` and ``reason`` is set."""

    value: str | None
    reason: str | None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("Normalized needs exactly one of value and reason")

    @property
    def ok(self) -> bool:
        """True when the input was accepted."""
        return self.value is not None


# Rejections are immutable, so each reason has one shared instance.
_REJECT = {code: Normalized(None, code) for code in REASONS}

ID_TYPES: tuple[str, ...] = (
    "phone",
    "email",
    "member_id",
    "wx_openid",
    "wx_unionid",
    "douyin_openid",
    "wecom_external_userid",
    "device:idfa",
    "device:oaid",
    "device:imei",
    "device:android_id",
)
"""Base identifier types. ``wx_openid`` and ``douyin_openid`` also accept ``<type>:<namespace>``."""

_NAMESPACED_TYPES = frozenset({"wx_openid", "douyin_openid"})


JUNK_TOKENS: frozenset[str] = frozenset(
    {"null", "none", "nil", "undefined", "-1", "0", "n/a", "#n/a", "na", "nan", "(null)", "\\n"}
)
"""Placeholder tokens rejected with JUNK_VALUE for every type (compared case-insensitively)."""

_ZERO_UUID = "00000000-0000-0000-0000-000000000000"

DEFAULT_JUNK_VALUES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "phone": frozenset({"+8613800138000"}),
        "email": frozenset(),
        "member_id": frozenset(),
        "wx_openid": frozenset(),
        "wx_unionid": frozenset(),
        "douyin_openid": frozenset(),
        "wecom_external_userid": frozenset(),
        "device:idfa": frozenset({_ZERO_UUID}),
        "device:oaid": frozenset({_ZERO_UUID, "0" * 16, "0" * 64}),
        "device:imei": frozenset({"000000000000000"}),
        "device:android_id": frozenset({"9774D56D682E549C"}),
    }
)
"""Built-in placeholder values per identifier type, in normalised form; read-only.

Device entries are rejected by :func:`normalize_device` (``JUNK_DEVICE``). The other entries
(e.g. ``+8613800138000``, a famous demo number) are valid identifiers that the hub guard blocks;
conf extends this mapping (``{**DEFAULT_JUNK_VALUES, ...}``) rather than mutating it."""

# --------------------------------------------------------------------------------------------
# Shared pre-cleaning
# --------------------------------------------------------------------------------------------
# Zero-width space/joiners, word joiner, BOM, soft hyphen: invisible, and NFKC keeps them.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_MAX_RAW = 1024  # longer input is rejected before NFKC and any regex run


def _as_text(raw: object) -> str | None:
    """Text of a non-string input: an int or integral float as its digits; None for NaN."""
    if isinstance(raw, float):
        if math.isnan(raw):
            return None
        return str(int(raw)) if raw.is_integer() else repr(raw)
    if isinstance(raw, int) and raw.bit_length() > 4 * _MAX_RAW:
        return "9" * (_MAX_RAW + 1)  # too long either way; str() would refuse it
    return str(raw)


def _precheck(raw: object, invalid: str) -> tuple[str, None] | tuple[None, Normalized]:
    """(clean text, None) to continue, or (None, rejection).

    Clean text is NFKC-normalised, stripped, free of invisible characters and not a placeholder
    token. ``invalid`` is the caller's reason for input longer than any identifier can be.
    """
    if raw is None:
        return None, _REJECT[EMPTY]
    if not isinstance(raw, str):
        try:
            raw = _as_text(raw)
        except Exception:  # an exotic object whose str() fails is bad data, not a crash
            return None, _REJECT[invalid]
        if raw is None:
            return None, _REJECT[EMPTY]
    if len(raw) > _MAX_RAW:
        return None, _REJECT[invalid]
    if raw.isascii():
        text = raw.strip()
    else:
        text = unicodedata.normalize("NFKC", raw.translate(_INVISIBLE)).strip()
    if not text:
        return None, _REJECT[EMPTY]
    if len(text) <= 9 and text.lower() in JUNK_TOKENS:
        return None, _REJECT[JUNK_VALUE]
    return text, None


# --------------------------------------------------------------------------------------------
# Phone
# --------------------------------------------------------------------------------------------
# After NFKC: ASCII digits, '+', and separators. Dash-like characters NFKC leaves alone are
# mapped to '-' first.
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70"), "-")
_PHONE_SHAPE_RE = re.compile(r"\+?[0-9 \t\-.()/]+")
_PHONE_SEPARATORS_RE = re.compile(r"[ \t\-.()/]+")
_SPREADSHEET_SUFFIX_RE = re.compile(r"(\+?[0-9]+)\.0+")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_E164 = phonenumbers.PhoneNumberFormat.E164
_SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)

_CN_META = PhoneMetadata.metadata_for_region("CN")
# Fast path for the overwhelmingly common case, an 11-digit Chinese mobile number: the same
# patterns phonenumbers.is_valid_number uses for CN mobiles (tests check the two agree).
_CN_MOBILE_RE = re.compile(_CN_META.mobile.national_number_pattern)
_CN_GENERAL_RE = re.compile(_CN_META.general_desc.national_number_pattern)


def _cn_mobile_fast(digits: str, plus: bool, default_region: str) -> str | None:
    """E.164 when ``digits`` is unambiguously a valid CN mobile, else None (use phonenumbers)."""
    if plus:
        if not digits.startswith("86"):
            return None
        national = digits[2:]
    elif default_region != "CN":
        return None
    elif digits.startswith("0086"):
        national = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        national = digits[2:]
    else:
        national = digits
    if (
        len(national) == 11
        and national[0] == "1"
        and _CN_MOBILE_RE.fullmatch(national)
        and _CN_GENERAL_RE.fullmatch(national)
    ):
        return "+86" + national
    return None


def normalize_phone(
    raw: str | None, default_region: str = "CN", *, mobile_only: bool = False
) -> Normalized:
    """Normalise a phone number to E.164; reject what phonenumbers does not call valid.

    ``default_region`` (ISO 3166 code) is the country of numbers written without ``+``/``00``;
    an unsupported region raises ValueError. ``mobile_only`` rejects valid non-mobile numbers
    (landlines, 400 numbers) with NOT_MOBILE; by default every valid number is accepted.
    """
    if default_region not in _SUPPORTED_REGIONS:
        raise ValueError(f"unsupported phone region {default_region!r}")
    text, rejected = _precheck(raw, INVALID_PHONE)
    if rejected is not None:
        return rejected
    if len(text) > 64:
        return _REJECT[INVALID_PHONE]
    if not text.isascii():
        text = text.translate(_DASHES)
    if not _PHONE_SHAPE_RE.fullmatch(text):
        return _REJECT[INVALID_PHONE]
    suffix = _SPREADSHEET_SUFFIX_RE.fullmatch(text)
    if suffix is not None:
        text = suffix.group(1)
    plus = text[0] == "+"
    digits = _PHONE_SEPARATORS_RE.sub("", text[1:] if plus else text)
    if not digits.isdigit() or len(digits) > 20:
        return _REJECT[INVALID_PHONE]

    fast = _cn_mobile_fast(digits, plus, default_region)
    if fast is not None:
        return Normalized(fast, None)
    return _parse_with_phonenumbers("+" + digits if plus else digits, default_region, mobile_only)


@functools.lru_cache(maxsize=1 << 16)
def _parse_with_phonenumbers(number_text: str, region: str, mobile_only: bool) -> Normalized:
    """The slow path (~90 µs); cached because shared store numbers repeat a lot."""
    try:
        number = phonenumbers.parse(number_text, region)
    except NumberParseException:
        return _REJECT[INVALID_PHONE]
    if not phonenumbers.is_valid_number(number):
        return _REJECT[INVALID_PHONE]
    if mobile_only and phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return _REJECT[NOT_MOBILE]
    return Normalized(phonenumbers.format_number(number, _E164), None)


# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------
_EMAIL_LOCAL_RE = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_EMAIL_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_LABEL}\.)+(?:[^\W\d_]{{2,63}}|xn--[a-z0-9-]{{1,59}})")


def normalize_email(raw: str | None) -> Normalized:
    """Normalise an e-mail address: NFKC, trim, lower-case, then check its shape."""
    text, rejected = _precheck(raw, INVALID_EMAIL)
    if rejected is not None:
        return rejected
    if len(text) > 254:
        return _REJECT[INVALID_EMAIL]
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    local, at, domain = text.partition("@")
    if (
        not at
        or len(local) > 64
        or "_" in domain
        or not _EMAIL_LOCAL_RE.fullmatch(local)
        or not _EMAIL_DOMAIN_RE.fullmatch(domain)
    ):
        return _REJECT[INVALID_EMAIL]
    return Normalized(text, None)


# --------------------------------------------------------------------------------------------
# Device ids
# --------------------------------------------------------------------------------------------
_UUID_RE = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
_HEX32_RE = re.compile(r"[0-9A-F]{32}")
_OAID_HEX_RE = re.compile(r"[0-9A-F]{16}|[0-9A-F]{64}")
_ANDROID_ID_RE = re.compile(r"[0-9A-F]{16}")
_IMEI_SEPARATORS_RE = re.compile(r"[ \-/]")
_DEVICE_JUNK = {kind: DEFAULT_JUNK_VALUES[f"device:{kind}"] for kind in DEVICE_KINDS}


def _luhn_digit(body: str) -> str:
    """Luhn check digit for ``body`` (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _canonical_device(text: str, kind: str) -> str | None:
    """Canonical upper-case form of a device id, or None when the format is wrong."""
    if kind == "imei":
        digits = _IMEI_SEPARATORS_RE.sub("", text)
        if not (digits.isascii() and digits.isdigit()):
            return None
        if len(digits) == 14:
            return digits + _luhn_digit(digits)
        if len(digits) == 15 and _luhn_digit(digits[:14]) == digits[14]:
            return digits
        return None
    value = text.upper()
    if kind == "android_id":
        return value if _ANDROID_ID_RE.fullmatch(value) else None
    # idfa / oaid
    if _UUID_RE.fullmatch(value):
        return value
    if _HEX32_RE.fullmatch(value):
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    if kind == "oaid" and _OAID_HEX_RE.fullmatch(value):
        return value
    return None


UNDETECTED_KIND = "undetected"
"""The kind shape detection gives a device id that fits no kind (``device:undetected``)."""


def _undetected_device(raw: str | None) -> Normalized:
    _, rejected = _precheck(raw, UNDETECTED_DEVICE)
    return rejected or _REJECT[UNDETECTED_DEVICE]


def normalize_device(raw: str | None, kind: str) -> Normalized:
    """Normalise a device id of ``kind`` (idfa, oaid, imei, android_id); see module docstring."""
    if kind not in _DEVICE_JUNK:
        raise ValueError(f"unknown device kind {kind!r}; expected one of {DEVICE_KINDS}")
    text, rejected = _precheck(raw, INVALID_DEVICE)
    if rejected is not None:
        return rejected
    if len(text) > 80:
        return _REJECT[INVALID_DEVICE]
    value = _canonical_device(text, kind)
    if value is None:
        return _REJECT[INVALID_DEVICE]
    if value in _DEVICE_JUNK[kind] or len(set(value.replace("-", ""))) == 1:
        return _REJECT[JUNK_DEVICE]
    return Normalized(value, None)


# --------------------------------------------------------------------------------------------
# Account ids (member id, openid, unionid, external userid)
# --------------------------------------------------------------------------------------------
_MAX_ID = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MEMBER_FLOAT_RE = re.compile(r"([0-9]+)\.0+")


def _normalize_account_id(raw: object) -> Normalized:
    text, rejected = _precheck(raw, INVALID_ID)
    if rejected is not None:
        return rejected
    if len(text) > _MAX_ID or _CONTROL_RE.search(text):
        return _REJECT[INVALID_ID]
    return Normalized(text, None)


def normalize_openid(raw: str | None) -> Normalized:
    """Normalise a WeChat / Douyin openid: NFKC, trim, case kept, placeholders rejected."""
    return _normalize_account_id(raw)


def normalize_unionid(raw: str | None) -> Normalized:
    """Normalise a WeChat unionid: NFKC, trim, case kept, placeholders rejected."""
    return _normalize_account_id(raw)


def normalize_external_userid(raw: str | None) -> Normalized:
    """Normalise a WeCom external_userid: NFKC, trim, case kept, placeholders rejected."""
    return _normalize_account_id(raw)


def normalize_member_id(raw: str | None) -> Normalized:
    """Normalise a CRM member id: as an openid, and ``12345.0`` (spreadsheet export) → ``12345``."""
    result = _normalize_account_id(raw)
    if result.value is not None:
        float_export = _MEMBER_FLOAT_RE.fullmatch(result.value)
        if float_export is not None:
            return _normalize_account_id(float_export.group(1))
    return result


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------
def _device(kind: str) -> Callable[[str | None], Normalized]:
    def normalize_kind(raw: str | None) -> Normalized:
        return normalize_device(raw, kind)

    normalize_kind.__name__ = f"normalize_device_{kind}"
    return normalize_kind


_NORMALIZERS: Mapping[str, Callable[[str | None], Normalized]] = MappingProxyType(
    {
        "phone": normalize_phone,
        "email": normalize_email,
        "member_id": normalize_member_id,
        "wx_openid": normalize_openid,
        "wx_unionid": normalize_unionid,
        "douyin_openid": normalize_openid,
        "wecom_external_userid": normalize_external_userid,
        **{f"device:{kind}": _device(kind) for kind in DEVICE_KINDS},
        f"device:{UNDETECTED_KIND}": _undetected_device,
    }
)


def _base_type(id_type: str) -> str:
    """``wx_openid:<appid>`` → ``wx_openid``; raise ValueError for an unknown type."""
    if id_type in _NORMALIZERS:
        return id_type
    base, sep, namespace = id_type.partition(":") if isinstance(id_type, str) else ("", "", "")
    if sep and namespace and base in _NAMESPACED_TYPES:
        return base
    raise ValueError(f"unknown identifier type {id_type!r}; expected one of {ID_TYPES}")


def normalizer_for(id_type: str) -> Callable[[str | None], Normalized]:
    """The normalising function for ``id_type`` (resolve once, then call per row in a UDF)."""
    return _NORMALIZERS[_base_type(id_type)]


def normalize(id_type: str, raw: str | None) -> Normalized:
    """Normalise ``raw`` as identifier type ``id_type`` (e.g. ``phone``, ``device:idfa``).

    Raises ValueError for an unknown ``id_type`` (a programming error); bad data never raises.
    """
    return normalizer_for(id_type)(raw)


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------
_MAX_SHARE = 0.3  # share of characters a mask may reveal (phones excepted, see mask())


def _reveal(text: str, head: int, tail: int, filler: str) -> str:
    """Keep at most ``head`` + ``tail`` characters, and never more than 30 % of ``text``."""
    budget = int(len(text) * _MAX_SHARE)
    tail = min(tail, budget // 2)
    head = min(head, budget - tail)
    return text[:head] + filler + (text[-tail:] if tail else "")


def _mask_digits(national: str, max_revealed: int) -> str:
    """Show at most ``max_revealed`` digits, keep at least 4 hidden; one ``*`` per hidden digit."""
    revealed = max(0, min(max_revealed, len(national) - 4))
    tail = min(4, (revealed + 1) // 2)
    head = revealed - tail
    return national[:head] + "*" * (len(national) - revealed) + national[len(national) - tail :]


def _mask_phone(value: str) -> str:
    if value.startswith("+86") and value[3:].isdigit():
        return _mask_digits(value[3:], 7)
    try:
        number = phonenumbers.parse(value, None)
    except NumberParseException:
        return _reveal(value, 3, 2, "***")
    country = str(number.country_code)
    national = phonenumbers.national_significant_number(number)
    if not national.isdigit():
        return _reveal(value, 3, 2, "***")
    return f"+{country} " + _mask_digits(national, max(0, 7 - len(country)))


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return _reveal(value, 3, 2, "***")
    return (local[0] if len(local) >= 4 else "") + "***@" + domain


def mask(id_type: str, value: str) -> str:
    """Masked display form of a *normalised* value (for profiles, logs and UIs).

    * phone, +86: the national number, 4+ middle digits starred, at most 7 digits shown:
      ``+8613812345678`` → ``138****5678``, landline ``+862162123456`` → ``216****456``.
    * phone, other countries: ``+<cc> `` then the national number masked the same way, with the
      country code counted in the 7 shown digits: ``+16502530000`` → ``+1 650****000``,
      ``+85291234567`` → ``+852 91****67``.
    * email: first character of the local part (only if it has 4+ characters) + ``***@`` +
      domain: ``zhang.wei@qq.com`` → ``z***@qq.com``, ``abc@qq.com`` → ``***@qq.com``.
    * device ids: first 4 + ``…`` + last 4 characters, reduced so that at most 30 % of the value
      shows: ``6D92078A-8246-4BA4-AE5B-76104861E7DC`` → ``6D92…E7DC``, IMEI / Android id → 2 + 2.
    * account ids: first 3 + ``***`` + last 2, reduced to 30 % in the same way
      (``oX1ab…`` 28-char openid → ``oX1***yz``, ``12345`` → ``1***``).

    Phones are the one exception to the 30 % rule: ``138****5678`` is the form users and
    customer service recognise. Unknown ``id_type`` raises ValueError.
    """
    base = _base_type(id_type)
    if not isinstance(value, str) or not value:
        return "***"
    if base == "phone":
        return _mask_phone(value)
    if base == "email":
        return _mask_email(value)
    if base.startswith("device:"):
        return _reveal(value, 4, 4, "…")
    return _reveal(value, 3, 2, "***")
