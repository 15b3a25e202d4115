"""Identity: hub guard, per-type limits, stable OneIDs with lineage, incremental == full."""

from __future__ import annotations

import datetime as dt
import shutil
import zlib

import pytest
from pyspark.sql import functions as F

from oneid.checkpoint import ADAPTIVE, aggregated, materialize
from oneid.errors import DataContractError, GateFailedError, LimitExceededError
from oneid.identity.graph import (
    HELD,
    NODE_BITS,
    base_type,
    edges,
    held_rows,
    record_groups,
    record_pairs,
)
from oneid.identity.hubs import find_hubs, node_counts
from oneid.identity.job import demo_run_id, resolve_identities
from oneid.identity.outputs import profiles, record_oneids
from oneid.identity.publish import STATE_TABLES
from oneid.identity.stats import size_figures
from oneid.spark_settings import session_settings
from oneid.standardize.hashing import DEMO_KEY, HashKey, keyed_hash
from oneid.tables import overwrite, read_table, table_path, table_version
from tests.support import config_for, delta_records, shuffle_partitions

KEY = HashKey(DEMO_KEY, 0)
T0 = dt.datetime(2025, 1, 1)


def _silver(spark, cfg, records: dict[str, list[tuple[str, str, str]]]) -> None:
    """records: "source:key" -> [(id_type, normalised value, strength)] written as silver."""
    rows = []
    for record, identifiers in sorted(records.items()):
        source, key = record.split(":", 1)
        n = zlib.crc32(record.encode()) % 1000  # a record's time does not depend on the others
        for id_type, value, strength in identifiers:
            rows.append(
                (
                    source,
                    key,
                    id_type,
                    keyed_hash(KEY, value),
                    0,
                    value[:2] + "**",
                    strength,
                    "1",
                    T0 + dt.timedelta(hours=n),
                    "b",
                )
            )
    frame = spark.createDataFrame(
        rows,
        "source string, record_key string, id_type string, value_hash string, key_version int, "
        "masked string, strength string, normalizer_version string, event_time timestamp, "
        "batch_id string",
    )
    overwrite(frame, cfg, "silver.identifiers")


def _cfg(tmp_path, **identity):
    """Incremental at any size (these graphs are tiny), unless a test says otherwise."""
    settings = {"components": {"engine": "native"}, "incremental_min_identifiers": 0, **identity}
    return config_for(tmp_path, {"identity": settings})


def _rows(cfg, table: str) -> list[dict]:
    """An identity table's rows, read without Spark (the chains read every table per step)."""
    return delta_records(table_path(cfg, f"identity.{table}"))


def _oneid_of(spark, cfg) -> dict[str, int]:
    return {f"{r['source']}:{r['record_key']}": r["oneid"] for r in _rows(cfg, "record_oneid")}


def _changes(spark, cfg, run_id):
    rows = _rows(cfg, "oneid_changes")
    return sorted(
        (r["kind"], r["from_oneid"], r["to_oneid"]) for r in rows if r["run_id"] == run_id
    )


PERSON_A = {
    "crm:M1": [("member_id", "M1", "strong"), ("phone", "+8613800000001", "strong")],
    "wx:o1": [("wx_openid:app", "o1", "strong"), ("phone", "+8613800000001", "strong")],
}
PERSON_B = {
    "crm:M2": [("member_id", "M2", "strong"), ("phone", "+8613800000002", "strong")],
    "app:e1": [("member_id", "M2", "strong"), ("device:idfa", "D2", "weak")],
}


def test_hub_guard_cuts_a_shared_store_phone_and_audits_it(spark, tmp_path):
    cfg = _cfg(tmp_path, hubs={"max_records": {"phone": 3}, "max_member_ids": 1})
    store = "+8621000000000"
    records = {**PERSON_A, **PERSON_B}
    for i in range(4):  # guest orders of four strangers, all with the store's phone
        records[f"orders:O{i}"] = [("phone", store, "weak"), ("email", f"g{i}@x.cn", "weak")]
    records["orders:O9"] = [("member_id", "M1", "strong"), ("phone", store, "weak")]
    _silver(spark, cfg, records)
    resolve_identities(spark, cfg, "r1")
    ids = _oneid_of(spark, cfg)
    assert ids["crm:M1"] == ids["wx:o1"] == ids["orders:O9"]
    assert ids["crm:M2"] == ids["app:e1"] != ids["crm:M1"]
    assert len({ids[f"orders:O{i}"] for i in range(4)}) == 4  # strangers stay apart
    audit = read_table(spark, cfg, "identity.hub_audit").collect()
    assert [(r.rule, r.id_type, r.records, r.threshold) for r in audit] == [
        ("max_records", "phone", 5, 3)
    ]
    profile = (
        read_table(spark, cfg, "identity.profiles").where(F.col("oneid") == ids["crm:M1"]).first()
    )
    assert profile.identifier_counts == {"member_id": 1, "phone": 1, "wx_openid": 1}
    assert profile.best_phone == "+8**" and profile.sources == ["crm", "orders", "wx"]
    assert profile.records == 3


