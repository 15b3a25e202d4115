"""serve-sync from a real (small) warehouse: identity runs that merge and then split two
people, and then lose the records of one of them and of a lead; tags and audiences of a day;
look-ups through the API after each sync."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fastapi.testclient import TestClient

from oneid.conf import load_config
from oneid.conf.models import ApiKeyConf
from oneid.conf.pipeline import IdentityConf
from oneid.serve.auth import new_key
from oneid.serve.server import build_app
from oneid.serve.settings import open_store, sqlite_dir
from oneid.serve.sync import sync_store
from oneid.tables import overwrite, read_table
from tests.support import CONF_DIR
from tests.test_identity import LENIENT, PERSON_A, PERSON_B, STEPS, _cfg, _oneid_of, _silver

pytestmark = pytest.mark.slow

AS_OF = dt.date(2025, 6, 30)
PHONE_A, PHONE_B = "138 0000 0001", "+86 138-0000-0002"  # raw, as a clerk types them


def _with_key(cfg, scopes=("lookup", "profile:read")):
    key, digest = new_key()
    clerk = ApiKeyConf(name="clerk_app", sha256=digest, scopes=scopes)
    serve = cfg.env.serve.model_copy(update={"api_keys": (clerk,)})
    return cfg.model_copy(update={"env": cfg.env.model_copy(update={"serve": serve})}), key


def _lookup(client, key, id_type, value) -> int | None:
    answer = client.post(
        "/v1/lookup", json={"id_type": id_type, "value": value}, headers={"X-API-Key": key}
    )
    assert answer.status_code in (200, 404), answer.text
    return answer.json()["oneid"] if answer.status_code == 200 else None


def _day_tables(spark, cfg, ids: dict[str, int]) -> None:
    """A tag table and an audience of AS_OF (two days of membership) over the chain's OneIDs."""
    a, lead = ids["crm:M1"], ids["lead:L1"]
    day0 = AS_OF - dt.timedelta(days=1)
    tags = spark.createDataFrame(
        [(a, "high", 3, AS_OF), (lead, "low", None, AS_OF), (a, "low", 1, day0)],
        "oneid long, value_tier string, order_count_lifetime bigint, dt date",
    )
    overwrite(tags, cfg, "gold.tags_value", ("dt",))
    membership = spark.createDataFrame(
        [("vip", 1, a, False, day0), ("vip", 1, a, False, AS_OF), ("new", 2, lead, True, AS_OF)],
        "audience_id string, version int, oneid long, holdout boolean, dt date",
    )
    overwrite(membership, cfg, "audience.membership", ("audience_id", "dt"))
    changes = spark.createDataFrame(
        [("new", 2, lead, "entered", None, True, AS_OF)],
        "audience_id string, version int, oneid long, change string, from_oneid long, "
        "holdout boolean, dt date",
    )
    overwrite(changes, cfg, "audience.changes", ("dt",))


