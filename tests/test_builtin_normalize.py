"""The built-in path of standardize agrees with the Python normaliser on every input, and the
HMAC key stays out of plans (oneid.standardize.builtin)."""

from __future__ import annotations

import binascii
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneid.standardize.builtin import key_pads, normalized_and_hashed
from oneid.standardize.hashing import HashKey, _normalized, keyed_hash
from oneid.standardize.normalize import DEFAULT_JUNK_VALUES, mask

pytestmark = pytest.mark.unit

KEY = HashKey(b"a-test-key-of-some-length-0123456789", 3)
LONG_KEY = HashKey(b"k" * 100, 4)  # longer than a SHA-256 block: hashed first, as HMAC says
JUNK = {**DEFAULT_JUNK_VALUES, "phone": frozenset({"+8613800138000", "+8613900000000"})}
JUNK["device"] = frozenset({"AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"})  # a base-type entry

TYPES = (
    "phone",
    "email",
    "member_id",
    "wx_openid:wx_app",
    "wx_openid:",
    "wx_unionid",
    "douyin_openid:dy",
    "wecom_external_userid",
    "device:idfa",
    "device:oaid",
    "device:android_id",
    "device:imei",
    "device:undetected",
    "no_such_type",
    "wx_unionid:x",
)
JUNK_LIKE = ("null", "NULL", " none ", "-1", "0", "#N/A", "nan", "\\n", "", "   ", "(null)")


def _phone(rng: random.Random) -> str:
    national = rng.choice(["13", "15", "17", "18", "19", "14", "16", "12", "10"]) + "".join(
        rng.choice("0123456789") for _ in range(rng.choice([9, 9, 9, 8, 10]))
    )
    if rng.random() < 0.1:
        national = rng.choice(["2161234567", "1065551234", "4008123456", "02161234567"])
    prefix = rng.choice(["", "", "", "+86", "+86 ", "86", "0086", "+1", "+852", "00", "+"])
    text = prefix + national
    if rng.random() < 0.3:
        cut = rng.randrange(1, len(text))
        text = text[:cut] + rng.choice(["-", " ", ".", "(", ")", "/", "--", "\t"]) + text[cut:]
    if rng.random() < 0.05:
        text += ".0"
    if rng.random() < 0.05:
        text = text.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})  # full-width
    if rng.random() < 0.05:
        text = rng.choice(["138abcd5678", "1.38E+10", "13812345678;13912345678", "+86 138 ext 1"])
    if rng.random() < 0.02:
        text = "+8613800138000"
    return _pad(rng, text)


def _email(rng: random.Random) -> str:
    local = "".join(rng.choice("abcXYZ019._+-!'") for _ in range(rng.randint(0, 12)))
    domain = rng.choice(
        ["qq.com", "QQ.COM", "163.com", "mail.co.uk", "xn--fiqs8s.cn", "a_b.com", "x", "中国.cn"]
    )
    text = local + rng.choice(["@", "@", "@", "", "@@"]) + domain
    if rng.random() < 0.03:
        text = "ａｂｃ@ｑｑ.com"  # full-width: NFKC makes it abc@qq.com
    return _pad(rng, text)


def _device(rng: random.Random) -> str:
    hex_digits = "0123456789abcdefABCDEF"
    shape = rng.choice([32, 32, 16, 64, 15, 14, 20, 36])
    text = "".join(rng.choice(hex_digits if shape > 15 else "0123456789") for _ in range(shape))
    if shape == 32 and rng.random() < 0.6:
        text = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    if rng.random() < 0.1:
        text = rng.choice(
            [
                "00000000-0000-0000-0000-000000000000",
                "0" * 16,
                "F" * 32,
                "9774d56d682e549c",
                "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                "000000000000000",
            ]
        )
    return _pad(rng, text)


def _account(rng: random.Random) -> str:
    text = "".join(rng.choice("abcdefXYZ0123456789_-") for _ in range(rng.choice([5, 12, 28, 300])))
    if rng.random() < 0.15:
        text = str(rng.randint(0, 99999)) + ".0" * rng.randint(1, 2)
    if rng.random() < 0.03:
        text = rng.choice(["0.0", "00.00", "ｏＸ１ａｂ", "a\u200bb", "a\x01b", "李娜"])
    return _pad(rng, text)


def _pad(rng: random.Random, text: str) -> str:
    if rng.random() < 0.1:
        text = rng.choice([" ", "  ", "\u3000", "\n", "\ufeff"]) + text
    if rng.random() < 0.1:
        text += rng.choice([" ", "\r\n", "\t"])
    return text