def test_event_records_count_once_per_set_of_identifiers(spark, tmp_path):
    """A phone a user logged in with is on each of their events: 30 events from one device are
    one piece of evidence for max_records; the same phone typed in 30 orders is a hub."""
    conf = _cfg(tmp_path, hubs={"max_records": {"phone": 20}}).pipeline.identity
    rows = [("app", f"e{i}", 1, "phone") for i in range(30)]
    rows += [("app", f"e{i}", 2, "device:idfa") for i in range(30)]
    rows += [("app", f"e{i}", 3, "device:idfa") for i in range(30, 35)]  # anonymous events
    rows += [("orders", f"o{i}", 4, "phone") for i in range(30)]
    rows += [("orders", "o0", 4, "phone")]  # one order with the phone in two columns
    incidence = spark.createDataFrame(
        rows, "source string, record_key string, node_id long, id_type string"
    ).select("*", F.lit("weak").alias("strength"), F.current_timestamp().alias("event_time"))
    nodes = incidence.select("node_id", "id_type", F.lit("h").alias("value_hash")).distinct()
    groups = record_groups(incidence)
    pairs = record_pairs(groups, ["app", "orders"])
    hubs = find_hubs(spark, groups, pairs, nodes, conf, KEY, event_sources=("app",))
    assert [(r.node_id, r.rule, r.records) for r in hubs.collect()] == [(4, "max_records", 30)]
    counted = find_hubs(spark, groups, pairs, nodes, conf, KEY)  # app as if it held orders
    assert sorted((r.node_id, r.records) for r in counted.collect()) == [(1, 30), (4, 30)]


def test_a_nodes_member_ids_are_the_distinct_member_ids_it_shares_a_record_with(spark):
    """Counted on the pairs of a record's nodes: a pair seen in two records counts once, a node
    held twice by a record once, a node never counts itself; a typed member id is a member id.
    With a scope, the counts of its nodes are the same."""
    held = {
        "r1": [(1, "member_id"), (9, "device:oaid")],
        "r2": [(1, "member_id"), (9, "device:oaid")],
        "r3": [(2, "member_id"), (9, "device:oaid"), (9, "device:oaid")],
        "r4": [(3, "member_id:app"), (2, "member_id"), (7, "phone")],
    }
    rows = [("app", r, n, t, "weak", T0) for r, nodes in held.items() for n, t in nodes]
    incidence = spark.createDataFrame(
        rows,
        "source string, record_key string, node_id long, id_type string, strength string, "
        "event_time timestamp",
    )
    groups = record_groups(incidence)
    counts = node_counts(groups, record_pairs(groups, ["app"]))
    got = {r.node_id: (r.records, r.member_ids) for r in counts.collect()}
    assert got == {1: (2, 0), 2: (2, 1), 3: (1, 1), 7: (1, 2), 9: (3, 2)}
    scope = spark.createDataFrame([(9,), (7,)], "node_id long")
    scoped = node_counts(groups, record_pairs(groups, ["app"], scope), scope)
    assert {r.node_id: (r.records, r.member_ids) for r in scoped.collect()} == {
        7: (1, 2),
        9: (3, 2),
    }


def test_member_id_rule_and_blocklist(spark, tmp_path):
    cfg = _cfg(tmp_path, blocklist={"phone": ["13900000000"]})
    records = {
        "crm:T1": [("member_id", "T1", "strong"), ("phone", "+8613900000000", "strong")],
        "crm:T2": [("member_id", "T2", "strong"), ("phone", "+8613900000000", "strong")],
        "app:f1": [("member_id", "M7", "strong"), ("device:oaid", "FAMILY", "weak")],
        "app:f2": [("member_id", "M8", "strong"), ("device:oaid", "FAMILY", "weak")],
    }
    _silver(spark, cfg, records)
    resolve_identities(spark, cfg, "r1")
    ids = _oneid_of(spark, cfg)
    assert len({ids["crm:T1"], ids["crm:T2"], ids["app:f1"], ids["app:f2"]}) == 4
    audit = read_table(spark, cfg, "identity.hub_audit").select("rule", "id_type", "member_ids")
    assert sorted(tuple(r) for r in audit.collect()) == [
        ("blocklist", "phone", 2),
        ("max_member_ids", "device:oaid", 2),
    ]


def test_weak_edge_over_a_limit_is_not_used(spark, tmp_path):
    cfg = _cfg(tmp_path, limits={"member_id": 1, "device": 5})
    records = {
        **PERSON_A,
        **PERSON_B,
        # a weak email edge that would put two member ids into one OneID
        "orders:X": [("phone", "+8613800000001", "weak"), ("email", "shared@x.cn", "weak")],
        "orders:Y": [("phone", "+8613800000002", "weak"), ("email", "shared@x.cn", "weak")],
    }
    _silver(spark, cfg, records)
    resolve_identities(spark, cfg, "r1")
    ids = _oneid_of(spark, cfg)
    assert ids["crm:M1"] != ids["crm:M2"]
    rules = {r.rule for r in read_table(spark, cfg, "identity.hub_audit").collect()}
    assert rules == {"limit:member_id"}


