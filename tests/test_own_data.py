"""A brand's own files, first time right (issue 17): common time shapes parse, a typo'd column
is an error naming the closest header, a batch that would mostly be quarantined fails first."""

from __future__ import annotations

import datetime
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oneid.audiences.job import compiled_rules
from oneid.conf import load_config
from oneid.conf.tags import TagsConf
from oneid.errors import ConfigError, DataContractError
from oneid.ingest.job import ingest
from oneid.standardize.job import standardize
from oneid.tables import read_table, read_table_or_none
from oneid.tags.job import run_tags
from tests.support import CONF_DIR, config_for, parse_values

UTC = datetime.timezone.utc
JUNE_1 = datetime.datetime(2024, 6, 1, tzinfo=UTC)  # epoch 1717200000, Excel serial 45444


def _instants(got: dict) -> dict:
    return {v: (p.astimezone(UTC) if p else None, r) for v, (p, r) in got.items()}


def test_epoch_excel_and_listed_patterns_parse(spark):
    epoch = {"type": "timestamp", "format": "epoch_seconds"}
    got = _instants(
        parse_values(spark, ["1717200000", "1717200000.5", "1717200000123", "x"], epoch)
    )
    assert got == {
        "1717200000": (JUNE_1, None),
        "1717200000.5": (JUNE_1.replace(microsecond=500000), None),
        "1717200000123": (None, "bad_timestamp:v"),  # milliseconds sent as seconds
        "x": (None, "bad_timestamp:v"),
    }
    millis = {"type": "timestamp", "format": "epoch_millis"}
    got = _instants(parse_values(spark, ["1717200000123", "1717200000"], millis))
    assert got == {
        "1717200000123": (JUNE_1.replace(microsecond=123000), None),
        "1717200000": (None, "out_of_range:v"),  # seconds sent as millis: 1970-01-20
    }
    excel = {"type": "timestamp", "format": "excel_serial"}  # wall clock of the source's zone
    got = _instants(parse_values(spark, ["45444.5", "60", "2024-06-01"], excel))
    assert got == {
        "45444.5": (JUNE_1.replace(hour=4), None),  # noon in Shanghai
        "60": (None, "bad_timestamp:v"),  # Excel's 1900-02-29, a day that never was
        "2024-06-01": (None, "bad_timestamp:v"),
    }
    listed = {"type": "timestamp", "format": ["yyyy/MM/dd HH:mm", "yyyy/MM/dd", "epoch_millis"]}
    got = _instants(
        parse_values(
            spark, ["2024/06/01 08:00", "2024/06/01", "1717200000000", "06/01/2024"], listed
        )
    )
    assert got == {
        "2024/06/01 08:00": (JUNE_1, None),
        "2024/06/01": (JUNE_1 - datetime.timedelta(hours=8), None),
        "1717200000000": (JUNE_1, None),
        "06/01/2024": (None, "bad_timestamp:v"),
    }
    iso = _instants(
        parse_values(
            spark,
            [
                "2024-06-01T08:00:00+08:00",
                "2024-06-01T00:00Z",
                "2024-06-01T08:00+0800",
                "2024-06-01 08:00:00+08",
                "2024-05-31T19:00:00-05:00",
                "2024-06-01T08:00",
            ],
            {"type": "timestamp"},
        )
    )
    assert set(iso.values()) == {(JUNE_1, None)}


def test_dates_from_patterns_epochs_and_excel_serials(spark):
    day = datetime.date(2024, 6, 1)
    excel = parse_values(
        spark, ["45444", "45444.99", "abc"], {"type": "date", "format": "excel_serial"}
    )
    assert excel == {"45444": (day, None), "45444.99": (day, None), "abc": (None, "bad_date:v")}
    # 2024-05-31 20:00 UTC is already June 1 in Shanghai
    epoch = parse_values(spark, ["1717185600"], {"type": "date", "format": "epoch_seconds"})
    assert epoch == {"1717185600": (day, None)}
    both = {"type": "date", "format": ["yyyy/MM/dd", "yyyyMMdd"]}
    assert parse_values(spark, ["2024/06/01", "20240601"], both) == {
        "2024/06/01": (day, None),
        "20240601": (day, None),
    }


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"type": "timestamp", "format": "epoch_secs"}, "not a datetime pattern"),
        ({"type": "timestamp", "format": []}, "empty list of formats"),
        ({"type": "decimal", "format": "yyyy"}, "do not apply to a decimal column"),
    ],
)
def test_time_formats_are_checked_when_conf_loads(tmp_path, column, message):
    source = {
        "format": "csv",
        "path": str(tmp_path),
        "record_key": ["k"],
        "columns": {"k": {"field": "k"}, "t": {"field": "t", **column}},
    }
    with pytest.raises(ConfigError, match=message):
        config_for(tmp_path, {"sources": {"orders": source}})


