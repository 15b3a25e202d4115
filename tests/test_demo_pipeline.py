"""End to end on generated demo data: ingest + standardise against the generator's truth."""

from __future__ import annotations

import logging
import re

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from oneid.generate import generate_demo
from oneid.ingest.job import ingest
from oneid.standardize.job import standardize
from oneid.tables import read_table
from tests.support import small_config

pytestmark = pytest.mark.e2e

PEOPLE = 1200
# generator defect -> quarantine reason prefix (the defects ingest must catch)
ROW_DEFECTS = {
    "malformed_row": "malformed_row",
    "bad_amount": "bad_decimal",
    "bad_timestamp": "bad_timestamp",
}


@pytest.fixture(scope="module")
def demo(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    manifest = generate_demo(root / "demo_data", people=PEOPLE, seed=7)
    cfg = small_config(root / "warehouse")
    # the repo's own source declarations, pointed at this run's data folder
    sources = {
        name: source.model_copy(
            update={"path": source.path.replace("./demo_data", str(root / "demo_data"))}
        )
        for name, source in cfg.pipeline.sources.items()
    }
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"sources": sources})})
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_HMAC_KEY", raising=False)  # local conf allows the demo key
        reports = {r.source: r for r in ingest(spark, cfg, "demo-1")}
        standardize(spark, cfg)
    truth = pq.read_table(root / "demo_data" / "truth" / "records.parquet").to_pandas()
    return cfg, manifest, reports, truth


def test_rows_in_equal_accepted_plus_quarantined_per_source(demo):
    _, manifest, reports, _ = demo
    assert set(reports) == set(manifest["rows"])
    for source, rows in manifest["rows"].items():
        report = reports[source]
        assert report.rows_read == rows, source
        assert report.accepted + report.quarantined == rows, source


def test_quarantine_matches_the_generators_defects(spark, demo):
    cfg, manifest, _, truth = demo
    for source in manifest["rows"]:
        expected = {
            reason: int((truth[(truth.source == source) & (truth.defect == defect)]).shape[0])
            for defect, reason in ROW_DEFECTS.items()
        }
        got = {reason: 0 for reason in ROW_DEFECTS.values()}
        for row in read_table(spark, cfg, f"quarantine.{source}").select("_reason").collect():
            got[row._reason.split(":")[0]] += 1
        assert got == expected, source
        # bad values are caught on exactly the records the generator spoiled
        bad = truth[(truth.source == source) & truth.defect.isin(["bad_amount", "bad_timestamp"])]
        keys = {
            r._record_key
            for r in read_table(spark, cfg, f"quarantine.{source}")
            .where(~F.col("_reason").startswith("malformed"))
            .collect()
        }
        assert keys == set(bad.record_key), source


def test_identifier_rejections_match_the_truth(spark, demo):
    cfg, _, _, truth = demo
    rejected = read_table(spark, cfg, "quarantine.identifiers")
    counts = {r.reason: r["count"] for r in rejected.groupBy("reason").count().collect()}
    placeholder_devices = int((truth.defect == "placeholder_device").sum())
    assert counts["junk_device"] == placeholder_devices
    assert counts["blocklisted"] >= int((truth.defect == "placeholder_phone").sum()) - 2
    assert counts["invalid_phone"] > 0


def test_no_raw_pii_in_silver_or_logs(spark, demo, caplog):
    cfg, _, _, _ = demo
    raw_phones = {
        re.sub(r"\D", "", r.phone)[-11:]
        for r in read_table(spark, cfg, "bronze.crm_members").select("phone").collect()
        if r.phone and len(re.sub(r"\D", "", r.phone)) >= 11
    }
    raw_emails = {
        r.email.strip().lower()
        for r in read_table(spark, cfg, "bronze.crm_members").select("email").collect()
        if r.email and "@" in r.email
    }
    assert len(raw_phones) > 500 and len(raw_emails) > 100
    digits = re.compile(r"\d{11}")
    for table in ("silver.identifiers", "silver.contacts", "silver.orders", "silver.events"):
        frame = read_table(spark, cfg, table)
        strings = [c for c, kind in frame.dtypes if kind == "string"]
        for row in frame.select(*strings).collect():
            for value in row:
                if value is None:
                    continue
                assert not (set(digits.findall(value)) & raw_phones), (table, value)
                assert "@" not in value or value.startswith(("*", "z***")) or "***@" in value
    with caplog.at_level(logging.INFO):
        standardize(spark, cfg)
    logged = caplog.text.lower()
    assert not any(phone in logged for phone in raw_phones)
    assert not any(email in logged for email in raw_emails)