def _map(spark, cfg):
    return sorted((r["id_type"], r["value_hash"], r["oneid"]) for r in _rows(cfg, "oneid_map"))


# person A's phone typed on an order from person B's device: a weak bridge, not a hub
BRIDGE = {"orders:BR": [("phone", "+8613800000001", "weak"), ("device:idfa", "D2", "weak")]}
LENIENT = {
    "limits": {"device": 5},  # no member_id limit: the bridge may merge two members
    "hubs": {"shared_types": []},  # nor the shared-device rule (B's device, A's phone)
    "gates": {"max_multi_member_components": 5, "max_changed_share": 1.0},
}
LEAD = {"lead:L1": [("phone", "+8613800000009", "weak")]}
STEPS = [
    {**PERSON_A, **PERSON_B, **LEAD},
    {**PERSON_A, **PERSON_B, **LEAD, **BRIDGE},  # the bridge merges A and B
    {**PERSON_A, **PERSON_B, **LEAD},  # the bridging record is gone again: split
]


SNAPSHOT_TABLES = ("oneid_map", "record_oneid", "profiles", "edges", "hubs", "incidence")
SNAPSHOT_METRICS = (
    "identifiers",
    "oneids",
    "largest_component",
    "multi_member_components",
    "hubs",
    "records",
    "records_without_oneid",
    "changed_identifiers",
    "max_oneid",
)


def _snapshot(spark, cfg, run_id, report) -> dict:
    """Everything a run publishes, as sorted rows, plus how it ran."""
    tables = {
        name: sorted(str(sorted(r.items())) for r in _rows(cfg, name)) for name in SNAPSHOT_TABLES
    }
    [stats] = [r for r in _rows(cfg, "run_stats") if r["run_id"] == run_id]
    metrics = dict(stats["metrics"])
    return {
        "ids": _oneid_of(spark, cfg),
        "map": _map(spark, cfg),
        "changes": _changes(spark, cfg, run_id),
        "tables": tables,
        "metrics": {k: metrics[k] for k in SNAPSHOT_METRICS},
        "histogram": stats["size_histogram"],
        "full": report.full,
        "changed_records": report.stats["changed_records"],
        "recomputed": report.stats["recomputed_identifiers"],
    }


def _chains(spark, tmp_path_factory, steps, settings, on_spark) -> dict[str, list[dict]]:
    """The same batches resolved incrementally in one warehouse and --full in another.

    The chain named by ``on_spark`` resolves in pieces on Spark, the other on the driver
    (:mod:`oneid.identity.resolve`), so equal chains also hold the two paths equal.
    """
    results = {}
    for mode in ("incremental", "full"):
        local = {"local_max_identifiers": 0} if mode == on_spark else {}
        cfg = _cfg(tmp_path_factory.mktemp(mode), **settings, **local)
        snapshots = []
        for n, records in enumerate(steps, start=1):
            _silver(spark, cfg, records)
            report = resolve_identities(spark, cfg, f"r{n}", full=(mode == "full"))
            engine = report.stats["components_engine"]
            expected = ("native+pieces", "none") if local else ("driver", "none")
            assert engine in expected, (mode, engine)
            snapshots.append(_snapshot(spark, cfg, f"r{n}", report))
        results[mode] = snapshots
    return results


def _assert_same_chains(chains) -> None:
    incremental, full = chains["incremental"], chains["full"]
    assert [step["full"] for step in incremental] == [True] + [False] * (len(incremental) - 1)
    for n, (inc, ful) in enumerate(zip(incremental, full, strict=True), start=1):
        for key in ("map", "changes", "metrics", "histogram"):
            assert inc[key] == ful[key], (n, key)
        for name in SNAPSHOT_TABLES:
            assert inc["tables"][name] == ful["tables"][name], (n, name)


@pytest.fixture(scope="module")
def chains(spark, tmp_path_factory):
    return _chains(spark, tmp_path_factory, STEPS, LENIENT, on_spark="full")


@pytest.mark.slow
def test_merge_then_split_keep_stable_ids_with_lineage(chains):
    first, merged, split = chains["incremental"]
    a, b, lead = first["ids"]["crm:M1"], first["ids"]["crm:M2"], first["ids"]["lead:L1"]
    assert len({a, b, lead}) == 3
    assert first["changes"] == sorted([("new", None, a), ("new", None, b), ("new", None, lead)])

    oldest, younger = min(a, b), max(a, b)
    ids = merged["ids"]
    assert ids["crm:M1"] == ids["crm:M2"] == ids["orders:BR"] == oldest
    assert ids["lead:L1"] == lead  # an untouched person keeps its id
    assert merged["changes"] == [("merge", younger, oldest)]

    ids = split["ids"]
    minted = max(a, b, lead) + 1  # ids are never reused: the part that loses gets a new one
    assert {ids["crm:M1"], ids["crm:M2"]} == {oldest, minted}
    assert split["changes"] == [("split", oldest, minted)]


