"""End to end on the default demo: tags against independent computations, audiences, publish."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from decimal import Decimal

import pandas as pd
import phonenumbers
import pytest
from pyspark.sql import functions as F

from oneid.errors import DataContractError
from oneid.publish.job import exports_root, run_publish
from oneid.tables import read_table
from tests.support import shuffle_partitions

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def as_of(demo) -> dt.date:
    return demo.cfg.pipeline.demo.as_of[-1]


@pytest.fixture(scope="module")
def paid_orders(spark, demo, as_of) -> pd.DataFrame:
    """Paid orders with their OneID and Shanghai date, up to the as-of date, in pandas."""
    orders = read_table(spark, demo.cfg, "silver.orders").join(
        read_table(spark, demo.cfg, "identity.record_oneid"), ["source", "record_key"]
    )
    frame = orders.select(
        "oneid", "event_time", "status", "paid_amount", "refund_amount"
    ).toPandas()
    local = pd.to_datetime(frame.event_time).dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai")
    frame["day"] = local.dt.date
    frame = frame[frame.status.isin(["paid", "partially_refunded"]) & (frame.day <= as_of)]
    refund = frame.refund_amount.where(frame.refund_amount.notna(), Decimal("0.00"))
    frame["net"] = frame.paid_amount - refund
    return frame


@pytest.fixture(scope="module")
def rfm(spark, demo, as_of) -> pd.DataFrame:
    tags = read_table(spark, demo.cfg, "gold.tags_rfm").where(F.col("dt") == F.lit(as_of))
    value = read_table(spark, demo.cfg, "gold.tags_value").where(F.col("dt") == F.lit(as_of))
    both = tags.join(value.drop("dt"), "oneid")
    return both.toPandas().set_index("oneid")


def test_rfm_equals_an_independent_pandas_computation(paid_orders, rfm, as_of):
    window = paid_orders[paid_orders.day >= as_of - dt.timedelta(days=364)]
    expected = pd.DataFrame(
        {
            "recency_days": paid_orders.groupby("oneid").day.max().map(lambda d: (as_of - d).days),
            "frequency": window.groupby("oneid").size(),
            "monetary": window.groupby("oneid").net.sum(),
        }
    )
    expected["frequency"] = expected.frequency.fillna(0).astype(int)
    buyers = rfm[rfm.last_order_date.notna()]
    assert len(buyers) == len(expected) > 1000
    got = buyers.loc[expected.index]
    assert (got.recency_days.astype(int) == expected.recency_days).all()
    assert (got.frequency.astype(int) == expected.frequency).all()
    window_buyers = expected.monetary.notna()
    assert (got.monetary[window_buyers] == expected.monetary[window_buyers]).all()
    # segments cover every buyer; quintile scores are balanced up to ties
    assert buyers.rfm_segment.notna().all() and rfm[rfm.last_order_date.isna()].r_score.isna().all()
    assert set(buyers.r_score) == {1, 2, 3, 4, 5}


def test_lifetimes_summary_agrees_under_its_definitions(paid_orders, rfm, as_of):
    """lifetimes counts repeat purchase *days*; its recency is first-to-last purchase age.

    Marketing recency (days since the last purchase) is lifetimes' ``T - recency``.
    """
    from lifetimes.utils import summary_data_from_transaction_data

    tx = paid_orders.assign(day=pd.to_datetime(paid_orders.day), net=paid_orders.net.astype(float))
    summary = summary_data_from_transaction_data(
        tx, "oneid", "day", "net", observation_period_end=pd.Timestamp(as_of), freq="D"
    )
    got = rfm.loc[summary.index]
    assert (summary.frequency.astype(int) == got.order_days_lifetime.astype(int) - 1).all()
    first = pd.to_datetime(got.first_order_date)
    last = pd.to_datetime(got.last_order_date)
    assert (summary.recency.astype(int) == (last - first).dt.days).all()
    assert (summary["T"].astype(int) == (pd.Timestamp(as_of) - first).dt.days).all()
    assert ((summary["T"] - summary.recency).astype(int) == got.recency_days.astype(int)).all()


def test_tag_summary_and_segments_on_both_demo_days(spark, demo):
    summary = read_table(spark, demo.cfg, "gold.tags_summary")
    days = sorted(r.dt for r in summary.select("dt").distinct().collect())
    assert days == list(demo.cfg.pipeline.demo.as_of)
    rows = {(r.metric, r.key): r for r in summary.where(F.col("dt") == days[-1]).collect()}
    oneids = rows[("oneids", "")]["count"]
    segments = sum(r["count"] for (m, _), r in rows.items() if m == "rfm_segment")
    assert segments == oneids  # every OneID counted once, buyers or "(none)"
    assert 0.2 < rows[("repurchase_rate", "")].share < 0.9


def test_audiences_and_their_diffs_on_two_days(spark, demo):
    first, last = demo.cfg.pipeline.demo.as_of[0], demo.cfg.pipeline.demo.as_of[-1]
    stats = read_table(spark, demo.cfg, "audience.stats").where("metric = 'size'").collect()
    sizes = {(r.audience_id, r.dt): r.value for r in stats}
    assert sizes[("vip_members", last)] > 100
    members = read_table(spark, demo.cfg, "audience.membership")
    changes = read_table(spark, demo.cfg, "audience.changes")
    for audience in ("vip_members", "win_back", "douyin_leads_to_convert"):

        def ids(day, audience=audience):
            rows = members.where((F.col("audience_id") == audience) & (F.col("dt") == day))
            return {r.oneid for r in rows.select("oneid").collect()}

        day_changes = changes.where((F.col("audience_id") == audience) & (F.col("dt") == last))
        got = {c: set() for c in ("entered", "exited")}
        for row in day_changes.collect():
            got[row.change].add(row.oneid)
        # one identity run: no remaps, so the diff is the plain set difference
        assert got == {"entered": ids(last) - ids(first), "exited": ids(first) - ids(last)}
    # holdout: deterministic ~10% of win_back, never exported
    holdout = members.where("audience_id = 'win_back' AND holdout").count()
    assert 0 < holdout < sizes[("win_back", last)] * 0.25


def test_publish_rerun_writes_nothing_and_files_match_manifests(spark, demo, as_of):
    root = exports_root(demo.cfg)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    log_version = _history_length(spark, demo.cfg, "audience.publish_log")
    reports = run_publish(spark, demo.cfg, as_of, [])
    assert {r.status for r in reports} == {"unchanged"}
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert _history_length(spark, demo.cfg, "audience.publish_log") == log_version
    for manifest_path in root.glob("*/dt=*/manifest.json"):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for entry in manifest["files"]:
            data = (manifest_path.parent / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert data.count(b"\n") == entry["rows"]


def test_manifest_counts_are_the_days_changes(spark, demo):
    """Holdout rows skipped per destination and, for the marketing export, rows per audience
    and change, as counted from ``audience.changes`` here (publish counts them in one job)."""
    changes = read_table(spark, demo.cfg, "audience.changes")
    root = exports_root(demo.cfg)
    for day in demo.cfg.pipeline.demo.as_of:
        for name, destination in demo.cfg.pipeline.publish.destinations.items():
            path = root / name / f"dt={day.isoformat()}" / "manifest.json"
            counts = json.loads(path.read_text(encoding="utf-8"))["counts"]
            mine = changes.where(
                (F.col("dt") == day) & F.col("audience_id").isin(list(destination.audiences))
            )
            assert counts["holdout_skipped"] == mine.where("holdout").count(), (name, day)
            if destination.kind == "marketing_automation":
                sent = mine.where("NOT holdout").groupBy("audience_id", "change").count()
                expected = {f"{r.audience_id}:{r.change}": r["count"] for r in sent.collect()}
                assert (
                    expected and {k: v for k, v in counts.items() if k.count(":") == 1} == expected
                )


def test_republish_with_other_shuffle_partitions_is_unchanged(spark, demo, as_of):
    """Export content is canonical: another partitioning gives the same bytes and checksum."""
    root = exports_root(demo.cfg)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    with shuffle_partitions(spark, 7):
        reports = run_publish(spark, demo.cfg, as_of, [])
    assert {r.destination: r.status for r in reports} == dict.fromkeys(
        demo.cfg.pipeline.publish.destinations, "unchanged"
    )
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("destination", ["crm_push", "tencent_ads"])
def test_rows_the_driver_does_not_find_in_the_files_fail_publish(
    spark, demo, as_of, destination, monkeypatch
):
    """Executors that wrote where the driver does not look (an exports folder that is not a
    shared mount): Spark succeeds, the driver finds no part files. Both kinds of export fail,
    naming the setting, and nothing is installed or logged."""
    from oneid.publish import job

    root = exports_root(demo.cfg)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    log_version = _history_length(spark, demo.cfg, "audience.publish_log")
    monkeypatch.setattr(job, "_concatenate", lambda parts, target: target.write_bytes(b""))
    with pytest.raises(DataContractError, match=r"row\(s\) sent, 0 line\(s\).*exports_dir"):
        run_publish(spark, demo.cfg, as_of, [destination], replace=True)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    assert _history_length(spark, demo.cfg, "audience.publish_log") == log_version


def test_tencent_phone_keys_are_md5_of_national_mobiles(spark, demo):
    """Independent of OneID's normaliser: phonenumbers on the raw bronze phones, then MD5."""
    national = set()
    for source in ("crm_members", "orders", "wechat_users", "douyin_leads", "xhs_leads"):
        for row in read_table(spark, demo.cfg, f"bronze.{source}").select("phone").collect():
            number = _parse(row.phone)
            if number:
                national.add(hashlib.md5(number.encode()).hexdigest())
    files = list(exports_root(demo.cfg).glob("tencent_ads/dt=*/*/*/HASH_MOBILE_PHONE.txt"))
    keys = {line for f in files for line in f.read_text().split()}
    assert len(keys) > 100
    assert keys <= national