def _sample(n: int, seed: int) -> list[tuple[str, str | None]]:
    rng = random.Random(seed)
    makers = {"phone": _phone, "email": _email, "device": _device}
    rows = []
    for _ in range(n):
        id_type = rng.choice(TYPES)
        maker = makers.get(id_type.split(":")[0], _account)
        raw = rng.choice(JUNK_LIKE) if rng.random() < 0.05 else maker(rng)
        rows.append((id_type, None if rng.random() < 0.01 else raw))
    return rows


def _expected(key: HashKey, id_type: str, raw: str | None) -> tuple:
    value, reason = _normalized(id_type, raw, JUNK)
    if value is None:
        return None, None, reason
    return keyed_hash(key, value), mask(id_type, value), None


def _through_spark(spark, rows, key: HashKey = KEY, folder: Path | None = None):
    """Results of the standardize path; through a Parquet file when ``folder`` is given (a
    large local list would travel inside every task)."""
    if folder is None:
        frame = spark.createDataFrame(rows, "id_type string, raw_value string")
    else:
        types, raws = zip(*rows, strict=True)
        table = pa.table({"id_type": pa.array(types), "raw_value": pa.array(raws, pa.string())})
        pq.write_table(table, folder / "rows.parquet")
        frame = spark.read.parquet(str(folder / "rows.parquet"))
    out = normalized_and_hashed(spark, frame, key, JUNK)
    return out, out.select("id_type", "raw_value", "_h.*").collect()


def test_both_paths_agree_on_a_large_random_sample(spark, tmp_path):
    rows = _sample(20_000, seed=11)
    _, got = _through_spark(spark, rows, folder=tmp_path)
    assert len(got) == len(rows)
    mismatches = [
        (r.id_type, r.raw_value, tuple(r)[2:], _expected(KEY, r.id_type, r.raw_value))
        for r in got
        if tuple(r)[2:] != _expected(KEY, r.id_type, r.raw_value)
    ]
    assert not mismatches, mismatches[:10]
    reasons = {tuple(r)[4] for r in got}
    assert {None, "invalid_phone", "invalid_email", "junk_device", "junk_value"} <= reasons
    assert {"blocklisted", "unknown_identifier_type", "invalid_id", "empty"} <= reasons


def test_the_builtins_decide_the_common_inputs(spark):
    """Chinese mobiles, e-mails, IDFA / OAID and account ids stay in the JVM."""
    from oneid.standardize.builtin import with_checks

    common = [
        ("phone", "13812345678"),
        ("phone", "+86 138-1234-5678"),
        ("phone", "008613812345678.0"),
        ("email", " Zhang.Wei@QQ.com "),
        ("device:idfa", "6d92078a82464ba4ae5b76104861e7dc"),
        ("device:oaid", "00000000-0000-0000-0000-000000000000"),
        ("member_id", "M0001"),
        ("wx_openid:wx_app", "oX1abcdefghijklmnopqrstuvwxyz"),
        ("phone", "null"),
    ]
    undecided = [("phone", "021-6123-4567"), ("email", "张@qq.com"), ("device:imei", "3568...")]
    frame = spark.createDataFrame(common + undecided, "id_type string, raw_value string")
    decided = with_checks(frame, JUNK).select("_decided")
    assert [r._decided for r in decided.collect()] == [True] * len(common) + [False] * len(
        undecided
    )


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(st.sampled_from(TYPES), st.none() | st.text(max_size=40)),
        min_size=200,
        max_size=400,
    )
)
def test_both_paths_agree_on_any_text(spark, rows):
    _, got = _through_spark(spark, rows, LONG_KEY)
    for row in got:
        assert tuple(row)[2:] == _expected(LONG_KEY, row.id_type, row.raw_value), row


def test_the_key_is_in_no_plan(spark):
    out, got = _through_spark(spark, [("phone", "13812345678"), ("device:imei", "x")])
    assert got[0].value_hash == keyed_hash(KEY, "+8613812345678")
    pads = key_pads(spark, KEY).first()
    secrets = [KEY.secret.decode(), KEY.secret.hex(), bytes(pads.ipad).hex()]
    secrets += [binascii.b2a_base64(bytes(pads.opad)).decode().strip()]
    explain = out._sc._jvm.PythonSQLUtils.explainString
    plan = "".join(explain(out._jdf.queryExecution(), m) for m in ("extended", "formatted"))
    assert "oneid_key_pads" in plan
    for secret in secrets:
        assert secret.lower() not in plan.lower()
    assert all(KEY.secret.decode() not in str(v) for _, v in spark.sparkContext.getConf().getAll())