@pytest.mark.slow
def test_incremental_chain_equals_full_rebuilds(chains):
    incremental = [step["map"] for step in chains["incremental"]]
    full = [step["map"] for step in chains["full"]]
    assert incremental == full
    assert incremental[0] != incremental[1] != incremental[2]  # the chain really changed
    _assert_same_chains(chains)  # every published table, lineage and figure too
    # only the bridging record changed, in and out again
    assert [step["changed_records"] for step in chains["incremental"][1:]] == [1, 1]


def test_failed_gate_publishes_nothing(spark, tmp_path):
    cfg = _cfg(tmp_path, gates={"max_component_identifiers": 2})
    _silver(spark, cfg, PERSON_A)
    with pytest.raises(GateFailedError, match="max_component_identifiers"):
        resolve_identities(spark, cfg, "r1")
    from oneid.tables import table_exists

    assert not table_exists(spark, cfg, "identity.oneid_map")
    stats = read_table(spark, cfg, "identity.run_stats").first()
    assert stats.passed is False and stats.gates["max_component_identifiers"].startswith("FAIL")


STORE = "+8621000000000"
GUESTS = {
    f"orders:O{i}": [("phone", STORE, "weak"), ("email", f"g{i}@x.cn", "weak")] for i in (1, 2)
}
MORE_GUESTS = {
    f"orders:O{i}": [("phone", STORE, "weak"), ("email", f"g{i}@x.cn", "weak")] for i in (3, 4)
}
MEMBER_3 = {"crm:M3": [("member_id", "M3", "strong"), ("email", "m3@x.cn", "weak")]}
MEMBER_3_NEW_EMAIL = {"crm:M3": [("member_id", "M3", "strong"), ("email", "m3@y.cn", "weak")]}
HUB_STEPS = [
    {**PERSON_A, **GUESTS, **LEAD, **MEMBER_3},
    # two more guest orders make the store phone a hub (4 records > 3); the lead is deleted;
    # member 3 changes email
    {**PERSON_A, **GUESTS, **MORE_GUESTS, **MEMBER_3_NEW_EMAIL},
    # the two orders are gone again: the store phone is no hub any more
    {**PERSON_A, **GUESTS, **MEMBER_3_NEW_EMAIL},
]


@pytest.fixture(scope="module")
def hub_chains(spark, tmp_path_factory):
    settings = {"hubs": {"max_records": {"phone": 3}}, "gates": {"max_changed_share": 1.0}}
    return _chains(spark, tmp_path_factory, HUB_STEPS, settings, on_spark="incremental")


@pytest.mark.slow
def test_hub_changes_removed_and_changed_records_equal_full_rebuilds(hub_chains):
    _assert_same_chains(hub_chains)
    first, hub, unhub = hub_chains["incremental"]
    assert [step["changed_records"] for step in (hub, unhub)] == [4, 2]
    guests = [f"orders:O{i}" for i in (1, 2)]
    together = first["ids"]["orders:O1"]
    assert first["ids"]["orders:O2"] == together  # linked by the store phone

    # the store phone became a hub: four guests, four OneIDs; one guest keeps the shared id
    assert len({hub["ids"][f"orders:O{i}"] for i in range(1, 5)}) == 4
    assert [r for r in hub["tables"]["hubs"] if "max_records" in r] == hub["tables"]["hubs"]
    assert len(hub["tables"]["hubs"]) == 1
    kept = [g for g in guests if hub["ids"][g] == together]
    assert len(kept) == 1
    split_off = hub["ids"][guests[1 - guests.index(kept[0])]]
    # the deleted lead's phone is in no record any more: it leaves the map, its OneID retires
    lead, member = first["ids"]["lead:L1"], first["ids"]["crm:M3"]
    assert ("retire", lead, None) in hub["changes"]
    assert (("phone", keyed_hash(KEY, "+8613800000009"))) not in {m[:2] for m in hub["map"]}
    # member 3 keeps its OneID; the old email left with the changed record
    assert hub["ids"]["crm:M3"] == member
    emails = {m[1]: m[2] for m in hub["map"] if m[0] == "email"}
    assert keyed_hash(KEY, "m3@x.cn") not in emails
    assert emails[keyed_hash(KEY, "m3@y.cn")] == member
    assert ("split", together, split_off) in hub["changes"]

    # no longer a hub: the two guests are one person again under the older id
    assert unhub["ids"]["orders:O1"] == unhub["ids"]["orders:O2"] == together
    assert unhub["tables"]["hubs"] == []
    assert ("merge", split_off, together) in unhub["changes"]
    retired = {r[1] for r in unhub["changes"] if r[0] == "retire"}
    assert retired == {hub["ids"]["orders:O3"], hub["ids"]["orders:O4"]}