def test_no_raw_pii_in_gold_audience_tables_or_exports(spark, demo):
    phones = set()
    for row in read_table(spark, demo.cfg, "bronze.crm_members").select("phone").collect():
        number = _parse(row.phone)
        if number:
            phones.add(number)
    assert len(phones) > 500
    eleven = re.compile(r"1\d{10}")
    for zone in ("gold", "audience"):
        for table in (demo.root / "warehouse" / zone).iterdir():
            frame = read_table(spark, demo.cfg, f"{zone}.{table.name}")
            strings = [c for c, kind in frame.dtypes if kind == "string"]
            for row in frame.select(*strings).collect():
                for value in row:
                    assert value is None or not (set(eleven.findall(value)) & phones), value
    for path in exports_root(demo.cfg).rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not (set(eleven.findall(text)) & phones), path


def _parse(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw.translate(_FULL_WIDTH), "CN")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 86 or not phonenumbers.is_valid_number(number):
        return None
    return str(number.national_number)


_FULL_WIDTH = {0xFF10 + i: ord("0") + i for i in range(10)}


def _history_length(spark, cfg, table):
    from delta.tables import DeltaTable

    from oneid.tables import table_path

    return DeltaTable.forPath(spark, table_path(cfg, table)).history().count()


def test_published_tables_read_without_spark_as_docs_tables_md_says(spark, demo):
    """Issue 17 item 9: identity tables (deletion vectors) through deltalake's QueryBuilder,
    gold and audience tables (none) through any delta-rs reader; polars and DuckDB from Arrow."""
    import duckdb
    import polars as pl
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    from oneid.tables import table_path

    def with_query_builder(path: str) -> pa.Table:  # the snippet of docs/tables.md
        query = QueryBuilder().register("t", DeltaTable(path)).execute("SELECT * FROM t")
        return pa.table(query.read_all())

    keys = {
        "identity.oneid_map": ["node_id", "oneid"],
        "identity.record_oneid": ["source", "record_key", "oneid"],
        "identity.profiles": ["oneid", "records", "best_phone"],
        "gold.tags_value": ["oneid", "dt", "orders_lifetime"],
        "audience.membership": ["audience_id", "oneid", "dt"],
        "audience.changes": ["audience_id", "oneid", "change", "dt"],
    }

    def spark_rows(name: str) -> list[tuple]:
        return sorted(map(tuple, read_table(spark, demo.cfg, name).select(*keys[name]).collect()))

    def arrow_rows(table: pa.Table, name: str) -> list[tuple]:
        return sorted(zip(*table.select(keys[name]).to_pydict().values(), strict=True))

    for name in ("identity.oneid_map", "identity.record_oneid", "identity.profiles"):
        arrow = with_query_builder(table_path(demo.cfg, name))  # deletion vectors applied
        expected = spark_rows(name)
        assert expected and arrow_rows(arrow, name) == expected, name
        assert arrow_rows(pl.from_arrow(arrow).to_arrow(), name) == expected, name
        columns = ", ".join(keys[name])
        assert sorted(duckdb.sql(f"SELECT {columns} FROM arrow").fetchall()) == expected, name
    for name in ("gold.tags_value", "audience.membership", "audience.changes"):
        path = table_path(demo.cfg, name)
        expected = spark_rows(name)
        assert expected and arrow_rows(DeltaTable(path).to_pyarrow_table(), name) == expected
        assert arrow_rows(pl.read_delta(path).to_arrow(), name) == expected, name


