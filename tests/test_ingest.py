"""Ingest: every row lands in bronze or quarantine with a reason; re-runs and drift are safe."""

from __future__ import annotations

import json
import os
import threading
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from oneid.errors import ConfigError, DataContractError
from oneid.ingest.batch_ids import check_batch_id
from oneid.ingest.job import ingest
from oneid.tables import read_table, table_path
from tests.support import config_for, last_write

MEMBERS_CSV = (
    "\ufeff会员编号,手机号,金额,注册时间,性别\n"
    "M1,13812345678,10.50,2024-05-01 10:00:00,男\n"
    "M2,139 1234 5678,abc,2024-05-01 10:00:00,女\n"  # bad decimal, not a silent NULL
    "M3,13712345678,1,2024-13-45 25:61:00,男\n"  # bad timestamp
    "M4,13612345678,2,2024-05-02 09:00:00\n"  # too few fields: malformed
    ",13512345678,3,2024-05-02 09:00:00,男\n"  # missing record key
    "M6,13412345678,4,2024-05-02 09:00:00,X\n"  # bad enum
    "M7,,,2024-05-03 08:00:00,未知\n"  # optional fields empty: accepted
)


def members_source(path, **extra) -> dict:
    return {
        "format": "csv",
        "max_quarantined_share": 1.0,
        "path": str(path),
        "record_key": ["member_id"],
        "timestamp": "registered_at",
        "columns": {
            "会员编号": {"field": "member_id", "required": True},
            "手机号": {"field": "phone"},
            "金额": {"field": "amount", "type": "decimal"},
            "注册时间": {
                "field": "registered_at",
                "type": "timestamp",
                "format": "yyyy-MM-dd HH:mm:ss",
                "required": True,
            },
            "性别": {"field": "gender", "type": "enum", "values": ["男", "女", "未知"]},
        },
        "identifiers": [{"field": "phone", "type": "phone"}],
        **extra,
    }


def _reasons(spark, cfg, source):
    rows = read_table(spark, cfg, f"quarantine.{source}").select("_record_key", "_reason")
    return {(r["_record_key"], r["_reason"]) for r in rows.collect()}


def test_csv_rows_are_accepted_or_quarantined_with_reasons(spark, tmp_path):
    folder = tmp_path / "members"
    folder.mkdir()
    (folder / "part-0.csv").write_text(MEMBERS_CSV, encoding="utf-8")
    cfg = config_for(tmp_path, {"sources": {"members": members_source(folder)}})

    [report] = ingest(spark, cfg, "b1")

    assert (report.rows_read, report.accepted, report.quarantined) == (7, 2, 5)
    assert _reasons(spark, cfg, "members") == {
        ("M2", "bad_decimal:amount"),
        ("M3", "bad_timestamp:registered_at"),
        ("M4", "malformed_row"),
        ("", "missing_record_key:member_id"),
        ("M6", "bad_enum:gender"),
    }
    bronze = read_table(spark, cfg, "bronze.members").orderBy("member_id").collect()
    assert [(r.member_id, r.phone, r.amount, r.gender) for r in bronze] == [
        ("M1", "13812345678", "10.50", "男"),
        ("M7", None, None, "未知"),
    ]
    assert {r._batch_id for r in bronze} == {"b1"} and all(len(r._row_hash) == 64 for r in bronze)
    raw = read_table(spark, cfg, "quarantine.members").where("_record_key = 'M4'").first()._raw
    assert raw == "M4,13612345678,2,2024-05-02 09:00:00"


