"""Hostile input (issue 16): a broken file or value is quarantined with a reason, the rest of
the batch goes on, and rows read = accepted + quarantined still holds."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from oneid.errors import ConfigError
from oneid.ingest.job import ingest
from oneid.tables import read_table
from tests.support import config_for, parse_values
from tests.test_ingest import members_source

HEADER = "会员编号,手机号,金额,注册时间,性别\n"
GOOD_ROW = "M1,13812345678,10.50,2024-05-01 10:00:00,男\n"
UTC = datetime.timezone.utc


def _quarantine(spark, cfg, source: str) -> set[tuple[str, str]]:
    """(record key or file name, reason) of every quarantined row."""
    rows = read_table(spark, cfg, f"quarantine.{source}").collect()
    return {(r._record_key or r._file.rsplit("/", 1)[-1], r._reason) for r in rows}


def _counts(report) -> tuple[int, int, int]:
    return report.rows_read, report.accepted, report.quarantined


def _members(tmp_path, files: dict[str, bytes], **extra):
    folder = tmp_path / "members"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder, config_for(tmp_path, {"sources": {"members": members_source(folder, **extra)}})


def test_empty_file_and_repeated_header_are_quarantined_as_files(spark, tmp_path):
    folder, cfg = _members(
        tmp_path,
        {
            "a.csv": (HEADER + GOOD_ROW).encode(),
            "b.csv": b"",
            "c.csv": "会员编号,手机号,手机号,注册时间\nM2,1,2,2024-05-01 10:00:00\n".encode(),
        },
    )
    [report] = ingest(spark, cfg, "b1")

    assert _counts(report) == (3, 1, 2)
    assert _quarantine(spark, cfg, "members") == {
        ("b.csv", "empty_file"),
        ("c.csv", "duplicate_header:手机号"),
    }
    files = read_table(spark, cfg, "quarantine.members").where("_reason = 'empty_file'").first()
    assert files._file.endswith(str(folder / "b.csv")) and files.member_id is None
    # the next batch is not stuck on them
    (folder / "d.csv").write_text(HEADER + GOOD_ROW.replace("M1", "M3"), encoding="utf-8")
    [second] = ingest(spark, cfg, "b2")
    assert _counts(second) == (1, 1, 0)


def test_rfc4180_csv_by_default_and_backslash_escapes_on_request(spark, tmp_path):
    rfc = (
        HEADER + 'M1,13812345678,1,2024-05-01 10:00:00,"男"\n'
        'M2,"139 1234 ""5678""",2,2024-05-01 10:00:00,女\n'
        'M3,"137\n1234",3,2024-05-01 10:00:00,男\n'
    )
    _, cfg = _members(tmp_path, {"a.csv": rfc.encode()})
    [report] = ingest(spark, cfg, "b1")
    assert _counts(report) == (3, 3, 0)
    phones = read_table(spark, cfg, "bronze.members").select("member_id", "phone").collect()
    assert sorted(tuple(r) for r in phones) == [
        ("M1", "13812345678"),
        ("M2", '139 1234 "5678"'),
        ("M3", "137\n1234"),
    ]

    escaped = tmp_path / "escaped"
    escaped.mkdir()
    backslash = HEADER + 'M4,"136 \\"1\\"",4,2024-05-01 10:00:00,男\n'
    (escaped / "a.csv").write_text(backslash, encoding="utf-8")
    source = members_source(tmp_path / "members" / "a.csv", quoting="backslash")
    cfg = config_for(tmp_path / "b", {"sources": {"members": {**source, "path": str(escaped)}}})
    [report] = ingest(spark, cfg, "b1")
    assert _counts(report) == (1, 1, 0)
    assert read_table(spark, cfg, "bronze.members").first().phone == '136 "1"'


def test_bytes_invalid_in_the_declared_encoding_are_quarantined(spark, tmp_path):
    stray = "M2,13912345678,2,2024-05-01 10:00:00,女\n".encode().replace(b"139", b"\xff139")
    gbk_file = (HEADER + GOOD_ROW.replace("M1", "M9")).encode("gbk")
    events = tmp_path / "events"
    events.mkdir()
    (events / "a.jsonl").write_bytes(b'{"event_id": "E1"}\n{"event_id": "E2\xff"}\n')
    folder, _ = _members(tmp_path, {"a.csv": (HEADER + GOOD_ROW).encode() + stray})
    (folder / "b.csv").write_bytes(gbk_file)
    pipeline = {
        "sources": {
            "members": members_source(folder),
            "events": {
                "format": "json",
                "max_quarantined_share": 1.0,
                "path": str(events),
                "record_key": ["event_id"],
                "columns": {"event_id": {"field": "event_id"}},
            },
        }
    }
    cfg = config_for(tmp_path, pipeline)
    reports = {r.source: r for r in ingest(spark, cfg, "b1")}

    assert _counts(reports["members"]) == (3, 1, 2)
    assert _quarantine(spark, cfg, "members") == {("M2", "bad_encoding"), ("b.csv", "bad_encoding")}
    assert _counts(reports["events"]) == (2, 1, 1)
    assert _quarantine(spark, cfg, "events") == {("E2\ufffd", "bad_encoding")}
    for name in ("members", "events"):
        bronze = read_table(spark, cfg, f"bronze.{name}")
        assert bronze.where(F.to_json(F.struct("*")).contains("\ufffd")).count() == 0