def test_the_demo_ends_with_the_store_serving_its_last_day(spark, demo, as_of, monkeypatch):
    """serve-sync is the chain's last stage: a phone answers through the API what Spark finds in
    the Delta tables of that day, and syncing the day again writes nothing."""
    from fastapi.testclient import TestClient

    from oneid.conf.models import ApiKeyConf
    from oneid.explore import lookup_phone, pick_phone
    from oneid.serve.auth import new_key
    from oneid.serve.server import build_app
    from oneid.serve.settings import sqlite_dir
    from oneid.serve.sync import sync_store

    monkeypatch.delenv("ONEID_HMAC_KEY", raising=False)  # the demo key, as the demo ran
    assert any(label.startswith(f"serve-sync as_of={as_of}") for label, _ in demo.run.timings)
    key, digest = new_key()
    serve = demo.cfg.env.serve.model_copy(
        update={
            "api_keys": (ApiKeyConf(name="t", sha256=digest, scopes=("lookup", "profile:read")),)
        }
    )
    cfg = demo.cfg.model_copy(update={"env": demo.cfg.env.model_copy(update={"serve": serve})})
    phone = pick_phone(spark, cfg)
    person = lookup_phone(spark, cfg, phone, as_of)
    assert person.status == "found"
    with TestClient(build_app(cfg)) as client:
        body = {"id_type": "phone", "value": phone, "with_profile": True}
        answer = client.post("/v1/lookup", json=body, headers={"X-API-Key": key}).json()
    assert answer["oneid"] == person.oneid
    assert answer["store_version"].startswith(f"{as_of}.")
    audiences = answer["profile"]["audiences"]
    assert audiences["as_of"] == as_of.isoformat()
    assert [a["audience_id"] for a in audiences["items"]] == list(person.audiences.audience_id)

    before = {p.name: p.stat().st_mtime_ns for p in sqlite_dir(cfg).glob("v-*")}
    report = sync_store(spark, cfg, as_of)
    assert report.status == "unchanged" and report.version == answer["store_version"]
    assert {p.name: p.stat().st_mtime_ns for p in sqlite_dir(cfg).glob("v-*")} == before
