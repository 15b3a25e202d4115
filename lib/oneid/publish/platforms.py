"""Match keys for custom-audience uploads: each ad platform's exact form of an identifier.

The input is a value OneID has already normalised (``oneid.standardize.normalize``): phone in
E.164 (``+8613812345678``), email NFKC + trimmed + lower-case, device ids upper-case (IMEI: 15
digits). :data:`KEY_FORMATS` has one row per (platform, identifier type) saying which upload
type / column the platform calls it, how the value is rewritten, which digest, which hex case,
and the documentation it comes from. A type the platform does not take, or one that OneID
cannot reproduce exactly, is a row without a column and with the reason: asking for it raises
:class:`UnsupportedMatchKey`. Nothing is guessed.

:func:`match_key` computes one key in Python. :func:`match_key_column` builds the same key as a
Spark ``Column`` from built-in functions only (no Python UDF). A value outside the accepted form
raises ``ValueError`` in Python and gives NULL in Spark. Messages never contain the value.
``docs/ad_platforms.md`` describes the table and its sources.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

__all__ = [
    "ID_TYPES",
    "KEY_FORMATS",
    "PLATFORMS",
    "Case",
    "Digest",
    "KeyFormat",
    "Rewrite",
    "UnsupportedMatchKey",
    "key_format",
    "match_key",
    "match_key_column",
    "supported_types",
    "upload_column",
]

TENCENT = "tencent_ads"
OCEAN_ENGINE = "ocean_engine"
META = "meta"
PLATFORMS: tuple[str, ...] = (TENCENT, OCEAN_ENGINE, META)

_UUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
NORMALISED_FORMS: dict[str, str] = {
    "phone": r"\+[1-9][0-9]{6,14}",
    "email": r"[^@\x00-\x20A-Z]+@[^@\x00-\x20A-Z]+",
    "device:idfa": _UUID,
    "device:oaid": rf"{_UUID}|[0-9A-F]{{16}}|[0-9A-F]{{64}}",
    "device:imei": r"[0-9]{15}",
    "device:android_id": r"[0-9A-F]{16}",
}
"""The shape of OneID's normalised value per identifier type (whole value, unanchored)."""

ID_TYPES: tuple[str, ...] = tuple(NORMALISED_FORMS)


class UnsupportedMatchKey(ValueError):
    """The platform does not take this identifier type from OneID (the row says why)."""


class Case(Enum):
    """Letter case applied to a text."""

    KEEP = "as is"
    LOWER = "lower"
    UPPER = "upper"

    def python(self, text: str) -> str:
        """Apply the case to a Python string."""
        if self is Case.LOWER:
            return text.lower()
        if self is Case.UPPER:
            return text.upper()
        return text

    def spark(self, col: Column) -> Column:
        """Apply the case to a Spark column."""
        from pyspark.sql import functions as F

        if self is Case.LOWER:
            return F.lower(col)
        if self is Case.UPPER:
            return F.upper(col)
        return col


class Digest(Enum):
    """The hash a platform applies to the rewritten value (hex digest)."""

    NONE = "none (sent as is)"
    MD5 = "MD5"
    SHA256 = "SHA-256"

    def python(self, text: str) -> str:
        """Hex digest (lower case) of the UTF-8 bytes, or the text itself for NONE."""
        if self is Digest.MD5:
            return hashlib.md5(text.encode("utf-8")).hexdigest()
        if self is Digest.SHA256:
            return hashlib.sha256(text.encode("utf-8")).hexdigest()
        return text

    def spark(self, col: Column) -> Column:
        """The same digest with Spark built-ins (both give lower-case hex)."""
        from pyspark.sql import functions as F

        if self is Digest.MD5:
            return F.md5(col)
        if self is Digest.SHA256:
            return F.sha2(col, 256)
        return col


@dataclass(frozen=True)
class Rewrite:
    """How a normalised value becomes the text a platform hashes.

    ``pattern`` must match the whole value (else the value is not accepted); its group 1 is
    kept, then ``case`` is applied. Patterns use syntax that Python ``re`` and Java regex read
    the same way.
    """

    description: str
    pattern: str
    case: Case = Case.KEEP


AS_NORMALISED = Rewrite("OneID's normalised value unchanged", r"([\s\S]+)")
LOWER_CASE = Rewrite("lower-cased", r"([\s\S]+)", Case.LOWER)
UPPER_CASE = Rewrite("upper-cased, dashes kept", r"([\s\S]+)", Case.UPPER)
E164_DIGITS = Rewrite(
    "E.164 without '+': country code and number, digits only", r"\+([1-9][0-9]{6,14})"
)
CN_MOBILE_11 = Rewrite(
    "11-digit mainland China mobile, '+86' removed (other numbers are not accepted)",
    r"\+86(1[0-9]{10})",
)


