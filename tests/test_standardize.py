"""Standardise: normalised, keyed-hashed identifiers; typed facts; no raw PII past bronze."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest
from pyspark.sql import functions as F

from oneid.identity.job import resolve_identities
from oneid.ingest.job import ingest
from oneid.standardize import hashing
from oneid.standardize.hashing import hash_identifier, load_key, normalize_and_hash
from oneid.standardize.job import standardize
from oneid.standardize.records import junk_values
from oneid.tables import read_table, table_path
from tests.support import config_for, last_write

KEY = "test-key-0123456789-abcdef"
PHONE = "+8613812345678"


def _expected_hash(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _crm_source(folder) -> dict:
    """A CRM export: member id, phone, e-mail, name (PII, never in silver), joined time."""
    return {
        "format": "csv",
        "max_quarantined_share": 1.0,
        "path": str(folder),
        "record_key": ["member_id"],
        "timestamp": "joined",
        "columns": {
            "member_id": {"field": "member_id", "required": True},
            "phone": {"field": "phone"},
            "email": {"field": "email"},
            "name": {"field": "name", "pii": True},
            "joined": {"field": "joined", "type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss"},
        },
        "identifiers": [
            {"field": "member_id", "type": "member_id"},
            {"field": "phone", "type": "phone"},
            {"field": "email", "type": "email"},
        ],
    }


@pytest.fixture(scope="module")
def standardized(spark, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("standardize")
    crm = tmp_path / "crm"
    crm.mkdir()
    (crm / "a.csv").write_text(
        "member_id,phone,email,name,joined\n"
        "M1,+86 138-1234-5678, Zhang.Wei@QQ.com ,张伟,2024-05-01 10:00:00\n"
        "M2,13800138000,bad-email,李娜,2024-05-01 11:00:00\n"
        "M3,12345,,王芳,2024-05-02 09:00:00\n",
        encoding="utf-8",
    )
    (crm / "b.csv").write_text(  # M1 again: an exact duplicate row
        "member_id,phone,email,name,joined\n"
        "M1,+86 138-1234-5678, Zhang.Wei@QQ.com ,张伟,2024-05-01 10:00:00\n",
        encoding="utf-8",
    )
    wechat = tmp_path / "wechat"
    wechat.mkdir()
    (wechat / "a.csv").write_text(
        "appid,openid,phone\nwx_a,oX1,１３８１２３４５６７８\nwx_b,oX1,\n", encoding="utf-8"
    )
    pipeline = {
        "sources": {
            "crm": _crm_source(crm),
            "wechat": {
                "format": "csv",
                "max_quarantined_share": 1.0,
                "path": str(wechat),
                "record_key": ["appid", "openid"],
                "columns": {
                    "appid": {"field": "appid"},
                    "openid": {"field": "openid"},
                    "phone": {"field": "phone"},
                },
                "identifiers": [
                    {"field": "openid", "type": "wx_openid", "scope_field": "appid"},
                    {"field": "phone", "type": "phone"},
                ],
            },
        },
        "standardize": {"junk_values": {"email": ["test@example.com"]}},
    }
    cfg = config_for(tmp_path, pipeline)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONEID_HMAC_KEY", KEY)
        ingest(spark, cfg, "b1")
        report = standardize(spark, cfg)
        yield cfg, report


def test_identifiers_are_normalised_hashed_and_masked(spark, standardized):
    cfg, _ = standardized
    rows = read_table(spark, cfg, "silver.identifiers").select(
        "source", "record_key", "id_type", "value_hash", "masked", "key_version"
    )
    got = {(r.source, r.record_key, r.id_type): (r.value_hash, r.masked) for r in rows.collect()}
    assert got == {
        ("crm", "M1", "member_id"): (
            _expected_hash("M1"),
            "***",
        ),
        ("crm", "M1", "phone"): (_expected_hash(PHONE), "138****5678"),
        ("crm", "M1", "email"): (_expected_hash("zhang.wei@qq.com"), "z***@qq.com"),
        ("crm", "M2", "member_id"): (_expected_hash("M2"), "***"),
        ("crm", "M3", "member_id"): (_expected_hash("M3"), "***"),
        ("wechat", "wx_a:oX1", "wx_openid:wx_a"): (
            _expected_hash("oX1"),
            "***",
        ),
        ("wechat", "wx_a:oX1", "phone"): (_expected_hash(PHONE), "138****5678"),
        ("wechat", "wx_b:oX1", "wx_openid:wx_b"): (
            _expected_hash("oX1"),
            "***",
        ),
    }
    assert {r.key_version for r in rows.collect()} == {1}


def test_rejected_identifiers_are_quarantined_with_reasons(spark, standardized):
    cfg, report = standardized
    rejected = read_table(spark, cfg, "quarantine.identifiers").select(
        "record_key", "id_type", "raw_value", "reason"
    )
    assert {tuple(r) for r in rejected.collect()} == {
        ("M2", "phone", "13800138000", "blocklisted"),
        ("M2", "email", "bad-email", "invalid_email"),
        ("M3", "phone", "12345", "invalid_phone"),
    }
    assert report.identifiers_by_reason == {
        "kept": 8,
        "blocklisted": 1,
        "invalid_email": 1,
        "invalid_phone": 1,
    }


def test_facts_are_typed_deduplicated_and_free_of_pii(spark, standardized):
    cfg, _ = standardized
    contacts = read_table(spark, cfg, "silver.contacts")
    assert "name" not in contacts.columns and "phone" not in contacts.columns
    crm = contacts.where("source = 'crm'").orderBy("record_key").select("record_key", "event_time")
    assert [(r.record_key, r.event_time.isoformat()) for r in crm.collect()] == [
        ("M1", "2024-05-01T02:00:00"),  # 10:00 Asia/Shanghai = 02:00 UTC
        ("M2", "2024-05-01T03:00:00"),
        ("M3", "2024-05-02T01:00:00"),
    ]


def test_no_raw_pii_in_silver_tables_or_their_delta_stats(spark, standardized):
    cfg, _ = standardized
    raw_values = ["13812345678", "138-1234-5678", "zhang.wei", "Zhang.Wei", "张伟", "李娜", "王芳"]
    from pathlib import Path

    for table in ("silver.identifiers", "silver.contacts"):
        frame = read_table(spark, cfg, table)
        text = " ".join(
            str(v) for row in frame.collect() for v in row.asDict().values() if v is not None
        )
        log_text = " ".join(
            p.read_text(encoding="utf-8")
            for p in Path(table_path(cfg, table), "_delta_log").glob("*.json")
        )
        for raw in raw_values:
            assert raw not in text, (table, raw)
            assert raw not in log_text, (table, raw)


def test_one_value_in_two_fields_of_a_record_is_one_row_strong_if_either_field_is(
    spark, tmp_path, monkeypatch
):
    """A record's identifier is one silver row, however many fields and raw forms hold it; it
    is strong when any field holding it is strong, and keeps the record's batch."""
    monkeypatch.setenv("ONEID_HMAC_KEY", KEY)
    folder = tmp_path / "leads"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "lead,phone,backup_phone\n"
        "L1,+86 138-1234-5678,13812345678\n"  # the same phone, strong and weak
        "L2,,13812345678\n",  # only in the weak field
        encoding="utf-8",
    )
    source = {
        "format": "csv",
        "path": str(folder),
        "record_key": ["lead"],
        "columns": {name: {"field": name} for name in ("lead", "phone", "backup_phone")},
        "identifiers": [
            {"field": "phone", "type": "phone", "strength": "strong"},
            {"field": "backup_phone", "type": "phone", "strength": "weak"},
        ],
    }
    cfg = config_for(tmp_path, {"sources": {"leads": source}})
    ingest(spark, cfg, "b1")
    standardize(spark, cfg)
    rows = read_table(spark, cfg, "silver.identifiers").collect()
    got = sorted((r.record_key, r.value_hash, r.masked, r.strength, r.batch_id) for r in rows)
    phone = (_expected_hash(PHONE), "138****5678")
    assert got == [("L1", *phone, "strong", "b1"), ("L2", *phone, "weak", "b1")]


