"""The look-up API over a store loaded directly (no Spark): answers, auth, scopes, rate
limits, the access log, errors, health, paging; and swaps under load through real uvicorn."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from oneid.conf.models import ApiKeyConf, ServeConf
from oneid.serve.access_log import AccessLog
from oneid.serve.answers import Answers
from oneid.serve.api import create_app
from oneid.serve.auth import KeyRing, digest
from oneid.serve.openapi import spec_text
from oneid.serve.redis_store import RedisStore
from oneid.serve.server import running
from oneid.serve.sqlite_store import SqliteStore
from oneid.serve.store import RealtimeTag, StoreVersion
from oneid.standardize.hashing import DEMO_KEY, HashKey, keyed_hash
from oneid.standardize.normalize import normalize
from tests.support import REPO

KEY = HashKey(DEMO_KEY, 0)
KEYS = {
    "full": "oid_full-access-key",
    "lookup": "oid_lookup-only-key",
    "slow": "oid_slow-key",
    "bench": "oid_unlimited-key",
}
CONF = ServeConf(
    batch_limit=5,
    page_size=50,
    api_keys=(
        ApiKeyConf(
            name="clerk_app", sha256=digest(KEYS["full"]), scopes=("lookup", "profile:read")
        ),
        ApiKeyConf(name="ma_platform", sha256=digest(KEYS["lookup"]), scopes=("lookup",)),
        ApiKeyConf(name="slow", sha256=digest(KEYS["slow"]), rate_per_second=0.5, burst=2),
        ApiKeyConf(
            name="bench",
            sha256=digest(KEYS["bench"]),
            scopes=("lookup", "profile:read"),
            rate_per_second=1e6,
            burst=10**6,
        ),
    ),
)


def phone(n: int) -> str:
    return f"+86138{n:08d}"


def document(oneid: int, version: str, identifiers: int = 2) -> str:
    """A profile document as serve-sync writes it."""
    ids = [
        {
            "id_type": "phone",
            "masked": f"138****{i:04d}",
            "sources": ["crm"],
            "first_seen": "2025-01-01T00:00:00.000Z",
            "last_seen": "2025-06-01T00:00:00.000Z",
        }
        for i in range(identifiers)
    ]
    return json.dumps(
        {
            "oneid": oneid,
            "version": version,
            "identifiers": ids,
            "identifier_counts": {"phone": identifiers},
            "best_phone": "138****0000",
            "best_email": None,
            "first_seen": "2025-01-01T00:00:00.000Z",
            "last_seen": "2025-06-01T00:00:00.000Z",
            "sources": ["crm"],
            "records": 3,
            "tags": {
                "value_tier": {"value": "high", "as_of": "2025-06-30"},
                "monetary": {"value": 1234.5, "as_of": "2025-06-30"},
            },
            "audiences": [
                {"audience_id": "vip", "version": 1, "entered_at": "2025-06-29", "holdout": False}
            ],
            "audiences_as_of": "2025-06-30",
        }
    )


def load(store, k: int, people: int = 20, key_version: int = 0) -> None:
    """Version v<k>: phone(i) -> OneID k*1000+i; OneID 1 merged into 2, 2 into k*1000; 3
    retired after 4 (merged into k*1000+6) and k*1000+5 split off it; 6 merged into 5, which
    retired with no split."""
    info = StoreVersion(f"v{k}", f"r{k}", "2025-06-30", key_version, f"2025-07-01T00:00:0{k}")
    with store.load(info) as loader:
        hashed = (
            ("phone", keyed_hash(KEY, normalize("phone", phone(i)).value), k * 1000 + i)
            for i in range(people)
        )
        loader.identifiers(hashed)
        many = {k * 1000 + 7: 120}
        loader.profiles(
            (k * 1000 + i, document(k * 1000 + i, f"v{k}", many.get(k * 1000 + i, 2)))
            for i in range(people)
        )
        loader.merges([(1, 2), (2, k * 1000), (4, k * 1000 + 6), (6, 5)])
        loader.retired([(3, [4, k * 1000 + 5]), (5, [])])


@pytest.fixture
def store(tmp_path):
    made = SqliteStore(tmp_path / "store")
    yield made
    made.close()


def _app(store, tmp_path: Path, key: HashKey = KEY):
    answers = Answers(store, key, CONF, AccessLog(tmp_path / "access.jsonl"))
    return create_app(answers, KeyRing(CONF.api_keys))


@pytest.fixture
def client(store, tmp_path):
    load(store, 1)
    with TestClient(_app(store, tmp_path), raise_server_exceptions=False) as made:
        yield made


def post(client, path, body, key="full"):
    return client.post(path, json=body, headers={"X-API-Key": KEYS[key]} if key else {})


def get(client, path, key="full", **params):
    return client.get(path, params=params, headers={"X-API-Key": KEYS[key]} if key else {})


def test_look_up_a_raw_phone_as_a_clerk_types_it(client):
    for raw in ("138 0000 0003", "+86 138-0000-0003", "008613800000003", "１３８００００００03"):
        answer = post(client, "/v1/lookup", {"id_type": "phone", "value": raw})
        assert answer.status_code == 200, raw
        assert answer.json() == {"oneid": 1003, "store_version": "v1", "profile": None}
    missing = post(client, "/v1/lookup", {"id_type": "phone", "value": "13999999999"})
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no OneID for this phone"}}


def test_invalid_values_are_refused_without_echoing_them(client):
    bad = post(client, "/v1/lookup", {"id_type": "phone", "value": "138abc5678"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_identifier"
    assert "138abc5678" not in bad.text
    unknown = post(client, "/v1/lookup", {"id_type": "passport", "value": "E1234567"})
    assert unknown.json()["error"]["code"] == "unknown_id_type" and "E1234567" not in unknown.text
    shape = post(client, "/v1/lookup", {"id_type": "phone", "value": 13800000003, "x": 1})
    assert shape.status_code == 422 and shape.json()["error"]["code"] == "invalid_request"
    assert "13800000003" not in shape.text


def test_bodies_that_are_not_json_get_the_documented_errors(client):
    """docs/serving.md: not valid JSON is 422 ``invalid_request``; undecodable bytes 400."""

    def raw(body: bytes):
        headers = {"X-API-Key": KEYS["full"], "Content-Type": "application/json"}
        return client.post("/v1/lookup", content=body, headers=headers)

    broken = raw(b'{"id_type": "phone", "value": "1380000')
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_request"
    assert "JSON decode error" in broken.json()["error"]["message"]
    assert "1380000" not in broken.text
    undecodable = raw('{"id_type": "phone", "value": "\xff"}'.encode("latin-1"))
    assert undecodable.status_code == 400
    assert undecodable.json()["error"]["code"] == "bad_request"


def test_look_up_with_the_profile_and_selected_tags(client):
    body = {"id_type": "phone", "value": "13800000003", "with_profile": True, "tags": ["monetary"]}
    profile = post(client, "/v1/lookup", body).json()["profile"]
    assert profile["oneid"] == 1003 and profile["merged_into"] is None
    assert profile["tags"] == [
        {
            "name": "monetary",
            "value": 1234.5,
            "source": "batch",
            "as_of": "2025-06-30",
            "updated_at": None,
        }
    ]
    assert profile["audiences"]["items"][0] == {
        "audience_id": "vip",
        "version": 1,
        "entered_at": "2025-06-29",
        "holdout": False,
    }


def test_realtime_tags_join_the_batch_tags(client, store):
    store.put_realtime_tags(1004, [RealtimeTag("last_viewed", "sku-9", "2025-07-01T08:00:00Z")])
    tags = get(client, "/v1/profiles/1004").json()["tags"]
    assert [(t["name"], t["source"], t["as_of"], t["updated_at"]) for t in tags] == [
        ("value_tier", "batch", "2025-06-30", None),
        ("monetary", "batch", "2025-06-30", None),
        ("last_viewed", "realtime", None, "2025-07-01T08:00:00Z"),
    ]


def test_a_retired_oneid_answers_with_the_live_one(client):
    answer = get(client, "/v1/profiles/1").json()  # 1 -> 2 -> 1000
    assert (answer["requested_oneid"], answer["merged_into"], answer["oneid"]) == (1, 1000, 1000)
    assert get(client, "/v1/profiles/999").json()["error"]["code"] == "not_found"


def test_a_oneid_retired_without_a_merge_is_gone_with_what_split_off_it(client, tmp_path):
    gone = get(client, "/v1/profiles/3")
    assert gone.status_code == 410
    error = gone.json()["error"]
    assert (error["code"], error["oneid"], error["requested_oneid"]) == ("oneid_retired", 3, None)
    assert error["split_into"] == [1005, 1006]  # 4 was merged into 1006 since: the live one
    assert get(client, "/v1/profiles/3/identifiers").json() == gone.json()
    via = get(client, "/v1/profiles/6/audiences").json()["error"]  # 6 was merged into 5
    assert (via["code"], via["oneid"], via["requested_oneid"], via["split_into"]) == (
        "oneid_retired",
        5,
        6,
        [],
    )
    assert get(client, "/v1/profiles/999").status_code == 404  # never a OneID: not found
    logged = [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert [(r["action"], r["requested_oneid"], r["oneid"]) for r in logged] == [
        ("profile", 3, None),
        ("profile_identifiers", 3, None),
        ("profile_audiences", 6, None),
    ]


def test_long_lists_are_paged(client):
    first = get(client, "/v1/profiles/1007").json()["identifiers"]
    assert (len(first["items"]), first["total"], first["next_offset"]) == (50, 120, 50)
    last = get(client, "/v1/profiles/1007/identifiers", offset=100, limit=50).json()
    assert (len(last["items"]), last["next_offset"]) == (20, None)
    assert last["items"][0]["masked"] == "138****0100"
    assert get(client, "/v1/profiles/1007", page_size=501).status_code == 422
    audiences = get(client, "/v1/profiles/1007/audiences", limit=1).json()
    assert audiences["as_of"] == "2025-06-30" and audiences["total"] == 1


def test_batch_look_up_keeps_order_and_its_limit(client):
    items = [
        {"id_type": "phone", "value": "13800000001"},
        {"id_type": "phone", "value": "13999999999"},
        {"id_type": "phone", "value": "not a phone"},
        {"id_type": "phone", "value": "+8613800000002"},
        {"id_type": "passport", "value": "E1234567"},
    ]
    answer = post(client, "/v1/lookup/batch", {"items": items}, key="lookup").json()
    assert answer == {
        "store_version": "v1",
        "results": [
            {"index": 0, "status": "found", "oneid": 1001, "reason": None},
            {"index": 1, "status": "not_found", "oneid": None, "reason": None},
            {"index": 2, "status": "invalid", "oneid": None, "reason": "invalid_phone"},
            {"index": 3, "status": "found", "oneid": 1002, "reason": None},
            {"index": 4, "status": "invalid", "oneid": None, "reason": "unknown_id_type"},
        ],
    }
    too_many = post(client, "/v1/lookup/batch", {"items": items + items[:1]})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "batch_too_large"


def test_keys_and_scopes(client):
    body = {"id_type": "phone", "value": "13800000001"}
    assert post(client, "/v1/lookup", body, key=None).json()["error"]["code"] == "unauthorized"
    wrong = client.post("/v1/lookup", json=body, headers={"X-API-Key": "oid_guess"})
    assert wrong.status_code == 401
    assert post(client, "/v1/lookup", body, key="lookup").status_code == 200
    with_profile = post(client, "/v1/lookup", {**body, "with_profile": True}, key="lookup")
    assert with_profile.status_code == 403
    assert with_profile.json()["error"] == {
        "code": "forbidden",
        "message": "this API key lacks the scope profile:read",
    }
    assert get(client, "/v1/profiles/1001", key="lookup").status_code == 403
    assert get(client, "/v1/profiles/1001", key="full").status_code == 200


def test_rate_limit_per_key(client):
    body = {"id_type": "phone", "value": "13800000001"}
    answers = [post(client, "/v1/lookup", body, key="slow") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "2"
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert post(client, "/v1/lookup", body).status_code == 200  # another key is not slowed


def test_every_look_up_is_in_the_access_log_without_the_value(client, tmp_path):
    post(client, "/v1/lookup", {"id_type": "phone", "value": "138 0000 0005"}, key="lookup")
    post(client, "/v1/lookup", {"id_type": "phone", "value": "13999999999"})
    get(client, "/v1/profiles/1")
    items = [{"id_type": "email", "value": "a@b.cn"}]
    post(client, "/v1/lookup/batch", {"items": items})
    text = (tmp_path / "access.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    shown = [(r["key"], r["action"], r.get("id_type"), r["oneid"]) for r in rows]
    assert shown == [
        ("ma_platform", "lookup", "phone", 1005),
        ("clerk_app", "lookup", "phone", None),
        ("clerk_app", "profile", None, 1000),
        ("clerk_app", "batch_lookup", "email", None),
    ]
    assert all(r["store_version"] == "v1" and r["at"].endswith("+00:00") for r in rows)
    assert "0005" not in text and "13999999999" not in text and "a@b.cn" not in text


def test_health_and_readiness_name_the_serving_version(store, tmp_path):
    with TestClient(_app(store, tmp_path)) as client:
        assert client.get("/ready").status_code == 503
        assert client.get("/health").json()["status"] == "ok"
        body = {"id_type": "phone", "value": "13800000001"}
        assert post(client, "/v1/lookup", body).json()["error"]["code"] == "no_version"
        load(store, 1)
        ready = client.get("/ready").json()
        assert (ready["status"], ready["version"], ready["identity_run"]) == ("ok", "v1", "r1")
        assert client.get("/health").json()["version"] == "v1"
    # a store hashed with another HMAC key version is not ready and answers nothing
    with TestClient(_app(store, tmp_path, HashKey(b"another-key-of-16+chars", 2))) as client:
        assert client.get("/ready").json()["reason"] == "key_version_mismatch"
        answer = post(client, "/v1/lookup", {"id_type": "phone", "value": "13800000001"})
        assert (
            answer.status_code == 503 and answer.json()["error"]["code"] == "key_version_mismatch"
        )


def test_unexpected_errors_are_json_without_a_trace(store, tmp_path):
    load(store, 1)

    class Broken(SqliteStore):
        def snapshot(self):
            raise RuntimeError("disk on fire at /secret/path")

    broken = Broken(store.folder)
    with TestClient(_app(broken, tmp_path), raise_server_exceptions=False) as client:
        answer = post(client, "/v1/lookup", {"id_type": "phone", "value": "13800000001"})
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert client.get("/nope").json()["error"]["code"] == "not_found"


def test_openapi_spec_in_the_repo_is_current(store, tmp_path):
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == spec_text(), "run: python -m oneid.serve.openapi docs/openapi.json"
    assert json.loads(committed) == _app(store, tmp_path).openapi()  # what the API serves
    assert set(json.loads(committed)["paths"]) == {
        "/v1/lookup",
        "/v1/lookup/batch",
        "/v1/profiles/{oneid}",
        "/v1/profiles/{oneid}/identifiers",
        "/v1/profiles/{oneid}/audiences",
        "/health",
        "/ready",
    }


def test_answers_never_mix_versions_while_loads_swap(redis_url, tmp_path):
    """Real uvicorn on loopback, a Redis store, four clients looking up with profiles while
    six loads swap versions: every answer is whole from one version."""
    store = RedisStore(redis_url, "swap")
    load(store, 1)
    stop = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEYS["bench"]}) as http:
            while not stop.is_set() and not problems:
                for i in (3, 11):
                    body = {"id_type": "phone", "value": phone(i), "with_profile": True}
                    response = http.post("/v1/lookup", json=body)
                    if response.status_code != 200:
                        problems.append(response.text)
                        break
                    answer = response.json()
                    k = int(answer["store_version"][1:])
                    seen.add(answer["store_version"])
                    profile = answer["profile"]
                    if answer["oneid"] != k * 1000 + i or profile["oneid"] != k * 1000 + i:
                        problems.append(f"{answer['store_version']}: OneID {answer['oneid']}")

    with running(_app(store, tmp_path), "127.0.0.1", 0) as url:
        clients = [threading.Thread(target=hammer, args=(url,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            for k in range(2, 8):
                time.sleep(0.2)  # answers from this version meanwhile
                load(store, k)
            time.sleep(0.2)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    store.close()
    assert problems == []
    assert len(seen) >= 3


def test_serve_key_prints_a_key_once_and_only_its_digest_for_conf(capsys):
    import yaml

    from oneid.cli import main

    assert main(["serve-key", "--name", "wecom_sidebar", "--scope", "profile:read"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[1].strip()
    entry = yaml.safe_load(lines[3].strip().removeprefix("- "))
    assert key.startswith("oid_") and len(key) > 40
    conf = ApiKeyConf(**entry)
    assert conf.sha256 == digest(key) and conf.scopes == ("profile:read",)
    assert KeyRing((conf,)).caller(key).name == "wecom_sidebar"


@pytest.mark.parametrize("workers", [1, 2])
def test_oneid_serve_runs_the_api_from_conf(tmp_path, workers):
    """`oneid serve` as a user starts it: a process of its own, conf from an environment file."""
    import os
    import subprocess
    import sys

    import yaml

    from oneid.serve.local_redis import free_port

    store = SqliteStore(tmp_path / "store")
    load(store, 1)
    port = free_port()
    env = {
        "mode": "local",
        "pipeline": str(REPO / "conf" / "pipeline.yaml"),
        "warehouse": str(tmp_path / "warehouse"),
        "secrets": {"allow_demo_key": True},
        "serve": {
            "sqlite_dir": str(tmp_path / "store"),
            "port": port,
            "workers": workers,
            "api_keys": [{"name": "clerk_app", "sha256": digest(KEYS["full"])}],
        },
    }
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k != "ONEID_HMAC_KEY"}
    command = [sys.executable, "-m", "oneid", "serve", "--env", str(tmp_path / "env.yaml")]
    process = subprocess.Popen(command, env=environment, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        body = {"id_type": "phone", "value": "13800000002"}
        answer = httpx.post(f"{url}/v1/lookup", json=body, headers={"X-API-Key": KEYS["full"]})
        assert answer.json() == {"oneid": 1002, "store_version": "v1", "profile": None}
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode in (0, -15)
    rows = (tmp_path / "store" / "access.jsonl").read_text().splitlines()
    assert [json.loads(row)["oneid"] for row in rows] == [1002]