def test_rerun_writes_nothing_and_new_batch_takes_only_new_files(spark, tmp_path):
    folder = tmp_path / "members"
    folder.mkdir()
    (folder / "part-0.csv").write_text(MEMBERS_CSV, encoding="utf-8")
    cfg = config_for(tmp_path, {"sources": {"members": members_source(folder)}})
    ingest(spark, cfg, "b1")
    from delta.tables import DeltaTable

    def version() -> int:
        history = DeltaTable.forPath(spark, table_path(cfg, "bronze.members")).history(1)
        return history.first().version

    before = version()
    [again] = ingest(spark, cfg, "b1")
    assert again.skipped == "already ingested" and version() == before
    assert (again.rows_read, again.accepted, again.quarantined) == (7, 2, 5)

    (folder / "part-1.csv").write_text(
        "会员编号,手机号,金额,注册时间,性别\nM9,13812345679,5,2024-06-01 10:00:00,女\n",
        encoding="utf-8",
    )
    [second] = ingest(spark, cfg, "b2")
    assert (second.rows_read, second.accepted, second.quarantined) == (1, 1, 0)
    counts = read_table(spark, cfg, "bronze.members").groupBy("_batch_id").count().collect()
    assert {r["_batch_id"]: r["count"] for r in counts} == {"b1": 2, "b2": 1}
    assert last_write(spark, cfg, "bronze.members") == "WRITE Append"  # a replay replaces
    [empty] = ingest(spark, cfg, "b3")
    assert empty.skipped == "no new files"
    with pytest.raises(ConfigError, match="b10: it sorts before the earlier batch b2 as text but "):
        ingest(spark, cfg, "b10")  # refused before it takes a file
    assert read_table(spark, cfg, "ops.ingest_runs").where("batch_id = 'b10'").isEmpty()


def test_a_taken_file_that_changed_is_named_or_taken_again_as_conf_says(spark, tmp_path, caplog):
    """An export overwritten in place keeps its name: a later batch names it (warn, the
    default) or reads it again (modified_files: reread), never skips it without a word."""
    folder = tmp_path / "members"
    folder.mkdir()
    export = folder / "members.csv"
    export.write_text(MEMBERS_CSV, encoding="utf-8")
    cfg = config_for(tmp_path, {"sources": {"members": members_source(folder)}})
    ingest(spark, cfg, "b1")
    export.write_text(
        "会员编号,手机号,金额,注册时间,性别\nM1,13812345678,99.00,2024-07-01 10:00:00,男\n",
        encoding="utf-8",
    )
    os.utime(export, (export.stat().st_atime, export.stat().st_mtime + 60))
    with caplog.at_level("WARNING", logger="oneid.ingest.job"):
        [left] = ingest(spark, cfg, "b2")
    assert (left.skipped, left.changed_files) == ("no new files", (f"file:{export}",))
    assert "1 file(s) earlier batches took changed since and are not read again" in caplog.text

    reread = config_for(
        tmp_path, {"sources": {"members": members_source(folder, modified_files="reread")}}
    )
    [taken] = ingest(spark, reread, "b3")
    assert (taken.rows_read, taken.accepted, taken.changed_files) == (1, 1, (f"file:{export}",))
    latest = read_table(spark, cfg, "bronze.members").where("_batch_id = 'b3'").first()
    assert latest["amount"] == "99.00"  # bronze keeps the text
    [again] = ingest(spark, reread, "b4")  # b3 recorded the file as it is now
    assert (again.skipped, again.changed_files) == ("no new files", ())


@pytest.mark.parametrize(
    ("batch_id", "earlier", "refused_for"),
    [
        ("2025-07-01", ["2025-06-30", "2025-06-29"], None),
        ("b010", ["b009", "b001"], None),
        ("b5", ["b3", "b4"], None),
        ("2024-05", ["2024-06"], None),  # a late month: older data, sorts before, as counted
        ("b10", ["b1", "b9"], "b9"),
        ("2025-6-30", ["2025-10-01"], "2025-10-01"),
        ("b9", ["b10"], "b10"),
        ("b 1", [], "use letters, digits"),
    ],
)
def test_a_new_batch_id_must_sort_as_it_is_counted(batch_id, earlier, refused_for):
    if refused_for is None:
        check_batch_id(batch_id, earlier)
    else:
        with pytest.raises(ConfigError, match=refused_for):
            check_batch_id(batch_id, earlier)