def _orders(folder, header: str = "order_no,paid_at,amount_usd,phone") -> None:
    folder.mkdir(exist_ok=True)
    lines = [header] + [f"A{i},{1717200000 + i * 60},{i}.25,1381234{i:04d}" for i in range(40)]
    lines.append("A99,yesterday,1.00,13800000099")  # one really bad row: 2.4%, under 5%
    (folder / "orders-2024-06.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _orders_source(folder, time_format: str, **extra) -> dict:
    return {
        "format": "csv",
        "path": str(folder),
        "record_key": ["order_id"],
        "timestamp": "paid_at",
        "facts": "orders",
        "columns": {
            "order_no": {"field": "order_id", "required": True},
            "paid_at": {"field": "paid_at", "type": "timestamp", "format": time_format},
            "amount_usd": {"field": "amount", "type": "decimal"},
            "phone": {"field": "phone"},
        },
        "identifiers": [{"field": "phone", "type": "phone"}],
        **extra,
    }


def test_a_mostly_quarantined_batch_fails_before_writing_and_runs_once_fixed(spark, tmp_path):
    folder = tmp_path / "orders"
    _orders(folder)
    wrong = {"sources": {"orders": _orders_source(folder, "yyyy-MM-dd HH:mm:ss")}}
    cfg = config_for(tmp_path, wrong)
    with pytest.raises(DataContractError) as failure:
        ingest(spark, cfg, "b1")
    message = str(failure.value)
    assert "41 of 41 rows (100%) would be quarantined" in message
    assert "bad_timestamp:paid_at: 41 rows (orders-2024-06.csv)" in message
    assert "1717200000" not in message and "13812340000" not in message  # no values
    assert read_table_or_none(spark, cfg, "bronze.orders") is None
    assert read_table_or_none(spark, cfg, "ops.ingest_runs") is None  # the files are not taken

    cfg = config_for(tmp_path, {"sources": {"orders": _orders_source(folder, "epoch_seconds")}})
    [report] = ingest(spark, cfg, "b1")  # the same batch, after the fix
    assert (report.rows_read, report.accepted, report.quarantined) == (41, 40, 1)
    assert report.reasons == {"bad_timestamp:paid_at": 1}
    first = read_table(spark, cfg, "bronze.orders").where("order_id = 'A0'").first()
    assert first.paid_at == "1717200000"  # bronze keeps the raw text; silver parses it


def test_a_declared_column_missing_from_a_csv_names_the_closest_header(spark, tmp_path):
    folder = tmp_path / "orders"
    _orders(folder, header="order_no,paid_at,amount_usd,phone_no")
    cfg = config_for(tmp_path, {"sources": {"orders": _orders_source(folder, "epoch_seconds")}})
    with pytest.raises(ConfigError) as failure:
        ingest(spark, cfg, "b1")
    message = str(failure.value)
    assert message.startswith("sources.orders.columns.phone: ")
    assert "orders-2024-06.csv has no column 'phone' (did you mean 'phone_no'?)" in message
    assert read_table_or_none(spark, cfg, "bronze.orders") is None


def test_headers_match_declared_names_ignoring_case(spark, tmp_path):
    folder = tmp_path / "orders"
    _orders(folder, header="Order_No,PAID_AT,Amount_USD,Phone")
    cfg = config_for(tmp_path, {"sources": {"orders": _orders_source(folder, "epoch_seconds")}})
    [report] = ingest(spark, cfg, "b1")
    assert (report.accepted, report.quarantined) == (40, 1)
    row = read_table(spark, cfg, "bronze.orders").where("order_id = 'A1'").first()
    assert (row.phone, row.amount, row._extra) == ("13812340001", "1.25", {})


def test_json_key_typos_are_errors_and_absent_keys_are_not(spark, tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    lines = [
        {"event_id": f"e{i}", "user_id": f"M{i}", "event_time": "2024-06-01 10:00:00"}
        for i in range(3)
    ]
    (folder / "e.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n", encoding="utf-8")
    source = {
        "format": "json",
        "path": str(folder),
        "record_key": ["event_id"],
        "facts": "events",
        "columns": {
            "event_id": {"field": "event_id", "required": True},
            "userid": {"field": "member_id"},
            "event_time": {"field": "event_time", "type": "timestamp"},
        },
    }
    cfg = config_for(tmp_path, {"sources": {"events": source}})
    with pytest.raises(
        ConfigError, match=r"sources.events.columns.userid: .*did you mean 'user_id'"
    ):
        ingest(spark, cfg, "b1")

    source["columns"]["user_id"] = source["columns"].pop("userid")
    source["columns"]["channel"] = {"field": "channel"}  # left out of every line: NULL, no error
    cfg = config_for(tmp_path, {"sources": {"events": source}})
    [report] = ingest(spark, cfg, "b1")
    assert (report.accepted, report.quarantined) == (3, 0)
    rows = read_table(spark, cfg, "bronze.events").orderBy("event_id").collect()
    assert [(r.member_id, r.channel) for r in rows] == [("M0", None), ("M1", None), ("M2", None)]


def test_a_declared_column_missing_from_parquet_lists_its_columns(spark, tmp_path):
    folder = tmp_path / "members"
    folder.mkdir()
    pq.write_table(
        pa.table({"mid": ["M1"], "mobile_number": ["13812345678"]}), folder / "m.parquet"
    )
    source = {
        "format": "parquet",
        "path": str(folder),
        "record_key": ["member_id"],
        "columns": {"mid": {"field": "member_id"}, "cellphone": {"field": "phone"}},
    }
    cfg = config_for(tmp_path, {"sources": {"members": source}})
    with pytest.raises(
        ConfigError, match=r"no column 'cellphone' \(its columns are \['mid', 'mobile_number'\]\)"
    ):
        ingest(spark, cfg, "b1")


def _brand_conf(tmp_path, folder, tags: dict | None = None):
    """A brand's conf: its own orders source, the repo's tag registry (or ``tags``) and
    audience rules left in place, as a new user starts."""
    import shutil

    import yaml

    config_for(tmp_path, {"sources": {"orders": _orders_source(folder, "epoch_seconds")}})
    conf_dir = tmp_path / "conf"
    pipeline = yaml.safe_load((conf_dir / "pipeline.yaml").read_text(encoding="utf-8"))
    shutil.copy(CONF_DIR / "audiences.yaml", conf_dir / "audiences.yaml")
    if tags is None:
        shutil.copy(CONF_DIR / "tags.yaml", conf_dir / "tags.yaml")
        pipeline["include"] = ["tags.yaml"]
    else:
        pipeline["tags"] = tags
    pipeline["audiences"] = {"rules": "audiences.yaml"}
    (conf_dir / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    return load_config("local", conf_dir)


def test_the_demo_registry_does_not_block_ingest_and_tags_fail_first_naming_the_column(
    spark, tmp_path
):
    folder = tmp_path / "orders"
    _orders(folder)
    cfg = _brand_conf(tmp_path, folder)
    [report] = ingest(spark, cfg, "b1")  # the demo's tags and audiences are not ingest's business
    assert report.accepted == 40
    # the demo's registry derives is_paid from a status column this brand's orders lack: the
    # tags job says so before it reads anything (no identity run yet: that would come later)
    with pytest.raises(ConfigError) as failure:
        run_tags(spark, cfg, [datetime.date(2024, 6, 30)])
    assert str(failure.value).startswith("tags.derived_columns.orders.is_paid: ")
    assert "column `status` is not there" in str(failure.value)
    with pytest.raises(ConfigError, match="unknown event property 'category'"):
        compiled_rules(cfg)  # audience rules: checked by the audiences job, against events


def test_a_tag_over_a_column_no_source_provides_is_named(spark, tmp_path):
    folder = tmp_path / "orders"
    _orders(folder)
    count = {"group": "value", "type": "bigint", "description": "-"}
    tags = {
        "definitions": [
            {"name": "orders_n", **count, "aggregate": {"facts": "orders", "fn": "count"}},
            {
                "name": "spend",
                **count,
                "type": "decimal(18,2)",
                "aggregate": {"facts": "orders", "fn": "sum", "value": "paid_amount"},
            },
            {"name": "views", **count, "aggregate": {"facts": "events", "fn": "count"}},
        ]
    }
    cfg = _brand_conf(tmp_path, folder, tags)
    with pytest.raises(ConfigError) as failure:
        run_tags(spark, cfg, [datetime.date(2024, 6, 30)])
    assert str(failure.value).startswith(
        "tags.definitions spend: does not fit silver.orders: column `paid_amount` is not there; "
        "did you mean one of"
    )
    tags["definitions"][1]["aggregate"]["value"] = "amount"
    cfg = _brand_conf(tmp_path, folder, tags)
    with pytest.raises(ConfigError, match=r"tags need silver\.events: .* \(views\)"):
        run_tags(spark, cfg, [datetime.date(2024, 6, 30)])


def test_device_kind_is_detected_from_the_value_when_no_kind_is_given(spark):
    from oneid.conf.pipeline import SourceConf
    from oneid.standardize.normalize import normalize
    from oneid.standardize.records import identifier_rows

    values = {
        "r1": ("6D92078A-8246-4BA4-AE5B-76104861E7DC", None),  # iOS: upper-case UUID
        "r2": ("6d92078a-8246-4ba4-ae5b-76104861e7dc", None),  # Huawei OAID: lower-case
        "r3": ("a" * 20 + "0123456789abcdef" * 2 + "b" * 12, None),  # vivo / OPPO OAID
        "r4": ("9774d56d682e5abc", None),  # Android id
        "r5": ("35-209900-176148-1", None),  # IMEI with separators
        "r6": ("not a device", None),
        "r7": ("6D92078A-8246-4BA4-AE5B-76104861E7DC", "oaid"),  # the kind column wins
    }
    source = SourceConf(
        format="csv",
        path="unused",
        record_key=("k",),
        columns={"k": {"field": "k"}, "d": {"field": "device"}, "t": {"field": "device_type"}},
        identifiers=({"field": "device", "type": "device", "kind_field": "device_type"},),
    )
    frame = spark.createDataFrame(
        [("s", key, "b1", device, kind) for key, (device, kind) in values.items()],
        "_source string, _record_key string, _batch_id string, device string, device_type string",
    )
    rows = {r.record_key: r.id_type for r in identifier_rows(frame, source).collect()}
    assert rows == {
        "r1": "device:idfa",
        "r2": "device:oaid",
        "r3": "device:oaid",
        "r4": "device:android_id",
        "r5": "device:imei",
        "r6": "device:undetected",
        "r7": "device:oaid",
    }
    assert normalize(rows["r5"], values["r5"][0]).value == "352099001761481"
    assert normalize(rows["r2"], values["r2"][0]).value == values["r1"][0]  # same device id
    assert normalize(rows["r6"], values["r6"][0]).reason == "undetected_device"


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ({"field": "d", "type": "device"}, "needs `kind_field`"),
        ({"field": "d", "type": "device", "kind": "gaid"}, "kind 'gaid': expected one of"),
        ({"field": "d", "type": "phone", "kind": "auto"}, "apply to device identifiers only"),
    ],
)
def test_device_kinds_are_checked_when_conf_loads(tmp_path, identifier, message):
    source = {
        "format": "csv",
        "path": str(tmp_path),
        "record_key": ["k"],
        "columns": {"k": {"field": "k"}, "d": {"field": "d"}},
        "identifiers": [identifier],
    }
    with pytest.raises(ConfigError, match=message):
        config_for(tmp_path, {"sources": {"app": source}})


@pytest.mark.slow
def test_replay_reprocesses_a_batch_after_a_conf_fix_and_a_failed_replay_changes_nothing(
    spark, tmp_path
):
    from oneid.tables import COMMIT_HOOKS

    folder = tmp_path / "orders"
    folder.mkdir()
    lines = ["order_no,paid_at,amount_usd,phone"]
    lines += [f"A{i},2024-06-01 10:{i:02d}:00,1.00,1381234{i:04d}" for i in range(40)]
    lines += ["B1,2024/06/01 10:00,1.00,13800000001", "B2,2024/06/02 11:00,1.00,13800000002"]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = _orders_source(folder, "yyyy-MM-dd HH:mm:ss")
    cfg = config_for(tmp_path, {"sources": {"orders": source}})
    [first] = ingest(spark, cfg, "b1")  # 2 of 42 quarantined: 4.8%, under the 5% limit
    assert (first.accepted, first.quarantined) == (40, 2)

    def counts():
        runs = read_table(spark, cfg, "ops.ingest_runs").orderBy("finished_at").collect()
        bronze = read_table(spark, cfg, "bronze.orders").count()
        return [(r.accepted, r.quarantined) for r in runs], bronze

    def keys(table: str) -> set[str]:
        return {r.order_id for r in read_table(spark, cfg, table).select("order_id").collect()}

    good = {f"A{i}" for i in range(40)}

    with pytest.raises(ConfigError, match="never ingested, nothing to replay"):
        ingest(spark, cfg, "b9", replay=True)

    source["columns"]["paid_at"]["format"] = ["yyyy-MM-dd HH:mm:ss", "yyyy/MM/dd HH:mm"]
    cfg = config_for(tmp_path, {"sources": {"orders": source}})

    def fail_after_the_run_row(table: str) -> None:
        if table == "ops.ingest_runs":
            raise RuntimeError("killed after recording the replay")

    COMMIT_HOOKS.append(fail_after_the_run_row)
    try:
        with pytest.raises(RuntimeError):
            ingest(spark, cfg, "b1", replay=True)
    finally:
        COMMIT_HOOKS.remove(fail_after_the_run_row)
    assert counts() == ([(40, 2)], 40)  # rolled back: the batch as it was, its run row kept
    assert (keys("bronze.orders"), keys("quarantine.orders")) == (good, {"B1", "B2"})

    [again] = ingest(spark, cfg, "b1", replay=True)
    assert (again.rows_read, again.accepted, again.quarantined) == (42, 42, 0)
    assert counts() == ([(40, 2), (42, 0)], 42)
    assert (keys("bronze.orders"), keys("quarantine.orders")) == (good | {"B1", "B2"}, set())
    [skipped] = ingest(spark, cfg, "b1")  # the latest run of the batch counts
    assert (skipped.skipped, skipped.accepted, skipped.quarantined) == ("already ingested", 42, 0)


def test_amounts_are_converted_by_the_rate_of_their_day_or_the_run_fails(spark, tmp_path):
    from decimal import Decimal

    from oneid.conf.tags import CurrencyConf
    from oneid.tags.currency import load_rates, require_rates
    from oneid.tags.facts import attribute_facts

    rates_csv = tmp_path / "rates.csv"
    rates_csv.write_text(
        "date,currency,rate\n2024-06-01,USD,7.10\n2024-06-03,USD,7.20\n2024-06-02,EUR,7.80\n",
        encoding="utf-8",
    )
    registry = TagsConf(currency=CurrencyConf(reporting="CNY", rates=str(rates_csv)))
    rates = load_rates(spark, registry.currency, datetime.date(2024, 6, 30))
    facts = spark.createDataFrame(
        [
            ("o", "1", datetime.datetime(2024, 6, 1, 4), Decimal("10.00"), "USD"),  # 7.10
            ("o", "2", datetime.datetime(2024, 6, 2, 4), Decimal("10.00"), "USD"),  # still 7.10
            ("o", "3", datetime.datetime(2024, 6, 3, 4), Decimal("10.00"), "USD"),  # 7.20
            ("o", "4", datetime.datetime(2024, 6, 3, 4), Decimal("10.00"), "CNY"),  # as it is
            ("o", "5", datetime.datetime(2024, 6, 1, 4), Decimal("10.00"), "EUR"),  # before EUR
        ],
        "source string, record_key string, event_time timestamp, paid decimal(18,2), "
        "currency string",
    )
    owners = spark.createDataFrame([], "source string, record_key string, oneid bigint")
    frame = attribute_facts(facts, owners, registry, "orders", datetime.date(2024, 6, 30), rates)
    got = {r.record_key: (r.paid, r._no_rate) for r in frame.collect()}
    assert got == {
        "1": (Decimal("71.00"), False),
        "2": (Decimal("71.00"), False),
        "3": (Decimal("72.00"), False),
        "4": (Decimal("10.00"), False),
        "5": (None, True),
    }
    with pytest.raises(DataContractError, match=r"silver\.orders: .* EUR: 1 from 2024-06-01"):
        require_rates(frame, "orders", registry.currency)
    unconverted = attribute_facts(facts, owners, TagsConf(), "orders", datetime.date(2024, 6, 30))
    with pytest.raises(
        DataContractError, match=r"rates is not set\): EUR: 1 from 2024-06-01, USD: 3 from"
    ):
        require_rates(unconverted, "orders", TagsConf().currency)


def test_currencies_are_declared_and_checked_before_tags_run(spark, tmp_path):
    tag = {"name": "spend", "group": "value", "type": "decimal(18,2)", "description": "-"}
    spend = {**tag, "unit": "CNY", "aggregate": {"facts": "orders", "fn": "sum", "value": "amount"}}
    with pytest.raises(ValueError, match=r"\['spend \(CNY\)'\] count money in another currency"):
        TagsConf(currency={"reporting": "USD"}, definitions=[spend])
    folder = tmp_path / "orders"
    _orders(folder)
    source = _orders_source(folder, "epoch_seconds", currency="usd")
    with pytest.raises(ConfigError, match="currency 'usd': an ISO 4217 code"):
        config_for(tmp_path, {"sources": {"orders": source}})
    source["currency"] = "USD"  # the file's amounts are dollars; the registry counts yuan
    cfg = config_for(tmp_path, {"sources": {"orders": source}, "tags": {"definitions": [spend]}})
    with pytest.raises(ConfigError, match=r"the amounts of orders \(USD\) are not: set tags"):
        run_tags(spark, cfg, [datetime.date(2024, 6, 30)])


def test_a_currency_column_that_is_not_a_code_is_quarantined(spark, tmp_path):
    folder = tmp_path / "orders"
    folder.mkdir()
    lines = ["order_no,paid_at,amount,cur,mid"]
    lines += [f"A{i},1717200000,1.00,usd,M{i}" for i in range(40)]
    lines += ["B1,1717200000,1.00,US$,M1", "B2,1717200000,1.00,,M2"]  # empty: the default
    (folder / "o.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = _orders_source(folder, "epoch_seconds", currency="CNY", currency_field="currency")
    source["columns"] = {
        "order_no": {"field": "order_id"},
        "paid_at": {"field": "paid_at", "type": "timestamp", "format": "epoch_seconds"},
        "amount": {"field": "amount", "type": "decimal"},
        "cur": {"field": "currency"},
        "mid": {"field": "member_id"},
    }
    source["identifiers"] = [{"field": "member_id", "type": "member_id"}]
    cfg = config_for(tmp_path, {"sources": {"orders": source}})
    [report] = ingest(spark, cfg, "b1")
    assert report.reasons == {"bad_currency:currency": 1}
    standardize(spark, cfg)
    table = read_table(spark, cfg, "silver.orders")
    silver = {r.record_key: r.currency for r in table.collect()}
    assert (silver["A0"], silver["B2"], len(silver)) == ("USD", "CNY", 41)
    # the schema the tags check builds from conf is the one standardize writes
    declared = spark.createDataFrame([], cfg.pipeline.fact_schema("orders")).schema
    assert sorted(map(str, table.schema.fields)) == sorted(map(str, declared.fields))
