"""Audience snapshots and diffs on small hand-written cases: merges, splits, versions, re-runs."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from pyspark.sql import functions as F

from oneid.audiences.job import run_audiences
from oneid.audiences.stats import count_stats
from oneid.conf.pipeline import DestinationConf
from oneid.errors import DataContractError
from oneid.publish.job import DayChanges, _write_platform
from oneid.tables import append, overwrite, read_table
from tests.support import config_for, last_write

D1, D2 = dt.date(2025, 6, 29), dt.date(2025, 6, 30)
TAGS = {
    "definitions": [
        {"name": "score", "group": "g", "description": "-", "type": "int", "expr": "1"},
        {"name": "segment", "group": "g", "description": "-", "type": "string", "expr": "'x'"},
    ]
}


def rules(mid_version: int, low_version: int) -> dict:
    return {
        "exclusions": [{"tag": "segment", "op": "eq", "value": "test"}],
        "audiences": {
            "high": {"rule": {"tag": "score", "op": "gte", "value": 5}},
            "low": {
                "version": low_version,
                "on_new_version": "baseline",
                "rule": {"tag": "score", "op": "lt", "value": 5},
            },
            "mid": {
                "version": mid_version,
                "on_new_version": "emit_all",
                "rule": {"tag": "score", "op": "between", "value": [4, 8]},
            },
        },
    }


def config(folder, warehouse, mid_version, low_version):
    conf = folder / "conf"
    conf.mkdir(parents=True)
    (conf / "audiences.yaml").write_text(yaml.safe_dump(rules(mid_version, low_version)), "utf-8")
    pipeline = {"tags": TAGS, "audiences": {"rules": "audiences.yaml", "stats_by": ["segment"]}}
    return config_for(folder, pipeline, f"warehouse={warehouse}")


def tags(spark, day, scores):
    rows = [(oneid, score, "test" if oneid == 9 else "x", day) for oneid, score in scores.items()]
    return spark.createDataFrame(rows, "oneid long, score int, segment string, dt date")


def oneids(spark, ids):
    return spark.createDataFrame([(i,) for i in ids], "oneid long")


def lineage(spark, rows):
    return spark.createDataFrame(
        rows, "run_id string, kind string, from_oneid long, to_oneid long, identifiers long"
    )


def changes_of(spark, cfg, day):
    frame = read_table(spark, cfg, "audience.changes").where(F.col("dt") == F.lit(day))
    return sorted(
        (r.audience_id, r.change, r.oneid, r.from_oneid)
        for r in frame.select("audience_id", "change", "oneid", "from_oneid").collect()
    )


@pytest.fixture(scope="module")
def two_days(spark, tmp_path_factory):
    """Day 1 on OneIDs 1-6 (and test account 9); then an identity run merges 2 into 1 and 5
    into 6 and splits 7 off 3; day 2 runs with `mid` at a new version (emit_all) and `low`
    at a new version (baseline)."""
    root = tmp_path_factory.mktemp("audiences")
    warehouse = root / "warehouse"
    cfg1 = config(root / "v1", warehouse, mid_version=1, low_version=1)
    cfg2 = config(root / "v2", warehouse, mid_version=2, low_version=2)

    day1 = {1: 9, 2: 7, 3: 6, 4: 1, 5: 5, 6: 2, 9: 9}
    append(tags(spark, D1, day1), cfg1, "gold.tags_g", ("dt",))
    overwrite(oneids(spark, day1), cfg1, "identity.profiles")
    first = [("r1", "new", None, i, 1) for i in day1]
    overwrite(lineage(spark, first), cfg1, "identity.oneid_changes")
    report1 = run_audiences(spark, cfg1, D1)

    day2 = {1: 9, 3: 1, 4: 6, 6: 1, 7: 8, 9: 9}
    append(tags(spark, D2, day2), cfg2, "gold.tags_g", ("dt",))
    overwrite(oneids(spark, day2), cfg2, "identity.profiles")
    moves = [
        ("r2", "merge", 2, 1, 3),
        ("r2", "merge", 5, 6, 2),
        ("r2", "split", 3, 7, 2),
        ("r2", "retire", 2, None, 0),
        ("r2", "retire", 5, None, 0),
    ]
    append(lineage(spark, moves), cfg2, "identity.oneid_changes")
    report2 = run_audiences(spark, cfg2, D2)
    return cfg1, cfg2, report1, report2


def test_first_day_everyone_enters_and_exclusions_apply(spark, two_days):
    cfg1, _, report1, _ = two_days
    assert changes_of(spark, cfg1, D1) == sorted(
        [("high", "entered", i, None) for i in (1, 2, 3, 5)]
        + [("mid", "entered", i, None) for i in (2, 3, 5)]
    )  # `low` baselines silently on its first run; OneID 9 is a test account
    assert report1.sizes["low"] == {
        "size": 2,
        "holdout": 0,
        "entered": 0,
        "exited": 0,
        "remapped": 0,
        "baseline": 1,
    }


def test_merge_is_remapped_split_is_remapped_and_a_gone_member_exits(spark, two_days):
    _, cfg2, _, _ = two_days
    got = [c for c in changes_of(spark, cfg2, D2) if c[0] == "high"]
    # members now {1, 4, 7}: 1 took over 2 (merge), 7 split off 3, 5 merged into 6 (score 1)
    assert got == [
        ("high", "entered", 4, None),
        ("high", "exited", 5, None),
        ("high", "remapped", 1, 2),
        ("high", "remapped", 7, 3),
    ]


def test_new_version_emits_all_or_baselines_as_declared(spark, two_days):
    _, cfg2, _, report2 = two_days
    got = changes_of(spark, cfg2, D2)
    # mid v2 (emit_all): members {4, 7} all enter; 7 split off v1 member 3 (remapped);
    # 2 and 5 went into OneIDs that are not members (exited)
    assert [c for c in got if c[0] == "mid"] == [
        ("mid", "entered", 4, None),
        ("mid", "entered", 7, None),
        ("mid", "exited", 2, None),
        ("mid", "exited", 5, None),
        ("mid", "remapped", 7, 3),
    ]
    assert [c for c in got if c[0] == "low"] == []  # low v2 baselines
    assert report2.sizes["low"]["baseline"] == 1 and report2.sizes["low"]["size"] == 2


def test_membership_stats_and_overlaps(spark, two_days):
    _, cfg2, _, report2 = two_days
    members = read_table(spark, cfg2, "audience.membership").where(F.col("dt") == F.lit(D2))
    got = sorted((r.audience_id, r.version, r.oneid) for r in members.collect())
    assert got == [
        ("high", 1, 1),
        ("high", 1, 4),
        ("high", 1, 7),
        ("low", 2, 3),
        ("low", 2, 6),
        ("mid", 2, 4),
        ("mid", 2, 7),
    ]
    assert report2.overlaps == {("high", "mid"): 2}
    stats = read_table(spark, cfg2, "audience.stats").where(F.col("dt") == F.lit(D2))
    by = {(r.audience_id, r.metric, r.key): r.value for r in stats.collect()}
    assert by[("high", "size", "")] == 3
    assert by[("high", "by:segment", "x")] == 3
    assert by[("mid", "overlap", "high")] == 2


def test_rerunning_a_day_changes_nothing(spark, two_days):
    cfg1, cfg2, _, _ = two_days
    tables = ("audience.membership", "audience.changes", "audience.stats")

    def snapshot():
        return {
            t: sorted(map(tuple, read_table(spark, cfg2, t).drop("dt").collect()), key=str)
            for t in tables
        }

    before = snapshot()
    versions = {t: _version(spark, cfg2, t) for t in tables}
    # a day's first run appends its rows (nothing to replace), a re-run replaces them
    assert {last_write(spark, cfg2, t) for t in tables} == {"WRITE Append"}
    run_audiences(spark, cfg2, D2)
    assert snapshot() == before
    assert all(_version(spark, cfg2, t) == versions[t] + 1 for t in tables)  # one commit each
    assert {last_write(spark, cfg2, t) for t in tables} == {"WRITE Overwrite"}
    # and day 1 re-run after day 2 still diffs against nothing before it
    run_audiences(spark, cfg1, D1)
    assert sorted(c[2] for c in changes_of(spark, cfg1, D1) if c[0] == "high") == [1, 2, 3, 5]


def _version(spark, cfg, table):
    from delta.tables import DeltaTable

    from oneid.tables import table_path

    history = DeltaTable.forPath(spark, table_path(cfg, table)).history(1)
    return history.first().version


def test_stats_of_all_audiences_come_from_one_aggregation(spark):
    def counts_and_jobs(audiences):
        members = spark.createDataFrame(
            [(a, oneid, oneid == 2) for a in audiences for oneid in (1, 2, 3)],
            "audience_id string, oneid bigint, holdout boolean",
        )
        changes = spark.createDataFrame(
            [(a, 1, "entered") for a in audiences],
            "audience_id string, oneid bigint, change string",
        )
        tags = spark.createDataFrame(
            [(1, True), (2, False), (3, None)], "oneid bigint, opted_in boolean"
        )
        context = spark.sparkContext
        before = len(context.statusTracker().getJobIdsForGroup("count_stats"))
        context.setJobGroup("count_stats", "count_stats")
        try:
            counts = count_stats(members, changes, tags, ["opted_in"])
        finally:
            for key in ("spark.jobGroup.id", "spark.job.description"):
                context.setLocalProperty(key, None)  # None removes the property
        return counts, len(context.statusTracker().getJobIdsForGroup("count_stats")) - before

    one, jobs_one = counts_and_jobs(["a"])
    assert one == {
        ("a", "size", ""): 3,
        ("a", "holdout", ""): 1,
        ("a", "entered", ""): 1,
        ("a", "by:opted_in", "True"): 1,  # keys as Python's str() wrote them before
        ("a", "by:opted_in", "False"): 1,
        ("a", "by:opted_in", "(none)"): 1,
    }
    three, jobs_three = counts_and_jobs(["a", "b", "c"])
    assert three[("a", "overlap", "b")] == three[("c", "overlap", "a")] == 3
    assert three[("b", "size", "")] == 3
    assert jobs_one > 0  # the job group really saw count_stats' jobs
    assert jobs_three == jobs_one  # the Spark jobs do not grow with the audiences


def test_a_quiet_day_has_no_changes_and_publishes_empty_files(spark, two_days, tmp_path):
    """A day on which no audience changed is a day audiences ran: publish finds no change to
    send (and writes empty exports), not an error; a day audiences did not run is one."""
    _, cfg2, _, _ = two_days
    quiet = D2 + dt.timedelta(days=1)
    same = {1: 9, 3: 1, 4: 6, 6: 1, 7: 8, 9: 9}  # day 2's scores on the same OneIDs
    append(tags(spark, quiet, same), cfg2, "gold.tags_g", ("dt",))
    run_audiences(spark, cfg2, quiet)
    assert changes_of(spark, cfg2, quiet) == []
    day = DayChanges.read(spark, cfg2, quiet)
    assert (day.counts, day.rows.count()) == ({}, 0)
    # read once and kept: each destination's use of the rows scans no Delta table again
    plan = day.rows._jdf.queryExecution().optimizedPlan().toString()
    assert "LogicalRDD" in plan and "Relation" not in plan, plan
    counts: dict[str, int] = {}
    tencent = DestinationConf(kind="tencent_ads", audiences=("high",), id_types=("phone",))
    _write_platform(tencent, day.rows, _no_identifiers(spark), tmp_path, counts)
    assert counts == {"oneids_without_keys": 0} and not list(tmp_path.rglob("*.txt"))
    with pytest.raises(DataContractError, match="audiences did not run for 2025-07-02: run "):
        DayChanges.read(spark, cfg2, quiet + dt.timedelta(days=1))


def _no_identifiers(spark):
    return spark.createDataFrame([], "oneid long, id_type string, value string")


@pytest.mark.slow
def test_a_backfilled_day_names_the_later_day_whose_run_then_gives_the_in_order_tables(
    spark, tmp_path, caplog
):
    """Day 2 first, then day 1 (a backfill): day 1's run names day 2, whose changes were diffed
    against nothing; day 2 run again then diffs against day 1, as when the days ran in order."""
    day1 = {1: 9, 2: 7, 3: 6, 4: 1}
    day2 = {1: 9, 2: 1, 3: 6, 4: 8, 5: 9}
    tables, later = {}, {}
    for order in ((D1, D2), (D2, D1, D2)):
        folder = tmp_path / "-".join(d.isoformat() for d in order)
        cfg = config(folder, folder / "warehouse", mid_version=1, low_version=1)
        for day, scores in ((D1, day1), (D2, day2)):
            append(tags(spark, day, scores), cfg, "gold.tags_g", ("dt",))
        overwrite(oneids(spark, {**day1, **day2}), cfg, "identity.profiles")
        births = [("r1", "new", None, i, 1) for i in {**day1, **day2}]
        overwrite(lineage(spark, births), cfg, "identity.oneid_changes")
        with caplog.at_level("WARNING", logger="oneid.audiences.job"):
            later[order] = [run_audiences(spark, cfg, day).later for day in order]
        tables[order] = {
            day: (changes_of(spark, cfg, day), _sizes(spark, cfg, day)) for day in (D1, D2)
        }
    assert later == {(D1, D2): [None, None], (D2, D1, D2): [None, D2, None]}
    assert "the later day 2025-06-30 has snapshots whose changes were diffed" in caplog.text
    in_order, backfilled = tables[(D1, D2)], tables[(D2, D1, D2)]
    assert ("high", "exited", 2, None) in in_order[D2][0]
    assert backfilled == in_order


def _sizes(spark, cfg, day):
    stats = read_table(spark, cfg, "audience.stats").where(F.col("dt") == F.lit(day))
    return sorted((r.audience_id, r.metric, r.key, r.value) for r in stats.collect())
