"""The example brand under examples/harbor_pine, end to end: ``oneid check`` catches the
typo'd export, then its own sources (Excel CSV with US dates, orders with Unix times and USD,
JSON sign-ups with offsets) go through ingest, standardize, identity and tags."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from oneid.check import check, report_lines
from oneid.cli import main
from oneid.conf import load_config
from oneid.identity.job import resolve_identities
from oneid.ingest.job import ingest
from oneid.standardize.job import standardize
from oneid.tables import read_table
from oneid.tags.job import run_tags
from tests.support import REPO

pytestmark = pytest.mark.e2e

CONF = REPO / "examples" / "harbor_pine" / "conf"
TYPO = "sources.orders.path=./examples/harbor_pine/data/orders_typo"


def test_check_fails_on_the_typod_export_and_names_the_header(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the example's paths are relative to the repository
    # the test session as it is: the example's conf must not re-tune the shared session
    monkeypatch.setattr("oneid.session.build_session", lambda cfg, **_: spark)
    code = main(["check", "--conf-dir", str(CONF), "--set", f"warehouse={tmp_path}", "--set", TYPO])
    out = capsys.readouterr().out
    assert code == 1
    assert (
        "  ERROR sources.orders.columns.customer_id: " in out
        and "has no column 'customer_id' (did you mean 'custmer_id'?)" in out
    )
    assert out.rstrip().endswith("check: FAILED (see ERROR lines)")
    assert not (tmp_path / "bronze").exists()  # check writes nothing


def test_the_example_brand_from_check_to_tags(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config("local", CONF, [f"warehouse={tmp_path}"])
    report = check(spark, cfg)
    lines = report_lines(report)
    assert report.ok, lines
    assert "orders: 40 rows sampled from 1 file(s); would quarantine 0 (0.0%)" in lines
    assert "  created_unix -> created_at (timestamp epoch_seconds): 40 present, 40 parse" in lines
    assert "  Signup Date -> signed_up_on (date MM/dd/yyyy): 12 present, 12 parse" in lines
    assert "  identifiers: member_id 12, email 12, phone 12" in lines
    assert lines[-2:] == ["tags: ok: 4 tags", "check: ok"]

    reports = {r.source: r for r in ingest(spark, cfg, "2024-06")}
    assert {name: (r.accepted, r.quarantined) for name, r in reports.items()} == {
        "members": (12, 0),
        "orders": (40, 0),
        "web_signups": (8, 0),
    }
    standardize(spark, cfg)
    resolve_identities(spark, cfg, "r1")
    run_tags(spark, cfg, [dt.date(2024, 6, 30)])

    owners = read_table(spark, cfg, "identity.record_oneid")
    oneid = {
        f"{r.source}:{r.record_key}": r.oneid
        for r in owners.where(
            F.col("record_key").isin("HP0001", "HP0005", "S000", "S007")
        ).collect()
    }
    assert oneid["members:HP0005"] == oneid["web_signups:S000"]  # joined by the e-mail
    assert oneid["web_signups:S007"] not in {oneid["members:HP0001"], oneid["members:HP0005"]}
    value = {r.oneid: r for r in read_table(spark, cfg, "gold.tags_value").collect()}
    first = value[oneid["members:HP0001"]]
    # HP0001 ordered 5 times, ORD-1027 was refunded: 19.99 + 59.99 + 49.99 + 29.99 paid
    assert (first.orders_lifetime, str(first.spend_lifetime_usd)) == (4, "159.96")
    assert first.last_order_date == dt.date(2024, 6, 18)  # 2024-06-19 00:00 UTC in Los Angeles
    behaviour = {r.oneid: r for r in read_table(spark, cfg, "gold.tags_behaviour").collect()}
    assert behaviour[oneid["members:HP0005"]].signup_source == "instagram"