@dataclass(frozen=True)
class KeyFormat:
    """One platform's key for one OneID identifier type (``column`` None: not accepted)."""

    platform: str
    id_type: str
    column: str | None
    rewrite: Rewrite | None
    digest: Digest
    hex_case: Case
    source: str
    unsupported: str = ""

    @property
    def supported(self) -> bool:
        """Whether the platform takes this type from OneID."""
        return self.column is not None

    def key(self, text: str) -> str:
        """The key for ``text`` by this row's rule alone (no check of OneID's form)."""
        if self.rewrite is None:
            raise UnsupportedMatchKey(f"{self.platform} {self.id_type}: {self.unsupported}")
        found = re.fullmatch(self.rewrite.pattern, text)
        if found is None:
            raise ValueError(
                f"{self.platform} {self.id_type}: value not accepted; the key needs "
                f"{self.rewrite.description}"
            )
        hashed = self.digest.python(self.rewrite.case.python(found.group(1)))
        return self.hex_case.python(hashed) if self.digest is not Digest.NONE else hashed


def _key(
    platform: str, id_type: str, column: str, rewrite: Rewrite, digest: Digest, source: str
) -> KeyFormat:
    hex_case = Case.LOWER if digest is not Digest.NONE else Case.KEEP
    return KeyFormat(platform, id_type, column, rewrite, digest, hex_case, source)


def _unsupported(platform: str, id_type: str, reason: str, source: str) -> KeyFormat:
    return KeyFormat(platform, id_type, None, None, Digest.NONE, Case.KEEP, source, reason)


_TENCENT_FILE = "https://developers.e.qq.com/docs/audience_management/file"
_TENCENT_TYPES = (
    "https://developers.e.qq.com/docs/api/audiences/custom_audience_file/custom_audience_files_add"
)
_TENCENT_IDS = "https://datanexus.qq.com/doc/develop/guider/interface/user_id"
_OCEAN_DMP = (
    "Ocean Engine Marketing API, DMP 数据源文件 protobuf (package toutiao.dmp, DmpData/IdItem); "
    "reproduced in github.com/bububa/oceanengine marketing-api/model/dmp/datasource/dmp.proto "
    "and github.com/MrNullPoint/OceanEngineApi pb/toutiao_dmp_validate.py"
)
_META_CA = (
    "https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences "
    "(Hashing and Normalizing Data)"
)
_META_FORMAT = "https://www.facebook.com/business/help/2082575038703844 (madid column)"

KEY_FORMATS: tuple[KeyFormat, ...] = (
    # Tencent 客户文件人群: "HASH_MOBILE_PHONE 加密后的手机号, 加密前为11位的纯数字串, 加密后为
    # 不计大小写的32位数字字母串" -> MD5 of the 11-digit national number; hex case-insensitive.
    _key(TENCENT, "phone", "HASH_MOBILE_PHONE", CN_MOBILE_11, Digest.MD5, _TENCENT_FILE),
    # user_id_type enum (custom_audience_files/add) has no e-mail type.
    _unsupported(TENCENT, "email", "no e-mail type in user_id_type", _TENCENT_TYPES),
    # "HASH_IDFA ... 加密前需要格式转化成 ... 大写字母, 示例: 加密前 FF1999CD-7177-4937-A474-
    # 74937A102630, 加密后 2c010ed96aef2fc34983e1e7e9176b7e" (the example keeps the dashes).
    _key(TENCENT, "device:idfa", "HASH_IDFA", UPPER_CASE, Digest.MD5, _TENCENT_FILE),
    # "HASH_IMEI ... 加密前需要格式转化成14位或15位数字+小写字母串";
    # DataNexus: md5(imei.toLowerCase()).
    _key(TENCENT, "device:imei", "HASH_IMEI", LOWER_CASE, Digest.MD5, _TENCENT_FILE),
    # OAID / HASH_OAID: "保留原始值(不要转换大小写)" / "请使用 OAID 原值直接 MD5, 不要转换大小写".
    # OneID keeps OAIDs upper-cased only, so the original case is gone.
    _unsupported(
        TENCENT,
        "device:oaid",
        "OAID and HASH_OAID need the OAID in its original case; OneID stores it upper-cased",
        _TENCENT_IDS,
    ),
    _unsupported(
        TENCENT, "device:android_id", "no Android id type in user_id_type", _TENCENT_TYPES
    ),
    # Ocean Engine IdItem.DataType MOBILE_HASH_SHA256 = 6; "id ... 需要小写" (lower-case hex). The
    # doc's sample validator takes mobiles as ^1[34578]\d{9}$: the 11-digit national form.
    _key(OCEAN_ENGINE, "phone", "MOBILE_HASH_SHA256", CN_MOBILE_11, Digest.SHA256, _OCEAN_DMP),
    _unsupported(OCEAN_ENGINE, "email", "no e-mail type in IdItem.DataType", _OCEAN_DMP),
    # IdItem.DataType IDFA = 1, raw; "id ... 需要小写". (The doc's sample file has an upper-case
    # IDFA; the normative field comment says lower case.)
    _key(OCEAN_ENGINE, "device:idfa", "IDFA", LOWER_CASE, Digest.NONE, _OCEAN_DMP),
    # IdItem.DataType IMEI_MD5 = 4; OneID's IMEI is 15 digits, so letter case cannot matter.
    _key(OCEAN_ENGINE, "device:imei", "IMEI_MD5", AS_NORMALISED, Digest.MD5, _OCEAN_DMP),
    # IdItem.DataType OAID = 7, raw, lower case (sample validator: lower-case hex only). OAID_MD5
    # is not used: the case hashed before MD5 is not documented.
    _key(OCEAN_ENGINE, "device:oaid", "OAID", LOWER_CASE, Digest.NONE, _OCEAN_DMP),
    _unsupported(
        OCEAN_ENGINE, "device:android_id", "no Android id type in IdItem.DataType", _OCEAN_DMP
    ),
    # Meta EMAIL: "Hashing required. Trim leading and trailing whitespace and convert all
    # characters to lowercase" (OneID's form already), SHA-256, lower-case hex.
    _key(META, "email", "EMAIL", AS_NORMALISED, Digest.SHA256, _META_CA),
    # Meta PHONE: "Hashing required. Remove symbols, letters, and any leading zeroes. You should
    # prefix the country code if COUNTRY field is not specified."
    _key(META, "phone", "PHONE", E164_DIGITS, Digest.SHA256, _META_CA),
    # Meta MADID: "Hashing NOT required. Use all lowercase, keep hyphens." IDFA or AAID only.
    _key(META, "device:idfa", "MADID", LOWER_CASE, Digest.NONE, _META_CA),
    _unsupported(META, "device:oaid", "MADID takes IDFA or Android AAID, not OAID", _META_FORMAT),
    _unsupported(META, "device:imei", "MADID takes IDFA or Android AAID, not IMEI", _META_FORMAT),
    _unsupported(
        META, "device:android_id", "MADID takes IDFA or Android AAID, not Android id", _META_FORMAT
    ),
)

