"""Audience rules: every operator, NULL handling, event windows, references, exclusions,
holdout, escaping, validation messages, and ``explain`` SQL agreeing with the evaluation."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality

from oneid.audiences import (
    CompiledAudiences,
    compile_audiences,
    evaluate_audiences,
    load_audiences,
    parse_audiences,
)
from oneid.errors import ConfigError, DataContractError
from tests.support import REPO

AS_OF = dt.date(2025, 7, 1)
UTC = dt.timezone.utc

TAG_TYPES = {
    "recency_days": "bigint",
    "score": "double",
    "spend": "decimal(18,2)",
    "segment": "string",
    "city": "string",
    "is_vip": "boolean",
    "last_order": "date",
    "last_seen": "timestamp",
    "interests": "array<string>",
    "channel_orders": "map<string,bigint>",
    "is_test_account": "boolean",
}
TAGS_SCHEMA = (
    "oneid bigint, recency_days bigint, score double, spend decimal(18,2), segment string, "
    "city string, is_vip boolean, last_order date, last_seen timestamp, "
    "interests array<string>, channel_orders map<string,bigint>, is_test_account boolean"
)
EVENT_PROPERTIES = {"event": "string", "category": "string", "page": "string", "amount": "double"}
EVENTS_SCHEMA = (
    "oneid bigint, event_time timestamp, event string, category string, page string, amount double"
)


def _tag_row(oneid: int, **values: Any) -> tuple[Any, ...]:
    """A tags row: every tag NULL unless given."""
    return (oneid, *(values.get(name) for name in TAG_TYPES))


def _tags(spark, *rows: tuple[Any, ...]):
    return spark.createDataFrame(list(rows), TAGS_SCHEMA)


def _events(spark, *rows: tuple[Any, ...]):
    """Rows (oneid, event_time, event, category, page, amount)."""
    return spark.createDataFrame(list(rows), EVENTS_SCHEMA)


def _compile(audiences: dict[str, Any], exclusions: list[Any] | None = None) -> CompiledAudiences:
    raw = {"exclusions": exclusions or [], "audiences": audiences}
    return compile_audiences(parse_audiences(raw), TAG_TYPES, EVENT_PROPERTIES)


def _rules(cases: dict[str, tuple[dict[str, Any], list[int]]]) -> dict[str, Any]:
    return {audience_id: {"rule": rule} for audience_id, (rule, _) in cases.items()}


def _members(spark, compiled, tags, events=None, as_of=AS_OF) -> dict[str, list[int]]:
    """audience id → sorted member OneIDs (every audience listed, members or not)."""
    events = events if events is not None else _events(spark)
    found: dict[str, list[int]] = {a.audience_id: [] for a in compiled.audiences}
    for row in evaluate_audiences(tags, events, compiled, as_of).collect():
        found[row.audience_id].append(row.oneid)
    return {key: sorted(ids) for key, ids in found.items()}


def _expected(cases: dict[str, tuple[Any, list[int]]]) -> dict[str, list[int]]:
    return {audience_id: ids for audience_id, (_, ids) in cases.items()}


def _profiles(spark):
    """Three OneIDs: 1 and 2 differ in every tag, 3 has every tag NULL."""
    return _tags(
        spark,
        _tag_row(
            1,
            recency_days=60,
            score=2.5,
            spend=Decimal("100.10"),
            segment="champions",
            city="上海市浦东新区",
            is_vip=True,
            last_order=dt.date(2025, 6, 30),
            last_seen=dt.datetime(2025, 6, 30, 12, 0, tzinfo=UTC),
            interests=["护肤", "彩妆"],
            channel_orders={"tmall": 3},
        ),
        _tag_row(
            2,
            recency_days=61,
            score=7.0,
            spend=Decimal("99.99"),
            segment="loyal",
            city="北京市",
            is_vip=False,
            last_order=dt.date(2025, 1, 1),
            last_seen=dt.datetime(2025, 1, 1, 8, 30, tzinfo=UTC),
            interests=["母婴"],
            channel_orders={"jd": 1},
        ),
        _tag_row(3),
    )


# --------------------------------------------------------------------------- operators


def test_number_operators_true_false_and_null(spark):
    cases = {
        "eq": ({"tag": "recency_days", "op": "eq", "value": 60}, [1]),
        "neq": ({"tag": "recency_days", "op": "neq", "value": 60}, [2]),
        "gt": ({"tag": "recency_days", "op": "gt", "value": 60}, [2]),
        "gte": ({"tag": "recency_days", "op": "gte", "value": 60}, [1, 2]),
        "lt": ({"tag": "recency_days", "op": "lt", "value": 61}, [1]),
        "lte": ({"tag": "recency_days", "op": "lte", "value": 61}, [1, 2]),
        "lt_none": ({"tag": "recency_days", "op": "lt", "value": 60}, []),
        "between_low_edge": ({"tag": "recency_days", "op": "between", "value": [60, 60]}, [1]),
        "between_high_edge": ({"tag": "recency_days", "op": "between", "value": [0, 61]}, [1, 2]),
        "between_none": ({"tag": "recency_days", "op": "between", "value": [62, 90]}, []),
        "in_": ({"tag": "recency_days", "op": "in", "value": [61, 99]}, [2]),
        "not_in": ({"tag": "recency_days", "op": "not_in", "value": [61]}, [1]),
        "is_null": ({"tag": "recency_days", "op": "is_null"}, [3]),
        "not_null": ({"tag": "recency_days", "op": "not_null"}, [1, 2]),
        "double_gt_float": ({"tag": "score", "op": "gt", "value": 2.5}, [2]),
        "double_eq_int": ({"tag": "score", "op": "eq", "value": 7}, [2]),
        "decimal_eq_float": ({"tag": "spend", "op": "eq", "value": 100.1}, [1]),
        "decimal_lt_int": ({"tag": "spend", "op": "lt", "value": 100}, [2]),
        "decimal_between": ({"tag": "spend", "op": "between", "value": [99.99, 100]}, [2]),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, _profiles(spark)) == _expected(cases)


def test_string_and_boolean_operators(spark):
    cases = {
        "eq": ({"tag": "segment", "op": "eq", "value": "champions"}, [1]),
        "neq": ({"tag": "segment", "op": "neq", "value": "champions"}, [2]),
        "in_": ({"tag": "segment", "op": "in", "value": ["loyal", "at_risk"]}, [2]),
        "not_in": ({"tag": "segment", "op": "not_in", "value": ["loyal"]}, [1]),
        "contains": ({"tag": "city", "op": "contains", "value": "浦东"}, [1]),
        "contains_none": ({"tag": "city", "op": "contains", "value": "广州"}, []),
        "is_null": ({"tag": "segment", "op": "is_null"}, [3]),
        "not_null": ({"tag": "segment", "op": "not_null"}, [1, 2]),
        "bool_eq_true": ({"tag": "is_vip", "op": "eq", "value": True}, [1]),
        "bool_eq_false": ({"tag": "is_vip", "op": "eq", "value": False}, [2]),
        "bool_neq_true": ({"tag": "is_vip", "op": "neq", "value": True}, [2]),
        "bool_is_null": ({"tag": "is_vip", "op": "is_null"}, [3]),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, _profiles(spark)) == _expected(cases)


def test_date_and_timestamp_operators(spark):
    cases = {
        "date_eq_yaml_date": (
            {"tag": "last_order", "op": "eq", "value": dt.date(2025, 6, 30)},
            [1],
        ),
        "date_gt_text": ({"tag": "last_order", "op": "gt", "value": "2025-06-01"}, [1]),
        "date_lte": ({"tag": "last_order", "op": "lte", "value": "2025-01-01"}, [2]),
        "date_between": (
            {"tag": "last_order", "op": "between", "value": ["2025-01-01", "2025-01-31"]},
            [2],
        ),
        "date_not_in": ({"tag": "last_order", "op": "not_in", "value": ["2025-01-01"]}, [1]),
        "ts_gte_utc": ({"tag": "last_seen", "op": "gte", "value": "2025-06-30 12:00:00"}, [1]),
        "ts_lt_utc": ({"tag": "last_seen", "op": "lt", "value": "2025-06-30 12:00:00"}, [2]),
        "ts_eq_offset": (
            {"tag": "last_seen", "op": "eq", "value": "2025-06-30T20:00:00+08:00"},
            [1],
        ),
        "ts_gt_date": ({"tag": "last_seen", "op": "gt", "value": dt.date(2025, 1, 2)}, [1]),
        "ts_is_null": ({"tag": "last_seen", "op": "is_null"}, [3]),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, _profiles(spark)) == _expected(cases)


def test_contains_looks_into_arrays_and_map_keys(spark):
    cases = {
        "array_first": ({"tag": "interests", "op": "contains", "value": "护肤"}, [1]),
        "array_other": ({"tag": "interests", "op": "contains", "value": "母婴"}, [2]),
        "array_none": ({"tag": "interests", "op": "contains", "value": "护"}, []),
        "map_key": ({"tag": "channel_orders", "op": "contains", "value": "tmall"}, [1]),
        "map_other_key": ({"tag": "channel_orders", "op": "contains", "value": "jd"}, [2]),
        "map_not_a_value": ({"tag": "channel_orders", "op": "contains", "value": "3"}, []),
        "array_is_null": ({"tag": "interests", "op": "is_null"}, [3]),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, _profiles(spark)) == _expected(cases)


def test_not_of_a_condition_on_a_null_tag_is_true_and_nesting(spark):
    gt_60 = {"tag": "recency_days", "op": "gt", "value": 60}
    cases = {
        "not_gt": ({"not": gt_60}, [1, 3]),
        "not_neq": ({"not": {"tag": "segment", "op": "neq", "value": "loyal"}}, [2, 3]),
        "not_in_list": ({"not": {"tag": "segment", "op": "in", "value": ["loyal"]}}, [1, 3]),
        "not_contains": ({"not": {"tag": "interests", "op": "contains", "value": "母婴"}}, [1, 3]),
        "not_is_null": ({"not": {"tag": "recency_days", "op": "is_null"}}, [1, 2]),
        "not_not": ({"not": {"not": gt_60}}, [2]),
        "and_": ({"and": [{"tag": "is_vip", "op": "eq", "value": True}, {"not": gt_60}]}, [1]),
        "or_": ({"or": [gt_60, {"tag": "segment", "op": "is_null"}]}, [2, 3]),
        "single_and": ({"and": [gt_60]}, [2]),
        "nested": (
            {
                "or": [
                    {"and": [{"tag": "score", "op": "gt", "value": 5}, {"not": gt_60}]},
                    {"and": [{"tag": "spend", "op": "not_null"}, {"not": {"or": [gt_60]}}]},
                ]
            },
            [1],
        ),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, _profiles(spark)) == _expected(cases)


# ------------------------------------------------------------------------------ events


def test_event_window_boundaries(spark):
    """as_of 2025-07-01, 3 days: [2025-06-29 00:00, 2025-07-02 00:00) UTC."""
    events = _events(
        spark,
        (1, dt.datetime(2025, 7, 1, 23, 59, 59, 999999, tzinfo=UTC), "visit", None, None, None),
        (2, dt.datetime(2025, 7, 2, 0, 0, 0, tzinfo=UTC), "visit", None, None, None),
        (3, dt.datetime(2025, 6, 29, 0, 0, 0, tzinfo=UTC), "visit", None, None, None),
        (4, dt.datetime(2025, 6, 28, 23, 59, 59, 999999, tzinfo=UTC), "visit", None, None, None),
        (5, dt.datetime(2025, 7, 1, 0, 0, 0, tzinfo=UTC), "visit", None, None, None),
        (6, dt.datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC), "visit", None, None, None),
    )
    tags = _tags(spark, *(_tag_row(i) for i in range(1, 8)))
    compiled = _compile(
        {
            "visited_3d": {"rule": {"event": "visit", "in_last_days": 3, "min": 1}},
            "visited_today": {"rule": {"event": "visit", "in_last_days": 1, "min": 1}},
            "no_visit_3d": {"rule": {"event": "visit", "in_last_days": 3, "max": 0}},
        }
    )
    assert _members(spark, compiled, tags, events) == {
        "visited_3d": [1, 3, 5, 6],
        "visited_today": [1, 5],
        "no_visit_3d": [2, 4, 7],
    }


def test_event_windows_follow_the_business_time_zone(spark):
    """Asia/Shanghai is UTC+8: day 2025-07-01 there is [06-30 16:00, 07-01 16:00) UTC."""
    events = _events(
        spark,
        (1, dt.datetime(2025, 7, 1, 15, 59, 59, tzinfo=UTC), "visit", None, None, None),
        (2, dt.datetime(2025, 7, 1, 16, 0, 0, tzinfo=UTC), "visit", None, None, None),
        (3, dt.datetime(2025, 6, 30, 16, 0, 0, tzinfo=UTC), "visit", None, None, None),
        (4, dt.datetime(2025, 6, 30, 15, 59, 59, tzinfo=UTC), "visit", None, None, None),
    )
    raw = {"audiences": {"today": {"rule": {"event": "visit", "in_last_days": 1, "min": 1}}}}
    compiled = compile_audiences(
        parse_audiences(raw), TAG_TYPES, EVENT_PROPERTIES, time_zone="Asia/Shanghai"
    )
    tags = _tags(spark, *(_tag_row(i) for i in range(1, 5)))
    assert _members(spark, compiled, tags, events) == {"today": [1, 3]}
    assert "ending before 2025-07-02 00:00 Asia/Shanghai" in compiled.explain("today", AS_OF)


def test_event_counts_with_filters_and_sums(spark):
    def at(day: int, event: str, category=None, page=None, amount=None):
        return (dt.datetime(2025, 6, day, 10, tzinfo=UTC), event, category, page, amount)

    events = _events(
        spark,
        *[(1, *at(20, "view_item", "护肤", "pdp")) for _ in range(3)],
        (1, *at(21, "view_item", "彩妆", "plp")),
        (1, *at(22, "purchase", amount=300.0)),
        (1, *at(23, "purchase", amount=250.0)),
        (2, *at(20, "view_item", "护肤", "pdp")),
        (2, *at(20, "view_item", "护肤", "plp")),
        (2, *at(20, "view_item", "彩妆", "pdp")),
        (2, *at(25, "purchase", amount=None)),
        (2, dt.datetime(2025, 5, 20, tzinfo=UTC), "purchase", None, None, 900.0),  # too old
        (3, *at(30, "purchase", amount=500.0)),
        (3, *at(30, "refund", amount=500.0)),
    )
    tags = _tags(spark, *(_tag_row(i) for i in range(1, 5)))
    view = {"event": "view_item", "in_last_days": 30}
    cases = {
        "skincare_3": ({**view, "where": {"category": "护肤"}, "min": 3}, [1]),
        "skincare_pdp_1": (
            {**view, "where": {"category": "护肤", "page": "pdp"}, "min": 1},
            [1, 2],
        ),
        "beauty_3": ({**view, "where": {"category": ["护肤", "彩妆"]}, "min": 3}, [1, 2]),
        "views_2_to_3": ({**view, "min": 2, "max": 3}, [2]),
        "spend_500": (
            {"event": "purchase", "sum": "amount", "in_last_days": 30, "min": 500},
            [1, 3],
        ),
        "spend_upto_100": (
            {"event": "purchase", "sum": "amount", "in_last_days": 30, "max": 100},
            [2, 4],
        ),
        "spend_90d_800": (
            {"event": "purchase", "sum": "amount", "in_last_days": 90, "min": 800.5},
            [2],
        ),
    }
    compiled = _compile(_rules(cases))
    assert _members(spark, compiled, tags, events) == _expected(cases)


def test_equal_aggregates_are_shared_and_events_are_aggregated_once(spark):
    skincare = {"event": "view_item", "where": {"category": ["护肤"]}, "in_last_days": 30}
    compiled = _compile(
        {
            "a": {"rule": {**skincare, "min": 3}},
            "b": {"rule": {"not": {**skincare, "where": {"category": "护肤"}, "max": 1}}},
            "c": {"rule": {"event": "purchase", "sum": "amount", "in_last_days": 30, "min": 1}},
        }
    )
    assert [(a.name, a.event, a.filters, a.sum_of, a.days) for a in compiled.aggregates] == [
        ("__count_1", "view_item", ("`category` = '护肤'",), None, 30),
        ("__sum_2", "purchase", (), "amount", 30),
    ]
    assert compiled.audience("b").condition == "NOT (`__count_1` <= 1)"
    result = evaluate_audiences(_tags(spark, _tag_row(1)), _events(spark), compiled, AS_OF)
    plan = result._jdf.queryExecution().optimizedPlan().toString()
    assert len(re.findall(r"^[\s:+-]*Aggregate \[", plan, re.M)) == 1


def test_aggregate_sql_is_parametrised_by_the_as_of_date():
    compiled = _compile(
        {
            "a": {
                "rule": {
                    "event": "purchase",
                    "where": {"page": "p"},
                    "sum": "amount",
                    "in_last_days": 30,
                    "min": 1,
                }
            },
            "b": {"rule": {"event": "visit", "in_last_days": 1, "min": 1}},
        }
    )
    assert compiled.aggregate_expressions(AS_OF) == {
        "__sum_1": "sum(CASE WHEN `event` = 'purchase' AND `page` = 'p' AND event_time >= "
        "TIMESTAMP '2025-06-02 00:00:00+00:00' THEN `amount` END)",
        "__count_2": "count_if(`event` = 'visit' AND event_time >= "
        "TIMESTAMP '2025-07-01 00:00:00+00:00')",
    }
    with pytest.raises(TypeError, match=r"as_of must be a datetime\.date"):
        compiled.aggregate_expressions(dt.datetime(2025, 7, 1))


# ------------------------------------------------------------- references and exclusions


def test_include_and_exclude_another_audience_in_dependency_order(spark):
    compiled = _compile(
        {
            "loyal_and_vip": {"rule": {"and": [{"audience": "vip"}, {"audience": "loyal"}]}},
            "not_vip": {"rule": {"audience": "vip", "include": False}},
            "vip": {"rule": {"tag": "is_vip", "op": "eq", "value": True}},
            "loyal": {"rule": {"tag": "recency_days", "op": "lte", "value": 60}},
        }
    )
    assert [a.audience_id for a in compiled.audiences] == [
        "vip",
        "loyal",
        "loyal_and_vip",
        "not_vip",
    ]
    assert [[a.audience_id for a in level] for level in compiled.levels()] == [
        ["vip", "loyal"],
        ["loyal_and_vip", "not_vip"],
    ]
    tags = _tags(
        spark,
        _tag_row(1, is_vip=True, recency_days=10),
        _tag_row(2, is_vip=True, recency_days=90),
        _tag_row(3, is_vip=False, recency_days=10),
        _tag_row(4),
    )
    assert _members(spark, compiled, tags) == {
        "vip": [1, 2],
        "loyal": [1, 3],
        "loyal_and_vip": [1],
        "not_vip": [3, 4],
    }


def test_global_exclusions_remove_oneids_from_every_audience(spark):
    compiled = _compile(
        {
            "everyone": {"rule": {"tag": "recency_days", "op": "gte", "value": 0}},
            "not_everyone": {"rule": {"audience": "everyone", "include": False}},
        },
        exclusions=[
            {"tag": "is_test_account", "op": "eq", "value": True},
            {"event": "unsubscribe", "in_last_days": 365, "min": 1},
        ],
    )
    tags = _tags(
        spark,
        _tag_row(1, recency_days=1, is_test_account=False),
        _tag_row(2, recency_days=1, is_test_account=True),
        _tag_row(3, recency_days=1),  # NULL test flag: not excluded
        _tag_row(4, recency_days=1),
        _tag_row(5),
    )
    events = _events(
        spark, (4, dt.datetime(2025, 1, 5, tzinfo=UTC), "unsubscribe", None, None, None)
    )
    assert _members(spark, compiled, tags, events) == {"everyone": [1, 3], "not_everyone": [5]}


# --------------------------------------------------------------------- holdout and output


def test_holdout_is_deterministic_per_audience_and_close_to_its_share(spark):
    rule = {"tag": "recency_days", "op": "gte", "value": 0}
    compiled = _compile(
        {
            "a": {"holdout": 0.1, "rule": rule},
            "b": {"holdout": 0.1, "version": 3, "rule": rule},
            "c": {"rule": rule},
        }
    )
    tags = spark.range(1, 10_001).selectExpr("id AS oneid", "0L AS recency_days")

    def held(as_of):
        rows = evaluate_audiences(tags, _events(spark), compiled, as_of).where("holdout")
        found: dict[str, list[int]] = {"a": [], "b": [], "c": []}
        for row in rows.collect():
            found[row.audience_id].append(row.oneid)
        return {key: sorted(ids) for key, ids in found.items()}

    first, later = held(AS_OF), held(AS_OF + dt.timedelta(days=30))
    assert first == later
    assert first["c"] == []
    assert 910 <= len(first["a"]) <= 1090
    assert 910 <= len(first["b"]) <= 1090
    assert first["a"] != first["b"]
    # pinned: pmod(xxhash64(oneid, 'a'), 1000000) < 100000 for these OneIDs
    assert [i for i in first["a"] if i <= 100] == HOLDOUT_A_UP_TO_100


HOLDOUT_A_UP_TO_100 = [6, 15, 30, 35, 51, 63, 67, 69, 84, 93]


def test_membership_schema_and_versions(spark):
    compiled = _compile(
        {"v7": {"version": 7, "rule": {"tag": "recency_days", "op": "eq", "value": 60}}}
    )
    result = evaluate_audiences(_profiles(spark), _events(spark), compiled, AS_OF)
    expected = spark.createDataFrame(
        [("v7", 7, 1, False)], "audience_id string, version int, oneid bigint, holdout boolean"
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)
    empty = evaluate_audiences(_profiles(spark), _events(spark), _compile({}), AS_OF)
    assert empty.schema.simpleString() == expected.schema.simpleString()
    assert empty.collect() == []


def test_missing_columns_are_a_data_contract_error(spark):
    compiled = _compile(
        {"a": {"rule": {"event": "view_item", "where": {"page": "x"}, "in_last_days": 1, "min": 1}}}
    )
    events = spark.createDataFrame([], "oneid bigint, event_time timestamp, event string")
    with pytest.raises(DataContractError, match=r"column\(s\) \['page'\] in the events frame"):
        evaluate_audiences(_profiles(spark), events, compiled, AS_OF)


# ---------------------------------------------------------------------- escaping


TRICKY = {
    1: "it's",
    2: "back\\slash",
    3: "x' OR '1'='1",
    4: "line\nbreak",
    5: "\\u0041",
    6: "A",
    7: "end\\'",
}


def test_string_literals_are_escaped_and_cannot_inject_sql(spark):
    cases = {
        f"v{oneid}": ({"tag": "segment", "op": "eq", "value": value}, [oneid])
        for oneid, value in TRICKY.items()
    }
    cases["in_list"] = ({"tag": "segment", "op": "in", "value": [TRICKY[1], TRICKY[3]]}, [1, 3])
    cases["contains_quote"] = ({"tag": "segment", "op": "contains", "value": "'"}, [1, 3, 7])
    cases["event_where"] = (
        {"event": "view'it", "where": {"page": TRICKY[3]}, "in_last_days": 1, "min": 1},
        [3],
    )
    compiled = _compile(_rules(cases))
    tags = _tags(spark, *(_tag_row(oneid, segment=value) for oneid, value in TRICKY.items()))
    events = _events(
        spark,
        (3, dt.datetime(2025, 7, 1, tzinfo=UTC), "view'it", None, TRICKY[3], None),
        (4, dt.datetime(2025, 7, 1, tzinfo=UTC), "view'it", None, "x", None),
    )
    assert _members(spark, compiled, tags, events) == _expected(cases)
    assert compiled.audience("v3").condition == r"coalesce(`segment` = 'x\' OR \'1\'=\'1', false)"
    assert compiled.audience("v4").condition == r"coalesce(`segment` = 'line\nbreak', false)"


# ------------------------------------------------------------------------ explain


def test_explain_runs_on_views_and_gives_the_evaluated_members(spark):
    compiled = _compile(
        {
            "at_risk": {
                "version": 2,
                "holdout": 0.5,
                "description": "高价值但近期未复购\nline two",
                "rule": {
                    "and": [
                        {"tag": "segment", "op": "in", "value": ["champions", "it's"]},
                        {"not": {"event": "add_to_cart", "in_last_days": 14, "min": 1}},
                        {
                            "or": [
                                {
                                    "event": "view_item",
                                    "where": {"category": "护肤"},
                                    "in_last_days": 30,
                                    "min": 2,
                                },
                                {
                                    "event": "purchase",
                                    "sum": "amount",
                                    "in_last_days": 30,
                                    "min": 500,
                                },
                            ]
                        },
                        {"audience": "vip"},
                    ]
                },
            },
            "vip": {
                "rule": {"or": [{"tag": "is_vip", "op": "eq", "value": True}, {"audience": "big"}]}
            },
            "big": {"rule": {"tag": "spend", "op": "gte", "value": 1000}},
        },
        exclusions=[{"tag": "is_test_account", "op": "eq", "value": True}],
    )
    tags = _tags(
        spark,
        *(_tag_row(i, segment="champions", is_vip=True) for i in range(1, 21)),
        _tag_row(21, segment="it's", spend=Decimal("1000.00")),
        _tag_row(22, segment="champions", is_vip=True, is_test_account=True),
        _tag_row(23, segment="loyal", is_vip=True),
    )
    day = dt.datetime(2025, 6, 25, tzinfo=UTC)
    events = _events(
        spark,
        *((i, day, "view_item", "护肤", None, None) for i in range(1, 24) for _ in range(2)),
        (2, day, "add_to_cart", None, None, None),
        (3, dt.datetime(2025, 6, 1, tzinfo=UTC), "view_item", "护肤", None, None),
        (4, dt.datetime(2025, 7, 2, tzinfo=UTC), "add_to_cart", None, None, None),
    )
    evaluated = evaluate_audiences(tags, events, compiled, AS_OF).collect()
    tags.createOrReplaceTempView("audience_rules_tags")
    events.createOrReplaceTempView("audience_rules_events")
    try:
        for audience in compiled.audiences:
            sql = compiled.explain(
                audience.audience_id,
                AS_OF,
                tags_view="audience_rules_tags",
                events_view="audience_rules_events",
            )
            expected = [
                (r.oneid, r.holdout) for r in evaluated if r.audience_id == audience.audience_id
            ]
            assert sorted(tuple(r) for r in spark.sql(sql).collect()) == sorted(expected)
    finally:
        spark.catalog.dropTempView("audience_rules_tags")
        spark.catalog.dropTempView("audience_rules_events")

    members = sorted(r.oneid for r in evaluated if r.audience_id == "at_risk")
    assert members == [1, *range(3, 22)]
    held = [r.oneid for r in evaluated if r.audience_id == "at_risk" and r.holdout]
    assert 0 < len(held) < len(members)
    sql = compiled.explain("at_risk", AS_OF)
    assert sql.splitlines()[:3] == [
        "-- audience at_risk, version 2, as of 2025-07-01",
        "-- 高价值但近期未复购 line two",
        "-- event windows: whole days in UTC, ending before 2025-07-02 00:00 UTC",
    ]
    assert "FROM events\n" in sql and "FROM tags AS t\n" in sql
    with pytest.raises(
        ConfigError, match=r"unknown audience 'at_rsk' \(did you mean 'at_risk'\?\)"
    ):
        compiled.explain("at_rsk", AS_OF)


def test_docs_example_compiles_and_its_explain_output_is_current():
    text = (REPO / "docs" / "audiences.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    conf = parse_audiences(yaml.safe_load(blocks[0][1]))
    compiled = compile_audiences(
        conf,
        {
            "is_test_account": "boolean",
            "opted_out": "boolean",
            "member_level": "string",
            "rfm_segment": "string",
            "recency_days": "bigint",
        },
        {"category": "string", "amount": "decimal(18,2)"},
    )
    assert [a.audience_id for a in compiled.audiences] == ["vip_members", "high_value_at_risk"]
    explained = [body for kind, body in blocks if kind == "sql" and body.startswith("-- audience")]
    assert explained == [compiled.explain("vip_members", AS_OF) + "\n"]


# --------------------------------------------------------------------- validation


def _problems(audiences: dict[str, Any], exclusions: list[Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _compile(audiences, exclusions)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid audience rules"
    return [line.strip() for line in lines[1:]]


def _one_rule(rule: Any) -> dict[str, Any]:
    return {"a": {"rule": rule}}


VALIDATION_CASES = {
    "unknown tag": (
        {
            "high_value_at_risk": {
                "rule": {
                    "and": [
                        {"tag": "segment", "op": "eq", "value": "x"},
                        {"tag": "recency_dayz", "op": "gt", "value": 60},
                    ]
                }
            }
        },
        "audiences.high_value_at_risk.rule.and[1]: unknown tag 'recency_dayz' "
        "(did you mean 'recency_days'?)",
    ),
    "gt on a string": (
        _one_rule({"tag": "city", "op": "gt", "value": "a"}),
        "audiences.a.rule: operator 'gt' does not apply to tag 'city' of type string "
        "(use one of: eq, neq, in, not_in, contains, is_null, not_null)",
    ),
    "gt on a boolean": (
        _one_rule({"not": {"tag": "is_vip", "op": "gt", "value": True}}),
        "audiences.a.rule.not: operator 'gt' does not apply to tag 'is_vip' of type boolean "
        "(use one of: eq, neq, is_null, not_null)",
    ),
    "contains on a number": (
        _one_rule({"tag": "recency_days", "op": "contains", "value": 6}),
        "audiences.a.rule: operator 'contains' does not apply to tag 'recency_days' of type "
        "bigint (use one of: eq, neq, gt, gte, lt, lte, between, in, not_in, is_null, not_null)",
    ),
    "string for a number": (
        _one_rule({"tag": "recency_days", "op": "gt", "value": "60"}),
        "audiences.a.rule: gt on tag 'recency_days' (bigint): expected a number, "
        "got '60' (a string)",
    ),
    "number for a string": (
        _one_rule({"tag": "segment", "op": "eq", "value": 3}),
        "audiences.a.rule: eq on tag 'segment' (string): expected a string, got 3 (an integer) "
        "(quote it to compare as text)",
    ),
    "bad date": (
        _one_rule({"tag": "last_order", "op": "lt", "value": "2025-13-01"}),
        "audiences.a.rule: lt on tag 'last_order' (date): expected a date (YYYY-MM-DD), "
        "got '2025-13-01' (a string)",
    ),
    "null value": (
        _one_rule({"tag": "segment", "op": "eq", "value": None}),
        "audiences.a.rule: eq on tag 'segment' (string): expected a string, got null "
        "(use op is_null / not_null for NULL)",
    ),
    "between one value": (
        _one_rule({"tag": "recency_days", "op": "between", "value": [1]}),
        "audiences.a.rule: 'between' needs two values [low, high], got [1] (a list)",
    ),
    "between unordered": (
        _one_rule({"tag": "recency_days", "op": "between", "value": [9, 1]}),
        "audiences.a.rule: 'between' needs [low, high] with low <= high, got [9, 1]",
    ),
    "between wrong type": (
        _one_rule({"tag": "spend", "op": "between", "value": [1, "9"]}),
        "audiences.a.rule: between on tag 'spend' (decimal(18,2)): [1] expected a number, "
        "got '9' (a string)",
    ),
    "in empty": (
        _one_rule({"tag": "segment", "op": "in", "value": []}),
        "audiences.a.rule: 'in' needs a non-empty list of values, got [] (a list)",
    ),
    "in scalar": (
        _one_rule({"tag": "segment", "op": "not_in", "value": "x"}),
        "audiences.a.rule: 'not_in' needs a non-empty list of values, got 'x' (a string)",
    ),
    "eq list": (
        _one_rule({"tag": "segment", "op": "eq", "value": ["x"]}),
        "audiences.a.rule: 'eq' takes one value, got a list (use 'in')",
    ),
    "eq without value": (
        _one_rule({"tag": "segment", "op": "eq"}),
        "audiences.a.rule: 'eq' needs a value",
    ),
    "is_null with value": (
        _one_rule({"tag": "segment", "op": "is_null", "value": True}),
        "audiences.a.rule: 'is_null' takes no value",
    ),
    "contains wrong element type": (
        _one_rule({"tag": "interests", "op": "contains", "value": 1}),
        "audiences.a.rule: contains on tag 'interests' (array<string>): expected a string, "
        "got 1 (an integer) (quote it to compare as text)",
    ),
    "unknown event property": (
        _one_rule(
            {
                "or": [
                    {"tag": "segment", "op": "not_null"},
                    {"event": "v", "where": {"categroy": "x"}, "in_last_days": 3, "min": 1},
                ]
            }
        ),
        "audiences.a.rule.or[1]: where: unknown event property 'categroy' "
        "(did you mean 'category'?)",
    ),
    "where value type": (
        _one_rule({"event": "v", "where": {"page": ["a", 2]}, "in_last_days": 3, "min": 1}),
        "audiences.a.rule: where page (string): [1] expected a string, got 2 (an integer) "
        "(quote it to compare as text)",
    ),
    "unknown sum property": (
        _one_rule({"event": "purchase", "sum": "amout", "in_last_days": 3, "min": 1}),
        "audiences.a.rule: sum: unknown event property 'amout' (did you mean 'amount'?)",
    ),
    "sum over a string": (
        _one_rule({"event": "purchase", "sum": "page", "in_last_days": 3, "min": 1}),
        "audiences.a.rule: sum: event property 'page' is string, not a number",
    ),
    "event without bounds": (
        _one_rule({"event": "purchase", "in_last_days": 3}),
        "audiences.a.rule: an event condition needs min and/or max",
    ),
    "fractional count": (
        _one_rule({"event": "purchase", "in_last_days": 3, "min": 1.5}),
        "audiences.a.rule: min / max of a count must be whole numbers >= 0, got [1.5]",
    ),
    "min above max": (
        _one_rule({"event": "purchase", "sum": "amount", "in_last_days": 3, "min": 9, "max": 1}),
        "audiences.a.rule: min 9 is greater than max 1",
    ),
    "unknown audience": (
        {
            "vip_members": {"rule": {"tag": "is_vip", "op": "eq", "value": True}},
            "b": {"rule": {"and": [{"audience": "vip_member"}]}},
        },
        "audiences.b.rule.and[0]: unknown audience 'vip_member' (did you mean 'vip_members'?)",
    ),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation_error_names_audience_path_and_problem(case):
    audiences, expected = VALIDATION_CASES[case]
    assert _problems(audiences) == [expected]


def test_all_problems_are_reported_at_once_including_exclusions():
    problems = _problems(
        {
            "a": {"rule": {"tag": "nope", "op": "eq", "value": 1}},
            "b": {"rule": {"event": "x", "in_last_days": 1}},
        },
        exclusions=[{"audience": "a"}, {"tag": "is_test_acount", "op": "eq", "value": True}],
    )
    assert problems == [
        "exclusions[0]: exclusions cannot refer to audiences",
        "exclusions[1]: unknown tag 'is_test_acount' (did you mean 'is_test_account'?)",
        "audiences.a.rule: unknown tag 'nope'",
        "audiences.b.rule: an event condition needs min and/or max",
    ]


@pytest.mark.parametrize(
    ("audiences", "expected"),
    [
        (
            {
                "a": {"rule": {"and": [{"audience": "b"}]}},
                "b": {"rule": {"not": {"audience": "a"}}},
            },
            "audiences.b.rule.not: audiences refer to each other in a cycle: a -> b -> a",
        ),
        (
            {"a": {"rule": {"audience": "a", "include": False}}},
            "audiences.a.rule: audiences refer to each other in a cycle: a -> a",
        ),
        (
            {
                "ok": {"rule": {"tag": "is_vip", "op": "eq", "value": True}},
                "x": {"rule": {"or": [{"audience": "ok"}, {"audience": "y"}]}},
                "y": {"rule": {"audience": "z"}},
                "z": {"rule": {"and": [{"audience": "ok"}, {"audience": "x"}]}},
            },
            "audiences.z.rule.and[1]: audiences refer to each other in a cycle: x -> y -> z -> x",
        ),
    ],
)
def test_cycles_between_audiences_are_named(audiences, expected):
    assert _problems(audiences) == [expected]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"audiences": {"a": {"holdout": 0.7, "rule": {"tag": "x", "op": "is_null"}}}},
            "audiences.a.holdout: Input should be less than or equal to 0.5 (got 0.7)",
        ),
        (
            {"audiences": {"a": {"holdout": -0.1, "rule": {"tag": "x", "op": "is_null"}}}},
            "audiences.a.holdout: Input should be greater than or equal to 0 (got -0.1)",
        ),
        (
            {"audiences": {"a": {"rule": {"and": [{"tag": "x", "op": "greater", "value": 1}]}}}},
            "audiences.a.rule.and[0].op: Input should be 'eq', 'neq', 'gt', 'gte', 'lt', 'lte', "
            "'between', 'in', 'not_in', 'is_null', 'not_null' or 'contains' (got 'greater')",
        ),
        (
            {"audiences": {"a": {"rule": {"event": "v", "in_last_days": 3, "count": {"min": 3}}}}},
            "audiences.a.rule: unknown key 'count' (an event condition counts by default: "
            "write min / max on it directly)",
        ),
        (
            {"audiences": {"a": {"rule": {"or": [{"tags": "x"}]}}}},
            "audiences.a.rule.or[0]: a condition needs one of the keys tag, event, audience, and, "
            "or, not (got keys ['tags'])",
        ),
        (
            {"audiences": {"a": {"rule": {"not": {"and": []}}}}},
            "audiences.a.rule.not.and: 'and' needs at least one condition",
        ),
        (
            {"audiences": {"a": {"rule": {"event": "v", "min": 1}}}},
            "audiences.a.rule: missing key 'in_last_days'",
        ),
        (
            {"audiences": {"a": {"rule": {"event": "v", "in_last_days": 0, "min": 1}}}},
            "audiences.a.rule.in_last_days: Input should be greater than 0 (got 0)",
        ),
        (
            {"audiences": {"高价值": {"rule": {"tag": "x", "op": "is_null"}}}},
            "audiences: audience id(s) ['高价值'] must start with a letter and hold only "
            "letters, digits, _",
        ),
    ],
)
def test_shape_errors_name_the_key_path(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_audiences(raw, "conf/audiences.yaml")
    assert str(info.value).splitlines() == [
        "invalid audience rules",
        f"  conf/audiences.yaml: {expected}",
    ]


def test_load_audiences_reads_yaml_and_names_the_file(tmp_path):
    good = tmp_path / "audiences.yaml"
    good.write_text(
        "audiences:\n  a:\n    description: 会员\n    rule: {tag: is_vip, op: eq, value: true}\n",
        encoding="utf-8",
    )
    conf = load_audiences(good)
    assert conf.audiences["a"].description == "会员"
    assert conf.audiences["a"].on_new_version == "emit_all"

    broken = tmp_path / "broken.yaml"
    broken.write_text("audiences:\n  a: {rule: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}:3:1: not valid YAML")):
        load_audiences(broken)
    with pytest.raises(ConfigError, match="file not found"):
        load_audiences(tmp_path / "missing.yaml")


def test_conf_objects_are_frozen():
    conf = parse_audiences({"audiences": {"a": {"rule": {"tag": "x", "op": "is_null"}}}})
    with pytest.raises(ValueError, match="frozen"):
        conf.audiences["a"].version = 2