# person A orders twice more with identifiers it already has together: no edge is new
REPEATS = {
    "orders:A1": [("member_id", "M1", "strong"), ("phone", "+8613800000001", "strong")],
    "orders:A2": [("phone", "+8613800000001", "weak"), ("wx_openid:app", "o1", "weak")],
}
# person B's device seen on a record where it is strong: the member-device edge turns strong
B_STRONG_DEVICE = {"app:e2": [("member_id", "M2", "strong"), ("device:idfa", "D2", "strong")]}
LINEAGE_STEPS = [
    {**PERSON_A, **PERSON_B, **LEAD},
    {**PERSON_A, **PERSON_B, **LEAD, **REPEATS},
    # one repeat order is gone again; B's edge changes strength
    {**PERSON_A, **PERSON_B, **LEAD, "orders:A2": REPEATS["orders:A2"], **B_STRONG_DEVICE},
]


@pytest.fixture(scope="module")
def lineage_chains(spark, tmp_path_factory):
    settings = {"gates": {"max_changed_share": 1.0}}
    return _chains(spark, tmp_path_factory, LINEAGE_STEPS, settings, on_spark="full")


@pytest.mark.slow
def test_records_that_change_no_edge_recompute_no_component(lineage_chains):
    _assert_same_chains(lineage_chains)  # record_oneid, profiles, edge lineage equal --full
    first, repeats, strength = lineage_chains["incremental"]
    a = first["ids"]["crm:M1"]
    assert repeats["ids"]["orders:A1"] == repeats["ids"]["orders:A2"] == a
    assert (repeats["changed_records"], repeats["recomputed"], repeats["changes"]) == (2, 0, [])
    profile = [r for r in repeats["tables"]["profiles"] if f"('oneid', {a})" in r]
    assert "('records', 4)" in profile[0]  # the profile counts the new records all the same
    # a strength change is a change of the graph: B's three identifiers are recomputed
    assert (strength["changed_records"], strength["recomputed"]) == (2, 3)
    assert strength["ids"]["app:e2"] == first["ids"]["crm:M2"] and strength["changes"] == []


@pytest.mark.slow
def test_a_run_without_changes_recomputes_nothing(spark, tmp_path):
    cfg = _cfg(tmp_path)
    _silver(spark, cfg, {**PERSON_A, **PERSON_B})
    resolve_identities(spark, cfg, "r1")
    before = _map(spark, cfg)
    report = resolve_identities(spark, cfg, "r2")
    assert (report.full, report.stats["changed_records"]) == (False, 0)
    assert report.stats["recomputed_identifiers"] == 0 and report.changes == {}
    assert _map(spark, cfg) == before


@pytest.mark.slow
def test_a_silver_table_written_anew_is_compared_row_by_row(spark, tmp_path):
    """silver.identifiers deleted and written again (a rebuilt or restored warehouse) numbers
    its commits from 0 again: the next run does not take that table's change feed for what
    changed since the version the last run read; it finds the changes by the join with silver."""
    cfg = _cfg(tmp_path)
    _silver(spark, cfg, PERSON_A)
    resolve_identities(spark, cfg, "r1")
    shutil.rmtree(table_path(cfg, "silver.identifiers"))
    _silver(spark, cfg, {**PERSON_A, **PERSON_B})  # version 0 again, of another table
    report = resolve_identities(spark, cfg, "r2")
    assert (report.full, report.stats["changes_from"]) == (False, "silver join")
    assert report.stats["changed_records"] == len(PERSON_B)
    assert set(_oneid_of(spark, cfg)) == set(PERSON_A) | set(PERSON_B)


def test_a_graph_below_the_incremental_size_is_rebuilt_in_full(spark, tmp_path, caplog):
    cfg = _cfg(tmp_path, incremental_min_identifiers=100)
    _silver(spark, cfg, {**PERSON_A, **PERSON_B})
    resolve_identities(spark, cfg, "r1")
    before = _map(spark, cfg)
    with caplog.at_level("INFO", logger="oneid.identity.incremental"):
        report = resolve_identities(spark, cfg, "r2")
    assert report.full is True and report.stats["changed_records"] == 4
    assert "fewer than identity.incremental_min_identifiers = 100" in caplog.text
    assert _map(spark, cfg) == before


def test_changed_identity_settings_force_a_full_rebuild(spark, tmp_path):
    lenient = {"gates": {"max_changed_share": 1.0}}
    cfg = _cfg(tmp_path, **lenient)
    _silver(spark, cfg, {**PERSON_A, **PERSON_B})
    resolve_identities(spark, cfg, "r1")
    stricter = _cfg(tmp_path, hubs={"max_records": {"phone": 1}}, **lenient)
    report = resolve_identities(spark, stricter, "r2")
    assert report.full is True
    assert report.stats["hubs"] == 1  # the phone of person A's two records is now a hub