def test_hmac_key_is_not_in_the_plan_or_conf(spark, cfg, monkeypatch):
    monkeypatch.setenv("ONEID_HMAC_KEY", KEY)
    udf = normalize_and_hash(load_key(cfg.env.secrets), junk_values(cfg))
    frame = spark.createDataFrame([("phone", "13812345678")], "id_type string, raw string")
    hashed = frame.select(udf(F.col("id_type"), F.col("raw")).alias("h"))
    plan = hashed._jdf.queryExecution().toString()
    assert KEY not in plan and "oneid_normalize_and_hash" in plan
    assert all(KEY not in str(v) for _, v in spark.sparkContext.getConf().getAll())
    assert hashed.first().h.value_hash == _expected_hash(PHONE)
    assert KEY not in repr(load_key(cfg.env.secrets))


def test_the_udf_remembers_results_without_changing_them(spark, cfg, monkeypatch):
    """Each (type, raw value) gets the result of hash_identifier, however often it recurs, in
    Spark and in process (where a small limit makes the memo empty itself mid-batch)."""
    monkeypatch.setenv("ONEID_HMAC_KEY", KEY)
    key, junk = load_key(cfg.env.secrets), junk_values(cfg)
    values = [
        ("phone", "13812345678"),
        ("phone", "+86 138 1234 5678"),
        ("email", " A@Example.COM "),
        ("device:imei", "000000000000000"),
        ("phone", None),
        ("member_id", "M1"),
        ("no_such_type", "x"),
    ] * 40
    expected = [hash_identifier(key, junk, t, r) for t, r in values]
    udf = normalize_and_hash(key, junk)
    frame = spark.createDataFrame(values, "id_type string, raw string").repartition(3)
    rows = frame.select("id_type", "raw", udf(F.col("id_type"), F.col("raw")).alias("h"))
    got = {(r.id_type, r.raw): tuple(r.h) for r in rows.collect()}
    assert got == dict(zip(values, expected, strict=True))
    monkeypatch.setattr(hashing, "MEMO_LIMIT", 3)
    types, raws = (pd.Series(column) for column in zip(*values, strict=True))
    in_process = udf.func(types, raws)
    assert [tuple(row) for row in in_process.itertuples(index=False)] == expected
    assert all(len(memo) <= 3 for memo in hashing._MEMO.values())