def _gone_records(steps: list[dict]) -> dict:
    """r4: the records of the person who kept the merged OneID in r3, and the lead's, are
    gone (deleted or erased): both OneIDs retire, the first after a split."""
    kept = min(steps[0]["ids"]["crm:M1"], steps[0]["ids"]["crm:M2"])
    return PERSON_B if steps[2]["ids"]["crm:M1"] == kept else PERSON_A


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory, monkeypatch_module):
    """Per identity run r1 (three people), r2 (A and B merge), r3 (they split again), r4 (one
    of them and the lead are gone): the record → OneID map, the sync reports, the look-ups
    and profiles the API answered, and what it answered for OneIDs of earlier runs."""
    from oneid.identity.job import resolve_identities

    monkeypatch_module.delenv("ONEID_HMAC_KEY", raising=False)  # the demo key, as the chain
    # each run rebuilds in full, the default on a graph this small: an incremental run
    # publishes the same tables (test_identity's chains hold them equal) at ~3x the Spark jobs
    full = {"incremental_min_identifiers": IdentityConf().incremental_min_identifiers}
    cfg = _cfg(tmp_path_factory.mktemp("serve_chain"), **LENIENT, **full)
    registry = load_config("local", CONF_DIR).pipeline.tags  # gold.tags_value is one of its tables
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"tags": registry})})
    cfg, key = _with_key(cfg)
    steps: list[dict] = []
    for n in range(1, len(STEPS) + 2):
        _silver(spark, cfg, STEPS[n - 1] if n <= len(STEPS) else _gone_records(steps))
        resolve_identities(spark, cfg, f"r{n}")
        ids = _oneid_of(spark, cfg)
        as_of = None
        if n >= len(STEPS):
            if n == len(STEPS):
                _day_tables(spark, cfg, ids)
            as_of = AS_OF
        report = sync_store(spark, cfg, as_of)
        with TestClient(build_app(cfg)) as client:
            found = {
                "A": _lookup(client, key, "phone", PHONE_A),
                "B": _lookup(client, key, "phone", PHONE_B),
                "M2": _lookup(client, key, "member_id", "M2"),
                "lead": _lookup(client, key, "phone", "13800000009"),
            }
            profiles = {
                oneid: client.get(f"/v1/profiles/{oneid}", headers={"X-API-Key": key}).json()
                for oneid in set(ids.values())
            }
            earlier = {o for step in steps for o in step["ids"].values()} - set(ids.values())
            gone = {}
            for oneid in earlier:
                answer = client.get(f"/v1/profiles/{oneid}", headers={"X-API-Key": key})
                gone[oneid] = (answer.status_code, answer.json())
        steps.append(
            {"ids": ids, "report": report, "found": found, "profiles": profiles, "gone": gone}
        )
    return {"cfg": cfg, "key": key, "steps": steps}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_look_ups_follow_the_merge_and_the_split(chain):
    first, merged, split, _ = chain["steps"]
    a, b, lead = (first["ids"][k] for k in ("crm:M1", "crm:M2", "lead:L1"))
    assert first["found"] == {"A": a, "B": b, "M2": b, "lead": lead}
    oldest = min(a, b)
    assert merged["found"] == {"A": oldest, "B": oldest, "M2": oldest, "lead": lead}
    # the split: each phone answers the OneID identity gave its member's records
    ids = split["ids"]
    assert split["found"] == {
        "A": ids["crm:M1"],
        "B": ids["crm:M2"],
        "M2": ids["crm:M2"],
        "lead": lead,
    }
    assert ids["crm:M1"] != ids["crm:M2"] and oldest in (ids["crm:M1"], ids["crm:M2"])


def test_a_retired_oneid_answers_with_the_one_it_merged_into(chain):
    first, merged, split, _ = chain["steps"]
    a, b = first["ids"]["crm:M1"], first["ids"]["crm:M2"]
    oldest, younger = min(a, b), max(a, b)
    cfg = chain["cfg"]
    store = open_store(cfg)
    try:
        assert store.current().version == chain["steps"][-1]["report"].version
    finally:
        store.close()
    # in the merged version (r2), the younger id was retired into the oldest
    answer = merged["profiles"][oldest]
    assert answer["oneid"] == oldest and answer["merged_into"] is None
    assert sorted(i["id_type"] for i in answer["identifiers"]["items"]) == [
        "device:idfa",
        "member_id",
        "member_id",
        "phone",
        "phone",
        "wx_openid:app",
    ]
    # the split minted a new id; the retired one of r2 is still a merge in the lineage
    status, got = split["gone"][younger]
    assert status == 200
    assert got["requested_oneid"] == younger and got["merged_into"] == got["oneid"] == oldest