def test_two_json_objects_on_one_line_are_counted_and_quarantined(spark, tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    one, two = json.dumps({"event_id": "E1"}), json.dumps({"event_id": "E2"})
    (events / "a.jsonl").write_text(f"{one}{two}\n{json.dumps({'event_id': 'E3'})}\n")
    source = {
        "format": "json",
        "max_quarantined_share": 1.0,
        "path": str(events),
        "record_key": ["event_id"],
        "columns": {"event_id": {"field": "event_id"}},
    }
    cfg = config_for(tmp_path, {"sources": {"events": source}})
    [report] = ingest(spark, cfg, "b1")
    assert _counts(report) == (2, 1, 1)
    [row] = read_table(spark, cfg, "quarantine.events").collect()
    assert (row._reason, row._raw) == ("json_trailing_data", one + two)


def test_timestamps_zone_names_abbreviations_and_range(spark):
    two_am = datetime.datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    values = [
        "2026-03-01 10:00:00",
        "2026-03-01T10:00:00+08:00",
        "2026-03-01 10:00:00 Asia/Shanghai",
        "2026-03-01 10:00:00 UTC",
        "2026-03-01 10:00:00 CST",
        "2026-03-01 10:00:00 IST",
        "45808",
        "12025-01-01 00:00:00",
        "1969-12-31 00:00:00",
    ]

    def at(got):
        return {v: (p.astimezone(UTC) if p else None, r) for v, (p, r) in got.items()}

    got = at(parse_values(spark, values, {"type": "timestamp"}))
    assert got == {
        "2026-03-01 10:00:00": (two_am, None),
        "2026-03-01T10:00:00+08:00": (two_am, None),
        "2026-03-01 10:00:00 Asia/Shanghai": (two_am, None),
        "2026-03-01 10:00:00 UTC": (two_am.replace(hour=10), None),
        "2026-03-01 10:00:00 CST": (None, "ambiguous_time_zone:v"),
        "2026-03-01 10:00:00 IST": (None, "ambiguous_time_zone:v"),
        "45808": (None, "out_of_range:v"),
        "12025-01-01 00:00:00": (None, "out_of_range:v"),
        "1969-12-31 00:00:00": (None, "out_of_range:v"),
    }
    fmt = {"type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss"}
    got = at(parse_values(spark, values[2:6], fmt, {"CST": "Asia/Shanghai"}))
    assert got == {
        "2026-03-01 10:00:00 Asia/Shanghai": (two_am, None),
        "2026-03-01 10:00:00 UTC": (two_am.replace(hour=10), None),
        "2026-03-01 10:00:00 CST": (two_am, None),
        "2026-03-01 10:00:00 IST": (None, "ambiguous_time_zone:v"),
    }
    bounds = {"type": "timestamp", "earliest": "1960-01-01", "latest": "2026-02-28"}
    got = at(parse_values(spark, ["1969-12-31 00:00:00", "2026-03-01 10:00:00"], bounds))
    assert got["1969-12-31 00:00:00"][1] is None
    assert got["2026-03-01 10:00:00"] == (None, "out_of_range:v")


def test_amount_range_and_precision(spark):
    got = parse_values(
        spark, ["10.50", "10.500", "0", "-5.00", "10.505", "abc"], {"type": "decimal"}
    )
    assert got == {
        "10.50": (Decimal("10.50"), None),
        "10.500": (Decimal("10.50"), None),
        "0": (Decimal("0.00"), None),
        "-5.00": (None, "out_of_range:v"),
        "10.505": (None, "too_many_decimals:v"),
        "abc": (None, "bad_decimal:v"),
    }
    refund = {"type": "decimal", "min": -100, "max": 100}
    got = parse_values(spark, ["-5.00", "100.01"], refund)
    assert got == {"-5.00": (Decimal("-5.00"), None), "100.01": (None, "out_of_range:v")}
    quantity = {"type": "integer", "min": 1, "max": 99}
    assert parse_values(spark, ["0", "3"], quantity) == {
        "0": (None, "out_of_range:v"),
        "3": (3, None),
    }


def test_amount_checks_quarantine_rows_at_ingest(spark, tmp_path):
    rows = (
        GOOD_ROW
        + GOOD_ROW.replace("M1", "M2").replace("10.50", "-1")
        + GOOD_ROW.replace("M1", "M3").replace("10.50", "10.505")
    )
    _, cfg = _members(tmp_path, {"a.csv": (HEADER + rows).encode()})
    [report] = ingest(spark, cfg, "b1")
    assert _counts(report) == (3, 1, 2)
    assert _quarantine(spark, cfg, "members") == {
        ("M2", "out_of_range:amount"),
        ("M3", "too_many_decimals:amount"),
    }


def test_missing_source_path_is_an_error_but_an_empty_folder_is_not(spark, tmp_path):
    missing = tmp_path / "nope"
    cfg = config_for(tmp_path, {"sources": {"members": members_source(missing)}})
    with pytest.raises(ConfigError, match=rf"sources\.members\.path: {missing} does not exist"):
        ingest(spark, cfg, "b1")
    glob = config_for(tmp_path, {"sources": {"members": members_source(missing / "*.csv")}})
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(spark, glob, "b1")
    missing.mkdir()
    [report] = ingest(spark, cfg, "b1")
    assert report.skipped == "no new files"