def test_missing_key_outside_demo_is_a_clear_error(cfg, monkeypatch):
    from oneid.conf.models import SecretsConf
    from oneid.errors import SecretMissingError

    monkeypatch.delenv("ONEID_HMAC_KEY", raising=False)
    with pytest.raises(SecretMissingError, match=r"ONEID_HMAC_KEY .* is not set"):
        load_key(SecretsConf(allow_demo_key=False))


def test_rerun_gives_identical_rows(spark, standardized, monkeypatch):
    cfg, _ = standardized
    monkeypatch.setenv("ONEID_HMAC_KEY", KEY)
    before = sorted(tuple(r) for r in read_table(spark, cfg, "silver.identifiers").collect())
    standardize(spark, cfg)
    after = sorted(tuple(r) for r in read_table(spark, cfg, "silver.identifiers").collect())
    assert before == after


STANDARDIZED = (
    "silver.identifiers",
    "quarantine.identifiers",
    "ops.standardize_stats",
    "silver.contacts",
)


IDENTITY_PUBLISHED = ("identity.oneid_map", "identity.record_oneid", "identity.profiles")


def _snapshot(spark, cfg, tables: tuple[str, ...] = STANDARDIZED) -> dict[str, list[tuple]]:
    return {
        table: sorted(tuple(r) for r in read_table(spark, cfg, table).collect()) for table in tables
    }


def _crm_config(tmp_path, junk: list[str]):
    crm = tmp_path / "crm"
    crm.mkdir(exist_ok=True)
    pipeline = {
        "sources": {"crm": _crm_source(crm)},
        "standardize": {"junk_values": {"email": junk}},
        "identity": {"incremental_min_identifiers": 0},  # incremental on a tiny graph
    }
    return crm, config_for(tmp_path, pipeline)