def test_gbk_csv_and_json_lines(spark, tmp_path):
    leads = tmp_path / "leads"
    leads.mkdir()
    (leads / "a.csv").write_bytes("线索ID,手机号,昵称\nL1,13812345678,小红\n".encode("gbk"))
    events = tmp_path / "events"
    events.mkdir()
    (events / "a.jsonl").write_text(
        json.dumps({"event_id": "E1", "ts": "2024-05-01T10:00:00+08:00", "n": 3}) + "\n"
        '{"event_id": "E2", "ts": "2024-05-01T1\n'
        "\n" + json.dumps({"event_id": "E3", "ts": "yesterday"}) + "\n",
        encoding="utf-8",
    )
    cfg = config_for(
        tmp_path,
        {
            "sources": {
                "leads": {
                    "format": "csv",
                    "max_quarantined_share": 1.0,
                    "path": str(leads),
                    "encoding": "gbk",
                    "record_key": ["lead_id"],
                    "columns": {
                        "线索ID": {"field": "lead_id"},
                        "手机号": {"field": "phone"},
                        "昵称": {"field": "nickname", "pii": True},
                    },
                },
                "events": {
                    "format": "json",
                    "max_quarantined_share": 1.0,
                    "path": str(events),
                    "record_key": ["event_id"],
                    "columns": {
                        "event_id": {"field": "event_id"},
                        "ts": {"field": "ts", "type": "timestamp"},
                    },
                },
            }
        },
    )
    reports = {r.source: r for r in ingest(spark, cfg, "b1")}
    assert read_table(spark, cfg, "bronze.leads").select("lead_id", "nickname").collect()[0] == (
        "L1",
        "小红",
    )
    assert (reports["events"].rows_read, reports["events"].accepted) == (3, 1)
    assert _reasons(spark, cfg, "events") == {
        ("", "malformed_row"),
        ("E3", "bad_timestamp:ts"),
    }
    broken = read_table(spark, cfg, "quarantine.events").where("_reason = 'malformed_row'")
    assert broken.first()._raw == '{"event_id": "E2", "ts": "2024-05-01T1'
    kept = read_table(spark, cfg, "bronze.events").first()
    assert kept._extra == {"n": "3"}  # a column conf does not know is kept, not dropped


@pytest.mark.parametrize("policy", ["keep", "quarantine", "fail"])
def test_new_column_policy(spark, tmp_path, policy):
    folder = tmp_path / "members"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "会员编号,手机号,金额,注册时间,性别,会员等级\n"
        "M1,13812345678,1,2024-05-01 10:00:00,男,金卡\n",
        encoding="utf-8",
    )
    source = members_source(folder, on_new_columns=policy)
    cfg = config_for(tmp_path, {"sources": {"members": source}})
    if policy == "fail":
        with pytest.raises(DataContractError, match=r"new column\(s\) \['会员等级'\]"):
            ingest(spark, cfg, "b1")
        return
    [report] = ingest(spark, cfg, "b1")
    if policy == "keep":
        assert report.accepted == 1
        assert read_table(spark, cfg, "bronze.members").first()._extra == {"会员等级": "金卡"}
    else:
        assert _reasons(spark, cfg, "members") == {("M1", "new_column:会员等级")}


def test_parquet_type_change_is_quarantined_not_coerced(spark, tmp_path):
    folder = tmp_path / "orders"
    folder.mkdir()
    pq.write_table(pa.table({"order_id": ["O1"], "paid_amount": ["10.00"]}), folder / "a.parquet")
    source = {
        "format": "parquet",
        "max_quarantined_share": 1.0,
        "path": str(folder),
        "record_key": ["order_id"],
        "columns": {
            "order_id": {"field": "order_id"},
            "paid_amount": {"field": "paid_amount", "type": "decimal"},
        },
    }
    cfg = config_for(tmp_path, {"sources": {"orders": source}})
    ingest(spark, cfg, "b1")
    pq.write_table(pa.table({"order_id": ["O2"], "paid_amount": [12.5]}), folder / "b.parquet")
    [report] = ingest(spark, cfg, "b2")
    assert (report.accepted, report.quarantined) == (0, 1)
    assert _reasons(spark, cfg, "orders") == {("O2", "type_changed:paid_amount")}
    amounts = read_table(spark, cfg, "bronze.orders").select(
        F.col("paid_amount").cast("decimal(18,2)")
    )
    assert [r[0] for r in amounts.collect()] == [Decimal("10.00")]


