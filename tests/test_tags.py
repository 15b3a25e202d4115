"""Tags on small hand-written cases: exact values, point in time, registry, idempotent writes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from oneid.conf.tags import TagConf, TagsConf
from oneid.delta_log import latest_version
from oneid.errors import ConfigError
from oneid.tables import overwrite, read_table, table_path
from oneid.tags import job as tags_job
from oneid.tags.compute import compute_tags
from oneid.tags.facts import attribute_facts
from oneid.tags.job import date_range, run_tags, tag_tables
from tests.support import CONF_DIR, config_for, last_write, small_config

AS_OF = dt.date(2025, 6, 30)
ORDERS = "source string, record_key string, event_time timestamp, paid_amount decimal(18,2), refund_amount decimal(18,2), status string, categories string, channel string"  # noqa: E501
EVENTS = "source string, record_key string, event_time timestamp, event string"
CONTACTS = "source string, record_key string, event_time timestamp, register_channel string"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def d(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture(scope="module")
def registry() -> TagsConf:
    return small_config(CONF_DIR / "unused").pipeline.tags


@pytest.fixture(scope="module")
def silver(spark):
    """Facts of OneIDs 1-4; times are UTC (Asia/Shanghai is UTC+8)."""
    orders = spark.createDataFrame(
        [
            # OneID 1: three paid orders to date, one after the as-of date, one cancelled
            ("orders", "o1", utc("2024-01-01T02:00:00"), d("300.00"), None, "paid", "护肤", "天猫"),
            (
                "orders",
                "o2",
                utc("2025-06-01T02:00:00"),
                d("100.00"),
                None,
                "paid",
                "护肤|彩妆",
                "门店",
            ),
            (
                "orders",
                "o3",
                utc("2025-06-20T02:00:00"),
                d("200.00"),
                d("50.00"),
                "partially_refunded",
                "彩妆",
                "门店",
            ),
            # 2025-06-30 23:59:59 in Shanghai: counts for as-of 06-30
            ("orders", "o4", utc("2025-06-30T15:59:59"), d("80.00"), None, "paid", "香水", "天猫"),
            # 2025-07-01 00:00:00 in Shanghai: after the as-of date, never counts
            ("orders", "o5", utc("2025-06-30T16:00:00"), d("999.00"), None, "paid", "香水", "天猫"),
            (
                "orders",
                "o6",
                utc("2025-06-10T02:00:00"),
                d("50.00"),
                None,
                "cancelled",
                "个护",
                "京东",
            ),
            # OneID 2: one order, refunded in full
            (
                "orders",
                "o7",
                utc("2025-05-01T02:00:00"),
                d("500.00"),
                d("500.00"),
                "refunded",
                "彩妆",
                "京东",
            ),
            # a record without a OneID
            ("orders", "o8", utc("2025-06-01T02:00:00"), d("10.00"), None, "paid", "个护", "京东"),
        ],
        ORDERS,
    )
    events = spark.createDataFrame(
        [
            ("app_events", "e1", utc("2025-06-23T01:00:00"), "view_item"),  # 06-23: outside 7d
            ("app_events", "e2", utc("2025-06-24T01:00:00"), "view_item"),  # 06-24: first of 7d
            ("app_events", "e3", utc("2025-06-24T03:00:00"), "add_cart"),
            ("app_events", "e4", utc("2025-06-29T20:00:00"), "add_cart"),  # 06-30 04:00 local
            ("app_events", "e5", utc("2025-06-30T17:00:00"), "purchase"),  # 07-01 local
        ],
        EVENTS,
    )
    contacts = spark.createDataFrame(
        [
            ("xhs_leads", "x1", utc("2025-03-01T00:00:00"), None),
            ("douyin_leads", "y1", utc("2025-02-01T00:00:00"), None),
            ("crm_members", "m1", utc("2025-04-01T00:00:00"), "门店"),
            ("douyin_leads", "y2", utc("2025-07-02T00:00:00"), None),  # after the as-of date
        ],
        CONTACTS,
    )
    owners = [(f"o{i}", 1) for i in range(1, 7)] + [("o7", 2)]
    owners += [(f"e{i}", 3) for i in range(1, 6)] + [("x1", 3), ("y1", 3), ("m1", 2), ("y2", 4)]
    record_oneid = spark.createDataFrame(
        [("orders" if k[0] == "o" else _source(k), k, oneid) for k, oneid in owners],
        "source string, record_key string, oneid long",
    )
    oneids = spark.createDataFrame([(i,) for i in (1, 2, 3, 4)], "oneid long")
    return {"orders": orders, "events": events, "contacts": contacts}, record_oneid, oneids


def _source(key: str) -> str:
    return {"e": "app_events", "x": "xhs_leads", "y": "douyin_leads", "m": "crm_members"}[key[0]]


def tags_as_of(silver, registry, as_of=AS_OF):
    facts, record_oneid, oneids = silver
    attributed = {
        name: attribute_facts(frame, record_oneid, registry, name, as_of)
        for name, frame in facts.items()
    }
    rows = compute_tags(oneids, attributed, registry, as_of).collect()
    return {row["oneid"]: row.asDict() for row in rows}


@pytest.fixture(scope="module")
def today(silver, registry):
    """Tags of every OneID as of AS_OF (computed once for the module)."""
    return tags_as_of(silver, registry)


def test_value_and_purchase_tags_exact(today):
    tags = today
    one = tags[1]
    assert one["first_order_date"] == dt.date(2024, 1, 1)
    assert one["last_order_date"] == dt.date(2025, 6, 30)  # o4 at 23:59:59 local counts
    assert one["orders_lifetime"] == 4  # o1-o4; o5 is after the as-of date, o6 cancelled
    assert one["order_days_lifetime"] == 4
    assert (one["orders_30d"], one["orders_90d"], one["orders_365d"]) == (3, 3, 3)
    assert one["amount_30d"] == d("330.00")  # 100 + (200 - 50) + 80
    assert one["amount_365d"] == d("330.00")
    assert one["amount_lifetime"] == d("630.00")
    assert (one["refund_count"], one["refund_amount"]) == (1, d("50.00"))
    assert one["aov_365d"] == d("110.00")
    assert one["repurchased"] is True
    span = (dt.date(2025, 6, 30) - dt.date(2024, 1, 1)).days
    assert one["avg_days_between_orders"] == pytest.approx(span / 3)

    two = tags[2]  # only a fully refunded order: no paid order, refund counted
    assert (two["orders_lifetime"], two["amount_lifetime"], two["first_order_date"]) == (
        0,
        d("0.00"),
        None,
    )
    assert (two["refund_count"], two["refund_amount"]) == (1, d("500.00"))
    assert two["repurchased"] is False and two["aov_365d"] is None


def test_rfm_and_lifecycle_on_the_hand_case(silver, registry, today):
    tags = today
    one = tags[1]
    assert (one["recency_days"], one["frequency"], one["monetary"]) == (0, 3, d("330.00"))
    # OneID 1 is the only buyer: the best of a population of one scores 1 (nobody is worse)
    assert (one["r_score"], one["f_score"], one["m_score"]) == (1, 1, 1)
    assert one["rfm_segment"] == "hibernating"
    assert one["lifecycle_stage"] == "active"
    assert tags[2]["r_score"] is None and tags[2]["rfm_segment"] is None
    assert tags[2]["lifecycle_stage"] == "prospect"
    # as of 2024-01-15 OneID 1 had one order, 14 days before: a new customer
    early = tags_as_of(silver, registry, dt.date(2024, 1, 15))[1]
    assert (early["lifecycle_stage"], early["recency_days"], early["orders_lifetime"]) == (
        "new",
        14,
        1,
    )


def test_preference_tags_and_tie_breaks(silver, registry, today):
    tags = today
    # 彩妆 in o2 and o3 (2 orders), 护肤 in o2 only in 365 days (o1 is older): 彩妆
    assert tags[1]["preferred_category"] == "彩妆"
    # 门店 2 orders (o2, o3) vs 天猫 1 (o4) in 365 days
    assert tags[1]["preferred_channel"] == "门店"
    assert tags[1]["price_band"] == "low"  # AOV 110 < 150
    assert tags[2]["preferred_category"] is None  # no paid order


def test_behaviour_tags_windows_and_first_touch(silver, registry, today):
    tags = today
    three = tags[3]
    assert three["active_days_7d"] == 2  # 06-24 and 06-30 (local); 06-23 is outside
    assert three["active_days_30d"] == 3
    assert three["event_counts_30d"] == {"add_cart": 2, "view_item": 2}  # purchase is 07-01
    assert three["add_cart_30d"] == 2
    assert three["last_event_time"] == utc("2025-06-29T20:00:00")
    assert three["lead_source"] == "douyin"  # the 02-01 Douyin lead came before the XHS one
    assert tags[2]["lead_source"] == "store"  # CRM member registered in a store
    assert tags[4]["lead_source"] is None  # its only lead is after the as-of date
    assert tags[4]["active_days_30d"] == 0 and tags[4]["event_counts_30d"] is None


def test_rfm_scores_are_quintiles_with_shared_ties(spark):
    registry = TagsConf(
        definitions=(
            TagConf(name="v", group="g", description="-", type="int", expr="CAST(oneid AS INT)"),
            TagConf(
                name="s",
                group="g",
                description="-",
                type="int",
                builder="rfm_score",
                params={"value": "v", "better": "higher"},
            ),
            TagConf(
                name="r",
                group="g",
                description="-",
                type="int",
                builder="rfm_score",
                params={"value": "tie", "better": "lower"},
            ),
        )
    )
    # `tie` is declared after the builders would need it: a builder on an unknown tag fails
    with pytest.raises(Exception, match="tie"):
        compute_tags(spark.range(1, 11).toDF("oneid"), {}, registry, AS_OF).collect()
    registry = registry.model_copy(
        update={
            "definitions": (
                registry.definitions[0],
                TagConf(name="tie", group="g", description="-", type="int", expr="v DIV 4"),
                *registry.definitions[1:],
            )
        }
    )
    rows = compute_tags(spark.range(1, 11).toDF("oneid"), {}, registry, AS_OF).collect()
    got = {row.oneid: (row.s, row.r) for row in rows}
    # s: 10 distinct values -> two per quintile; r: lower is better, ties (v DIV 4) share
    assert [got[i][0] for i in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # tie values: 1-3 -> 0 (3x), 4-7 -> 1 (4x), 8-10 -> 2 (3x); worse = larger
    assert [got[i][1] for i in range(1, 11)] == [4, 4, 4, 2, 2, 2, 2, 1, 1, 1]


def test_segment_map_must_cover_the_grid():
    with pytest.raises(ValueError, match=r"missing \[\(1, 1\)\]"):
        TagsConf(
            rfm_segments=[
                {"name": "x", "r": [1, 2, 3, 4, 5], "f": [2, 3, 4, 5]},
                {"name": "y", "r": [2, 3, 4, 5], "f": [1]},
            ]
        )
    with pytest.raises(ValueError, match="more than once"):
        TagsConf(
            rfm_segments=[
                {"name": "x", "r": [1, 2, 3, 4, 5], "f": [1, 2, 3, 4, 5]},
                {"name": "y", "r": [1], "f": [1]},
            ]
        )


def test_bad_expression_names_the_tag(spark):
    registry = TagsConf(
        definitions=(
            TagConf(name="a", group="g", description="-", type="int", expr="no_such_tag + 1"),
        )
    )
    with pytest.raises(ConfigError, match=r"tags\.definitions a: expr 'no_such_tag"):
        compute_tags(spark.range(1, 3).toDF("oneid"), {}, registry, AS_OF)


def test_missing_fact_table_is_a_clear_error(spark, registry):
    with pytest.raises(ConfigError, match=r"tags need silver\.orders"):
        compute_tags(spark.range(1, 3).toDF("oneid"), {}, registry, AS_OF)


def test_tag_declared_twice_on_a_reserved_or_too_long_name_is_rejected():
    tag = {"name": "x", "group": "g", "description": "-", "type": "int", "expr": "1"}
    with pytest.raises(ValueError, match="declared twice"):
        TagsConf(definitions=[tag, tag])
    with pytest.raises(ValueError, match="reserved"):
        TagsConf(definitions=[{**tag, "name": "dt"}])
    with pytest.raises(ValueError, match="exactly one of"):
        TagConf(**{**tag, "builder": "count_by"})
    # a name the API could not select (it bounds names to fit its request line) is refused here
    assert TagConf(**{**tag, "name": "x" * 64}).name == "x" * 64
    with pytest.raises(ValueError, match="at most 64 characters"):
        TagConf(**{**tag, "name": "x" * 65})


# --- the job: tables, idempotence, backfill, one read per fact table --------------------------


def sources_of(schemas: dict[str, str]) -> dict:
    """Sources whose silver facts have the columns of ``schemas`` (facts -> DDL): what conf
    declares for silver tables a test writes itself (the tags job checks its tags against it)."""
    kinds = {"string": "string", "decimal(18,2)": "decimal", "timestamp": "timestamp"}
    sources = {}
    for facts, ddl in schemas.items():
        fields = [part.split() for part in ddl.split(", ")][3:]  # after source, key, time
        columns = {"id": {"field": "id"}} | {
            name: {"field": name, "type": kinds[kind]} for name, kind in fields
        }
        sources[facts] = {
            "format": "csv",
            "path": "unused",
            "facts": facts,
            "record_key": ["id"],
            "columns": columns,
        }
    return sources


SOURCES = sources_of({"orders": ORDERS, "events": EVENTS, "contacts": CONTACTS})


@pytest.fixture(scope="module")
def warehouse(spark, silver, tmp_path_factory):
    facts, record_oneid, oneids = silver
    cfg = config_for(
        tmp_path_factory.mktemp("tags"),
        {"include": [str(CONF_DIR / "tags.yaml")], "sources": SOURCES},
    )
    for name, frame in facts.items():
        overwrite(frame, cfg, f"silver.{name}")
    overwrite(record_oneid, cfg, "identity.record_oneid")
    overwrite(oneids, cfg, "identity.profiles")
    return cfg


def _partition(spark, cfg, table, day):
    return sorted(
        read_table(spark, cfg, table).where(F.col("dt") == F.lit(day)).collect(),
        key=lambda r: (r[0], str(r[1])),
    )


@pytest.mark.slow
def test_job_writes_every_group_and_rerun_is_identical(spark, warehouse):
    cfg = warehouse
    report = run_tags(spark, cfg, [AS_OF])
    tables = tag_tables(cfg.pipeline.tags)
    assert set(tables) == {
        "gold.tags_value",
        "gold.tags_rfm",
        "gold.tags_preference",
        "gold.tags_behaviour",
    }
    for table, columns in tables.items():
        frame = read_table(spark, cfg, table)
        assert frame.columns == ["oneid", *columns, "dt"]
        assert report.tables[table] == 4
    written = [*tables, "gold.tags_summary"]
    # a day's first run appends (nothing to replace), a re-run replaces the day
    assert {last_write(spark, cfg, t) for t in written} == {"WRITE Append"}
    before = {t: _partition(spark, cfg, t, AS_OF) for t in written}
    run_tags(spark, cfg, [AS_OF])
    after = {t: _partition(spark, cfg, t, AS_OF) for t in written}
    assert after == before
    assert {last_write(spark, cfg, t) for t in written} == {"WRITE Overwrite"}
    summary = {(r.metric, r.key): (r["count"], r.share) for r in before["gold.tags_summary"]}
    assert summary[("oneids", "")] == (4, 1.0)
    assert summary[("repurchase_rate", "")] == (1, 1.0)  # one buyer, who repurchased
    assert summary[("lifecycle_stage", "prospect")] == (3, 0.75)
    assert summary[("unattributed_orders", "")][0] == 1  # o8


@pytest.mark.slow
def test_backfill_equals_day_by_day_and_reads_facts_once(spark, warehouse, monkeypatch):
    cfg = warehouse
    days = date_range(dt.date(2025, 6, 28), AS_OF)
    reads: list[str] = []
    real = tags_job.read_table_or_none

    def counting(spark_, cfg_, name):
        reads.append(name)
        return real(spark_, cfg_, name)

    monkeypatch.setattr(tags_job, "read_table_or_none", counting)
    monkeypatch.setattr(tags_job, "DAYS_PER_COMMIT", 2)  # 3 days: a commit of 2, then of 1
    tables = [*tag_tables(cfg.pipeline.tags), "gold.tags_summary"]
    versions = {t: latest_version(spark, table_path(cfg, t)) for t in tables}
    run_tags(spark, cfg, days)
    assert {t: latest_version(spark, table_path(cfg, t)) - versions[t] for t in tables} == {
        t: 2 for t in tables
    }
    assert sorted(n for n in reads if n.startswith("silver.")) == [
        "silver.contacts",
        "silver.events",
        "silver.orders",
    ]
    backfilled = {day: _partition(spark, cfg, "gold.tags_behaviour", day) for day in days}
    for day in days:
        run_tags(spark, cfg, [day])
        assert _partition(spark, cfg, "gold.tags_behaviour", day) == backfilled[day]
    assert backfilled[dt.date(2025, 6, 28)] != backfilled[AS_OF]  # the windows did move


def test_adding_an_aggregate_tag_is_a_conf_change(spark, warehouse, tmp_path):
    import yaml

    registry = yaml.safe_load((CONF_DIR / "tags.yaml").read_text(encoding="utf-8"))
    registry["tags"]["definitions"].append(
        {
            "name": "store_orders_90d",
            "group": "value",
            "description": "门店近90天订单",
            "type": "bigint",
            "window_days": 90,
            "aggregate": {
                "facts": "orders",
                "fn": "count",
                "where": "is_paid AND channel = '门店'",
            },
        }
    )
    (tmp_path / "tags.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True), "utf-8")
    cfg = config_for(
        tmp_path,
        {"include": [str(tmp_path / "tags.yaml")], "sources": SOURCES},
        f"warehouse={warehouse.env.warehouse}",
    )
    run_tags(spark, cfg, [AS_OF])
    rows = read_table(spark, cfg, "gold.tags_value").where(F.col("dt") == F.lit(AS_OF))
    assert {r.oneid: r.store_orders_90d for r in rows.collect()} == {1: 2, 2: 0, 3: 0, 4: 0}


def test_tag_dictionary_in_docs_is_current(registry):
    from oneid.tags.dictionary import tag_dictionary

    current = (CONF_DIR.parent / "docs" / "tags.md").read_text(encoding="utf-8")
    assert current == tag_dictionary(registry), "run: oneid tag-dictionary --out docs/tags.md"