@pytest.mark.slow
def test_a_run_redoes_only_what_changed_and_equals_a_full_run(spark, tmp_path, monkeypatch):
    """A new batch (its rows alone), a replayed batch (rows replaced and removed: the changed
    records read again from all of bronze), no change, a conf change: each incremental run
    leaves the tables a --full run leaves."""
    monkeypatch.setenv("ONEID_HMAC_KEY", KEY)
    header = "member_id,phone,email,name,joined\n"
    crm, cfg = _crm_config(tmp_path, ["test@example.com"])
    (crm / "a.csv").write_text(
        header + "M1,13812345678,a@qq.com,A,2024-05-01 10:00:00\n"
        "M2,12345,bad,B,2024-05-01 11:00:00\n"
        "M3,13912345678,,C,2024-05-02 09:00:00\n",
        encoding="utf-8",
    )
    ingest(spark, cfg, "b1")
    assert standardize(spark, cfg).mode == "full: first run"
    resolve_identities(spark, cfg, "r1")

    def same_as_full(
        mode: str, identity_run: str | None = None, written: str = "MERGE", changed: int = 2
    ) -> None:
        report = standardize(spark, cfg)
        assert report.mode == mode
        assert last_write(spark, cfg, "silver.identifiers") == written
        # the last batch id (from the change feed in an incremental run) is bronze's largest
        state = read_table(spark, cfg, "ops.standardize_state").collect()
        batches = read_table(spark, cfg, "bronze.crm").agg(F.max("_batch_id")).first()[0]
        assert [r.max_batch_id for r in state] == [batches]
        incremental = _snapshot(spark, cfg)
        if identity_run:  # identity finds the changed records in silver's change feed
            run = resolve_identities(spark, cfg, identity_run)
            # appends only: the feed's rows are the records' rows (neither table is read)
            feed = "change feed (appends)" if written == "WRITE Append" else "change feed"
            assert (run.full, run.stats["changes_from"]) == (False, feed)
            assert run.stats["changed_records"] == changed
            # new records only: their incidence rows are appended too
            assert last_write(spark, cfg, "identity.incidence") == written
            resolved = _snapshot(spark, cfg, IDENTITY_PUBLISHED)
        full = standardize(spark, cfg, full=True)
        assert full.mode == "full: --full"
        assert _snapshot(spark, cfg) == incremental
        assert full.tables == report.tables and full.identifiers_by_reason == (
            report.identifiers_by_reason
        )
        if identity_run:  # on the silver --full rewrote
            resolve_identities(spark, cfg, f"{identity_run}-full", full=True)
            assert _snapshot(spark, cfg, IDENTITY_PUBLISHED) == resolved

    # a new batch: M2 fixed, M4 new (the daily case: the new rows alone)
    (crm / "b.csv").write_text(
        header + "M2,13712345678,b@163.com,B,2024-05-03 10:00:00\n"
        "M4,13612345678,test@example.com,D,2024-05-03 11:00:00\n",
        encoding="utf-8",
    )
    ingest(spark, cfg, "b2")
    same_as_full("1 source(s) changed: changes since the last run", identity_run="r2")
    silver = read_table(spark, cfg, "silver.identifiers")
    m2_phones = silver.where("record_key = 'M2' AND id_type = 'phone'").collect()
    assert [row.batch_id for row in m2_phones] == ["b2"]  # b1 had an invalid one: quarantined
    assert standardize(spark, cfg).mode == "nothing changed"

    # a batch of new records only (the daily case): their rows are appended, silver is not read
    (crm / "c.csv").write_text(
        header + "M5,13512345678,e@qq.com,E,2024-05-04 10:00:00\n", encoding="utf-8"
    )
    ingest(spark, cfg, "b3")
    same_as_full(
        "1 source(s) changed: changes since the last run", "r4", written="WRITE Append", changed=1
    )

    # batch b1 replayed after its file changed: M3 gone, M1's email changed (deletes in the feed)
    (crm / "a.csv").write_text(
        header + "M1,13812345678,new@qq.com,A,2024-05-01 10:00:00\n", encoding="utf-8"
    )
    ingest(spark, cfg, "b1", replay=True)
    same_as_full("1 source(s) changed: changes since the last run")
    assert read_table(spark, cfg, "silver.contacts").where("record_key = 'M3'").count() == 0

    # a conf change redoes everything
    _, changed = _crm_config(tmp_path, ["m4@qq.com"])
    assert standardize(spark, changed).mode.startswith("full: crm: conf, key or normaliser changed")