def test_two_sources_ingested_concurrently_both_land(spark, tmp_path):
    sources = {}
    for name in ("shop_a", "shop_b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.csv").write_text(MEMBERS_CSV, encoding="utf-8")
        sources[name] = members_source(folder)
    cfg = config_for(tmp_path, {"sources": sources})
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            ingest(spark, cfg, "b1", [name])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    runs = read_table(spark, cfg, "ops.ingest_runs").select("source", "accepted", "quarantined")
    assert sorted(tuple(r) for r in runs.collect()) == [("shop_a", 2, 5), ("shop_b", 2, 5)]
    for name in sources:
        assert read_table(spark, cfg, f"bronze.{name}").count() == 2


def test_the_first_run_of_several_sources_creates_the_runs_table_once(spark, tmp_path, caplog):
    """Sources ingested at once into a new warehouse would each create ``ops.ingest_runs`` and
    retry on the conflict, warning a newcomer's first ``make demo`` four times."""
    sources = {}
    for name in ("shop_a", "shop_b", "shop_c"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.csv").write_text(MEMBERS_CSV, encoding="utf-8")
        sources[name] = members_source(folder)
    cfg = config_for(tmp_path, {"sources": sources})
    with caplog.at_level("INFO", logger="oneid.tables"):
        ingest(spark, cfg, "b1")
    assert "concurrent update" not in caplog.text
    runs = read_table(spark, cfg, "ops.ingest_runs").select("source").collect()
    assert sorted(r.source for r in runs) == sorted(sources)


def test_jdbc_and_delta_sources(spark, tmp_path, monkeypatch):
    """A real JDBC database (embedded Derby, shipped with Spark) and a Delta table as sources."""
    url = "jdbc:derby:memory:oneid_ingest;create=true"
    driver = "org.apache.derby.iapi.jdbc.AutoloadedDriver"
    pos = spark.createDataFrame(
        [("R1", "13812345678", Decimal("10.50")), ("R2", "", Decimal("3.00"))],
        "RECEIPT string, PHONE string, AMOUNT decimal(10,2)",
    )
    pos.write.jdbc(url, "APP.POS", mode="overwrite", properties={"driver": driver})
    delta_path = str(tmp_path / "crm_delta")
    spark.createDataFrame([("M1", "a@b.cn")], "member_id string, email string").write.format(
        "delta"
    ).save(delta_path)
    monkeypatch.setenv("POS_DB_USER", "app")
    cfg = config_for(
        tmp_path,
        {
            "sources": {
                "pos": {
                    "format": "jdbc",
                    "table": "APP.POS",
                    "options": {"url": url, "driver": driver, "user": "env:POS_DB_USER"},
                    "record_key": ["receipt"],
                    "columns": {
                        "RECEIPT": {"field": "receipt", "required": True},
                        "PHONE": {"field": "phone"},
                        "AMOUNT": {"field": "amount", "type": "decimal"},
                    },
                },
                "crm": {
                    "format": "delta",
                    "path": delta_path,
                    "record_key": ["member_id"],
                    "columns": {
                        "member_id": {"field": "member_id"},
                        "email": {"field": "email"},
                    },
                },
            }
        },
    )
    reports = {r.source: r for r in ingest(spark, cfg, "b1")}
    assert (reports["pos"].accepted, reports["crm"].accepted) == (2, 1)
    rows = read_table(spark, cfg, "bronze.pos").orderBy("receipt").collect()
    assert [(r.receipt, r.phone, r.amount) for r in rows] == [
        ("R1", "13812345678", "10.50"),
        ("R2", "", "3.00"),
    ]
    types = read_table(spark, cfg, "ops.source_schemas").where("source = 'pos'").collect()
    assert {r.column: r.type for r in types}["AMOUNT"] == "decimal(10,2)"
    monkeypatch.delenv("POS_DB_USER")
    from oneid.errors import SecretMissingError

    with pytest.raises(SecretMissingError, match="POS_DB_USER is not set"):
        ingest(spark, cfg, "b2", ["pos"])
