"""Identity: hub guard, per-type limits, stable OneIDs with lineage, incremental == full."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from oneid.errors import GateFailedError
from oneid.identity.job import resolve_identities
from oneid.standardize.hashing import DEMO_KEY, HashKey, keyed_hash
from oneid.tables import overwrite, read_table
from tests.support import config_for

pytestmark = pytest.mark.unit

KEY = HashKey(DEMO_KEY, 0)
T0 = dt.datetime(2025, 1, 1)


def _silver(spark, cfg, records: dict[str, list[tuple[str, str, str]]]) -> None:
    """records: "source:key" -> [(id_type, normalised value, strength)] written as silver."""
    rows = []
    for n, (record, identifiers) in enumerate(sorted(records.items())):
        source, key = record.split(":", 1)
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
    return config_for(
        tmp_path,
        {"identity": {"components": {"engine": "native"}, **identity}},
    )


def _oneid_of(spark, cfg) -> dict[str, int]:
    rows = read_table(spark, cfg, "identity.record_oneid").collect()
    return {f"{r.source}:{r.record_key}": r.oneid for r in rows}


def _changes(spark, cfg, run_id):
    rows = read_table(spark, cfg, "identity.oneid_changes").where(F.col("run_id") == run_id)
    return sorted((r.kind, r.from_oneid, r.to_oneid) for r in rows.collect())


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
    rows = read_table(spark, cfg, "identity.oneid_map").select("id_type", "value_hash", "oneid")
    return sorted(tuple(r) for r in rows.collect())


# person A's phone typed on an order from person B's device: a weak bridge, not a hub
BRIDGE = {"orders:BR": [("phone", "+8613800000001", "weak"), ("device:idfa", "D2", "weak")]}
LENIENT = {
    "limits": {"device": 5},  # no member_id limit: the bridge may merge two members
    "gates": {"max_multi_member_components": 5, "max_changed_share": 1.0},
}
LEAD = {"lead:L1": [("phone", "+8613800000009", "weak")]}
STEPS = [
    {**PERSON_A, **PERSON_B, **LEAD},
    {**PERSON_A, **PERSON_B, **LEAD, **BRIDGE},  # the bridge merges A and B
    {**PERSON_A, **PERSON_B, **LEAD},  # the bridging record is gone again: split
]


@pytest.fixture(scope="module")
def chains(spark, tmp_path_factory):
    """The same three batches resolved incrementally in one warehouse and --full in another."""
    results = {}
    for mode in ("incremental", "full"):
        cfg = _cfg(tmp_path_factory.mktemp(mode), **LENIENT)
        steps = []
        for n, records in enumerate(STEPS, start=1):
            _silver(spark, cfg, records)
            resolve_identities(spark, cfg, f"r{n}", full=(mode == "full"))
            steps.append(
                {
                    "ids": _oneid_of(spark, cfg),
                    "map": _map(spark, cfg),
                    "changes": _changes(spark, cfg, f"r{n}"),
                }
            )
        results[mode] = steps
    return results


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


def test_incremental_chain_equals_full_rebuilds(chains):
    incremental = [step["map"] for step in chains["incremental"]]
    full = [step["map"] for step in chains["full"]]
    assert incremental == full
    assert incremental[0] != incremental[1] != incremental[2]  # the chain really changed


def test_failed_gate_publishes_nothing(spark, tmp_path):
    cfg = _cfg(tmp_path, gates={"max_component_identifiers": 2})
    _silver(spark, cfg, PERSON_A)
    with pytest.raises(GateFailedError, match="max_component_identifiers"):
        resolve_identities(spark, cfg, "r1")
    from oneid.tables import table_exists

    assert not table_exists(spark, cfg, "identity.oneid_map")
    stats = read_table(spark, cfg, "identity.run_stats").first()
    assert stats.passed is False and stats.gates["max_component_identifiers"].startswith("FAIL")