def test_oneids_whose_identifiers_are_gone_answer_410_with_what_split_off_them(chain):
    first, _, split, gone = chain["steps"]
    a, b, lead = (first["ids"][k] for k in ("crm:M1", "crm:M2", "lead:L1"))
    oldest, younger = min(a, b), max(a, b)
    kept_by_a = split["ids"]["crm:M1"] == oldest
    survivor = split["ids"]["crm:M2" if kept_by_a else "crm:M1"]
    assert set(gone["ids"].values()) == {survivor}
    assert gone["found"] == {
        "A": None if kept_by_a else survivor,
        "B": survivor if kept_by_a else None,
        "M2": survivor if kept_by_a else None,
        "lead": None,
    }
    status, answer = gone["gone"][oldest]
    assert status == 410
    assert answer["error"] | {"message": None} == {
        "code": "oneid_retired",
        "message": None,
        "oneid": oldest,
        "requested_oneid": None,
        "split_into": [survivor],  # r3 split the survivor off it
    }
    status, answer = gone["gone"][younger]  # merged into oldest in r2
    assert (status, answer["error"]["oneid"], answer["error"]["requested_oneid"]) == (
        410,
        oldest,
        younger,
    )
    status, answer = gone["gone"][lead]
    assert (status, answer["error"]["split_into"]) == (410, [])


def test_profile_holds_masked_identifiers_tags_and_audiences_of_the_day(chain):
    split = chain["steps"][2]
    a, lead = split["ids"]["crm:M1"], split["ids"]["lead:L1"]
    profile = split["profiles"][a]
    phones = [i for i in profile["identifiers"]["items"] if i["id_type"] == "phone"]
    assert [(p["masked"], p["sources"]) for p in phones] == [("+8**", ["crm", "wx"])]
    assert phones[0]["first_seen"] <= phones[0]["last_seen"]
    tags = {t["name"]: t for t in profile["tags"]}
    assert tags["value_tier"] == {
        "name": "value_tier",
        "value": "high",
        "source": "batch",
        "as_of": "2025-06-30",
        "updated_at": None,
    }
    assert tags["order_count_lifetime"]["value"] == 3
    assert profile["audiences"] == {
        "items": [
            {"audience_id": "vip", "version": 1, "entered_at": "2025-06-29", "holdout": False}
        ],
        "total": 1,
        "next_offset": None,
        "as_of": "2025-06-30",
    }
    lead_profile = split["profiles"][lead]
    assert lead_profile["audiences"]["items"][0]["entered_at"] == "2025-06-30"
    assert {t["name"]: t["value"] for t in lead_profile["tags"]}["order_count_lifetime"] is None
    # no raw value and no HMAC key anywhere in a stored answer
    text = json.dumps(split["profiles"])
    assert "13800000001" not in text and "oneid-demo-key" not in text


def test_syncing_the_same_batch_again_writes_nothing(spark, chain):
    cfg = chain["cfg"]
    before = sorted(p.name for p in sqlite_dir(cfg).iterdir())
    report = sync_store(spark, cfg, AS_OF)
    assert report.status == "unchanged" and report.version == chain["steps"][-1]["report"].version
    assert sorted(p.name for p in sqlite_dir(cfg).iterdir()) == before
    versions = [step["report"].version for step in chain["steps"]]
    assert len(set(versions)) == 4 and versions[-1].startswith("2025-06-30.r4.")
    assert [s["report"].status for s in chain["steps"]] == ["loaded"] * 4


def test_sync_into_redis_gives_the_same_answers(spark, chain, redis_url):
    cfg = chain["cfg"]
    serve = cfg.env.serve.model_copy(
        update={"store": "redis", "redis_url": redis_url, "namespace": "sync"}
    )
    cfg = cfg.model_copy(update={"env": cfg.env.model_copy(update={"serve": serve})})
    report = sync_store(spark, cfg, AS_OF)
    assert report.status == "loaded" and report.version == chain["steps"][-1]["report"].version
    with TestClient(build_app(cfg)) as client:
        key = chain["key"]
        assert _lookup(client, key, "phone", PHONE_A) == chain["steps"][-1]["found"]["A"]
        for oneid, expected in chain["steps"][-1]["profiles"].items():
            got = client.get(f"/v1/profiles/{oneid}", headers={"X-API-Key": key}).json()
            assert {**got, "store_version": None} == {**expected, "store_version": None}
        for oneid, expected in chain["steps"][-1]["gone"].items():
            got = client.get(f"/v1/profiles/{oneid}", headers={"X-API-Key": key})
            assert (got.status_code, got.json()) == expected
    assert read_table(spark, cfg, "identity.oneid_map").count() > 0