_BY_KEY: dict[tuple[str, str], KeyFormat] = {(f.platform, f.id_type): f for f in KEY_FORMATS}


def key_format(platform: str, id_type: str) -> KeyFormat:
    """The table row for (platform, id_type), supported or not; ValueError for unknown names."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown ad platform {platform!r}; expected one of {PLATFORMS}")
    if id_type not in ID_TYPES:
        raise ValueError(f"unknown identifier type {id_type!r}; expected one of {ID_TYPES}")
    return _BY_KEY[(platform, id_type)]


def _supported_format(platform: str, id_type: str) -> KeyFormat:
    fmt = key_format(platform, id_type)
    if not fmt.supported:
        raise UnsupportedMatchKey(f"{platform} does not take {id_type}: {fmt.unsupported}")
    return fmt


def supported_types(platform: str) -> tuple[str, ...]:
    """OneID identifier types the platform takes, in ``ID_TYPES`` order."""
    return tuple(t for t in ID_TYPES if key_format(platform, t).supported)


def upload_column(platform: str, id_type: str) -> str:
    """The platform's own name for the key type (upload type / schema / data type)."""
    column = _supported_format(platform, id_type).column
    assert column is not None
    return column


def match_key(platform: str, id_type: str, normalised_value: str) -> str:
    """The platform's match key for an already-normalised OneID value.

    Raises :class:`UnsupportedMatchKey` when the platform does not take the type, and
    ``ValueError`` when the value is not in OneID's normalised form or not accepted by the key
    (e.g. a non-Chinese number for a key that needs an 11-digit mainland mobile).
    """
    fmt = _supported_format(platform, id_type)
    if re.fullmatch(NORMALISED_FORMS[id_type], normalised_value) is None:
        raise ValueError(f"{platform} {id_type}: value is not in OneID's normalised form")
    return fmt.key(normalised_value)


def _java_whole(pattern: str) -> str:
    """Anchor ``pattern`` to the whole input for Java regex (``\\z``: no final-newline slack)."""
    return rf"^(?:{pattern})\z"


def match_key_column(platform: str, id_type: str, col: Column | str) -> Column:
    """:func:`match_key` as a Spark column from built-ins; NULL where the value is not accepted."""
    from pyspark.sql import functions as F

    fmt = _supported_format(platform, id_type)
    assert fmt.rewrite is not None
    value = F.col(col) if isinstance(col, str) else col
    rule = _java_whole(fmt.rewrite.pattern)
    accepted = value.rlike(_java_whole(NORMALISED_FORMS[id_type])) & value.rlike(rule)
    text = fmt.rewrite.case.spark(F.regexp_extract(value, rule, 1))
    key = fmt.digest.spark(text)
    if fmt.digest is not Digest.NONE:
        key = fmt.hex_case.spark(key)
    return F.when(accepted, key)