def test_profile_best_phone_counts_and_dates(spark):
    """Best phone: most records, then most recently seen; counts per base type; seen range."""
    t = [T0 + dt.timedelta(days=d) for d in range(4)]
    incidence = spark.createDataFrame(
        [
            ("crm", "r1", 1, "phone", t[0]),  # phone 1: two records, seen last on day 1
            ("orders", "r2", 1, "phone", t[1]),
            ("orders", "r3", 2, "phone", t[3]),  # phone 2: one record, the latest
            ("crm", "r1", 3, "device:idfa", t[2]),
            ("app", "r4", 4, "phone", t[0]),  # OneID 8: two phones seen once each; the newer wins
            ("app", "r5", 5, "phone", t[2]),
            ("crm", "r1", 6, "phone", t[0]),  # a hub: no OneID, in no profile
        ],
        "source string, record_key string, node_id long, id_type string, event_time timestamp",
    )
    mapping = spark.createDataFrame(
        [(1, 7), (2, 7), (3, 7), (4, 8), (5, 8)], "node_id long, oneid long"
    )
    nodes = spark.createDataFrame(
        [
            (1, "phone", "p1"),
            (2, "phone", "p2"),
            (3, "device:idfa", "d3"),
            (4, "phone", "p4"),
            (5, "phone", "p5"),
            (6, "phone", "p6"),
        ],
        "node_id long, id_type string, masked string",
    )
    records = spark.createDataFrame(
        [
            ("crm", "r1", 7),
            ("orders", "r2", 7),
            ("orders", "r3", 7),
            ("app", "r4", 8),
            ("app", "r5", 8),
        ],
        "source string, record_key string, oneid long",
    )
    rows = {r.oneid: r for r in profiles(incidence, mapping, nodes, records).collect()}
    assert set(rows) == {7, 8}  # the hub's row joins no profile and makes none
    assert (rows[7].best_phone, rows[7].best_email, rows[8].best_phone) == ("p1", None, "p5")
    assert rows[7].identifier_counts == {"device": 1, "phone": 2}
    assert (rows[7].first_seen, rows[7].last_seen, rows[8].last_seen) == (t[0], t[3], t[2])
    assert (rows[7].sources, rows[7].records) == (["crm", "orders"], 3)


def test_a_records_oneid_is_its_highest_priority_identifiers_then_the_smallest_node(spark):
    """Priority first (a type not in it last), then the smallest node id among equals; a node
    without a OneID (a hub) is passed over; node ids up to 2**48 - 1 keep their order."""
    big = 2**40
    incidence = spark.createDataFrame(
        [
            ("crm", "r1", big + 2, "phone"),  # r1: two phones, the smaller id wins
            ("crm", "r1", big + 1, "phone"),
            ("crm", "r1", 3, "device:idfa"),
            ("crm", "r2", 4, "member_id"),  # r2: the member id is a hub, the phone decides
            ("crm", "r2", big + 2, "phone"),
            ("crm", "r3", 3, "device:idfa"),  # r3: only types outside the priority
            ("crm", "r3", 5, "wx_openid:app"),
            ("crm", "r4", 4, "member_id"),  # r4: nothing with a OneID
            ("crm", "r5", 2**48 - 1, "member_id"),  # r5: the largest id, first in priority
            ("crm", "r5", 6, "phone"),
        ],
        "source string, record_key string, node_id long, id_type string",
    )
    mapping = spark.createDataFrame(
        [(big + 1, 10), (big + 2, 20), (3, 30), (5, 50), (2**48 - 1, 60), (6, 70)],
        "node_id long, oneid long",
    )
    rows = record_oneids(incidence, mapping, ("member_id", "phone", "wx_openid"))
    picked = {r.record_key: r.oneid for r in rows.collect()}
    assert picked == {"r1": 10, "r2": 20, "r3": 50, "r5": 60}


def test_records_pick_their_oneid_from_their_grouped_rows_without_a_shuffle(spark):
    """A full run picks each record's OneID from the records it grouped, checkpointed with
    their partitioning: the picks of the incidence rows, with no shuffle, also under adaptive
    execution (production's)."""
    rows = [
        ("app", f"r{i % 4}", i, "phone" if i % 2 else "member_id", "weak", T0) for i in range(10)
    ]
    incidence = spark.createDataFrame(
        rows,
        "source string, record_key string, node_id long, id_type string, strength string, "
        "event_time timestamp",
    )
    mapping = spark.createDataFrame(  # node 0 has no OneID (a hub); sent to every task
        [(i, 100 + i // 3) for i in range(1, 10)], "node_id long, oneid long"
    )
    priority = ("member_id", "phone")
    with session_settings(spark, {ADAPTIVE: "true"}), shuffle_partitions(spark, 2):
        groups, _ = aggregated(record_groups(incidence), F.count(F.lit(1)), partitioned=True)
        picked = record_oneids(held_rows(groups), F.broadcast(mapping), priority)  # as a run
        plan = picked._jdf.queryExecution().executedPlan().toString()
        assert "Exchange hashpartitioning" not in plan, plan
        got = {r.record_key: r.oneid for r in picked.collect()}
    assert got == {"r0": 101, "r1": 100, "r2": 100, "r3": 101}
    assert got == {
        r.record_key: r.oneid for r in record_oneids(incidence, mapping, priority).collect()
    }


def test_an_identifiers_base_type_is_the_part_before_its_first_colon(spark):
    values = ["phone", "wx_openid:app", "device:idfa:v2", "member_id:", ":x", "", None]
    frame = spark.createDataFrame([(v,) for v in values], "id_type string")
    got = [r.t for r in frame.select(base_type().alias("t")).collect()]
    assert got == ["phone", "wx_openid", "device", "member_id", "", "", None]


def test_records_are_grouped_in_one_sort_streamed_into_their_arrays(spark):
    """The grouping by record sorts the rows once and builds each record's array while reading
    them in order, not in Spark's object aggregation (a sort before the shuffle and another
    after it); every row is still held by its record, whole."""
    rows = [("app", f"r{i % 3}", i, "phone", "weak", T0 + dt.timedelta(days=i)) for i in range(7)]
    incidence = spark.createDataFrame(
        rows,
        "source string, record_key string, node_id long, id_type string, strength string, "
        "event_time timestamp",
    )
    groups = record_groups(incidence)
    plan = groups._jdf.queryExecution().executedPlan().toString()
    assert "SortAggregate" in plan and "ObjectHashAggregate" not in plan, plan
    assert plan.count("Sort [") == 1 and plan.count("Exchange") == 1, plan
    held = {r.record_key: sorted(h.node_id for h in r[HELD]) for r in groups.collect()}
    assert held == {"r0": [0, 3, 6], "r1": [1, 4], "r2": [2, 5]}
    # every column comes back: a full run keeps its incidence rows only as grouped
    assert sorted(held_rows(groups).collect()) == sorted(incidence.collect())


def test_an_edges_sources_span_words_of_bits_in_a_hash_aggregation(spark):
    """An edge lists the sources of its records, sorted: kept as bits of longs (130 sources span
    three words), so the pairs are grouped in a hash map, not sorted; a source not given stops
    the job rather than vanish from the lineage."""
    sources = [f"s{i:03d}" for i in range(130)]
    held = [("s129", 1, "strong"), ("s000", 1, "weak"), ("s064", 1, "weak"), ("s005", 3, "weak")]
    rows = []
    for source, node, strength in held:  # each record holds node 2 and one other
        record = f"r-{source}"
        rows += [
            (source, record, 2, "phone", strength, T0),
            (source, record, node, "email", strength, T0),
        ]
    incidence = spark.createDataFrame(
        rows,
        "source string, record_key string, node_id long, id_type string, strength string, "
        "event_time timestamp",
    )
    groups = materialize(record_groups(incidence))
    no_hubs = spark.createDataFrame([], "node_id long")
    graph = edges(record_pairs(groups, sources), no_hubs)
    plan = graph._jdf.queryExecution().executedPlan().toString()
    assert "HashAggregate" in plan and "SortAggregate" not in plan and "ObjectHash" not in plan
    got = {(r.src, r.dst): (r.strength, r.sources, r.records) for r in graph.collect()}
    assert got == {
        (1, 2): ("strong", ["s000", "s064", "s129"], 3),
        (2, 3): ("weak", ["s005"], 1),
    }
    with pytest.raises(Exception, match="no bit for source s129"):
        record_pairs(groups, sources[:-1]).collect()


def test_node_ids_past_the_bound_of_a_records_pick_stop_the_run(spark, tmp_path):
    """Node ids must stay below 2**NODE_BITS for a record's pick: the dictionary is not
    extended past it (and is extended up to it)."""
    from oneid.identity.plan import extend_nodes

    cfg = _cfg(tmp_path)
    largest = (1 << NODE_BITS) - 3
    overwrite(
        spark.createDataFrame(
            [(largest, "phone", "h0", "p0", T0, "r1")],
            "node_id long, id_type string, value_hash string, masked string, "
            "first_seen timestamp, first_run string",
        ),
        cfg,
        "identity.nodes",
    )

    def silver(count: int):
        rows = [("phone", f"h{i}", f"p{i}", T0) for i in range(1, count + 1)]
        return spark.createDataFrame(
            rows, "id_type string, value_hash string, masked string, event_time timestamp"
        )

    def node_ids() -> set[int]:
        return {r.node_id for r in read_table(spark, cfg, "identity.nodes").collect()}

    with pytest.raises(LimitExceededError, match="past 2\\*\\*48"):
        extend_nodes(spark, cfg, silver(3), "r2")  # ids up to 2**48: one too many
    assert node_ids() == {largest}  # nothing appended
    _, bound = extend_nodes(spark, cfg, silver(2), "r3")  # up to 2**48 - 1
    assert bound == (1 << NODE_BITS) - 1
    assert node_ids() == {largest, largest + 1, largest + 2}


def test_a_heavy_buyers_member_id_is_no_hub_and_a_cut_account_key_is_a_warning(spark, tmp_path):
    """Issue 17 item 7: the default record limit (200) cut a member id with 250 orders."""
    from argparse import Namespace

    from oneid.stages import registered_stages

    records = {**PERSON_A}
    for i in range(250):  # one loyal member's orders
        records[f"orders:O{i}"] = [("member_id", "M1", "strong")]
    stage = {s.name: s for s in registered_stages()}["identity"]

    cfg = _cfg(tmp_path / "a")
    _silver(spark, cfg, records)
    result = stage.run(spark, cfg, Namespace(run_id="r1", full=False))
    ids = _oneid_of(spark, cfg)
    assert len({ids[record] for record in records}) == 1  # one customer, all linked
    assert _rows(cfg, "hub_audit") == []
    assert not any("WARNING" in note for note in result.notes)

    cfg = _cfg(tmp_path / "b", hubs={"max_records": {"member_id": 100}})  # said on purpose
    _silver(spark, cfg, records)
    result = stage.run(spark, cfg, Namespace(run_id="r1", full=False))
    [audit] = _rows(cfg, "hub_audit")
    assert (audit["rule"], audit["id_type"], audit["threshold"]) == (
        "max_records",
        "member_id",
        100,
    )
    [stats] = _rows(cfg, "run_stats")
    assert dict(stats["metrics"])["account_keys_cut"] == "1"
    assert [note for note in result.notes if note.startswith("WARNING")] == [
        "WARNING: 1 account key(s) (identity.hubs.account_types) cut as hubs: those customers "
        "link nothing (identity.hub_audit)"
    ]


def test_size_figures_count_each_bucket_in_one_pass(spark):
    sizes = spark.createDataFrame(
        [
            (i, n, members)
            for i, (n, members) in enumerate(
                [(1, 0), (2, 1), (3, 2), (5, 0), (6, 1), (10, 3), (11, 0), (50, 0), (51, 2)],
                start=1,
            )
        ],
        "oneid long, n long, members long",
    )
    assert size_figures(sizes) == {
        "identifiers": 139,
        "oneids": 9,
        "largest_component": 51,
        "multi_member_components": 3,
        "max_oneid": 9,
        "histogram": {"1": 1, "2": 1, "3-5": 2, "6-10": 2, "11-50": 2, ">50": 1},
    }
    assert size_figures(sizes.limit(0))["histogram"] == {}


@pytest.mark.slow
def test_a_published_run_id_again_writes_nothing_unless_its_result_would_differ(spark, tmp_path):
    """A retry after success (a scheduler that lost the task's exit, `make demo` run twice)
    writes nothing and reports the published run; a run id whose result would differ now
    (settings or silver changed since, later runs published) is refused."""
    cfg = _cfg(tmp_path)
    _silver(spark, cfg, PERSON_A)
    first = resolve_identities(spark, cfg, "r1")
    tables = [f"identity.{name}" for name in (*STATE_TABLES, "run_stats")]
    versions = [table_version(spark, cfg, name) for name in tables]
    again = resolve_identities(spark, cfg, "r1")
    assert (again.skipped, again.full, again.changes) == ("already published", True, {})
    assert again.stats == first.stats
    assert [table_version(spark, cfg, name) for name in tables] == versions
    stricter = _cfg(tmp_path, hubs={"max_records": {"phone": 1}})
    with pytest.raises(DataContractError, match="r1 already published and the identity settings"):
        resolve_identities(spark, stricter, "r1")
    _silver(spark, cfg, {**PERSON_A, **PERSON_B})
    with pytest.raises(DataContractError, match=r"r1 already published and silver\.identifiers"):
        resolve_identities(spark, cfg, "r1")
    assert resolve_identities(spark, cfg, "r2").skipped == ""
    with pytest.raises(DataContractError, match="r1 already published and later runs"):
        resolve_identities(spark, cfg, "r1")


@pytest.mark.slow
def test_the_demos_run_id_is_its_last_runs_until_something_changes(spark, tmp_path):
    """`oneid demo` names its identity run: run again on the same state it finds its run done;
    after a change of settings (or silver) it runs anew as the next demo-N, never refused."""
    lenient = {"gates": {"max_changed_share": 1.0}}
    cfg = _cfg(tmp_path, **lenient)
    _silver(spark, cfg, PERSON_A)
    assert demo_run_id(spark, cfg) == "demo-1"
    resolve_identities(spark, cfg, "demo-1")
    assert demo_run_id(spark, cfg) == "demo-1"
    stricter = _cfg(tmp_path, hubs={"max_records": {"phone": 1}}, **lenient)
    assert demo_run_id(spark, stricter) == "demo-2"
    resolve_identities(spark, stricter, "demo-2")
    assert demo_run_id(spark, cfg) == "demo-3"  # back to the first settings: a new run
