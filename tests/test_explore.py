"""Notebook helpers on a tiny hand-made warehouse: sizes, largest OneIDs, one component, a person.

OneID 100 holds member M1, phone 138****5678, an email and an IDFA; OneID 200 member M2 and a
phone; OneID 300 one phone. Phone 139****2222 (in orders of both 100 and 200) and an OAID are
hubs; the IDFA's weak edge to 200's phone was cut by the device limit.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from oneid import explore
from oneid.errors import DataContractError
from oneid.standardize.hashing import DEMO_KEY, HashKey, keyed_hash
from oneid.tables import overwrite
from tests.support import REPO, config_for

PHONE = "+8613812345678"
HUB_PHONE = "+8613911112222"
D1, D2, D3 = dt.date(2025, 6, 29), dt.date(2025, 6, 30), dt.date(2025, 7, 1)
T1, T2 = dt.datetime(2025, 1, 2, 3, 4, 5), dt.datetime(2025, 6, 30, 8, 0, 0)
DEMO = HashKey(DEMO_KEY, 0)
TAGS = {
    "definitions": [
        {"name": "orders", "group": "value", "description": "-", "type": "bigint", "expr": "1"},
        {"name": "segment", "group": "value", "description": "-", "type": "string", "expr": "'x'"},
        {
            "name": "stage",
            "group": "behaviour",
            "description": "-",
            "type": "string",
            "expr": "'a'",
        },
    ]
}
CRM = {
    "format": "csv",
    "path": "/nowhere",
    "record_key": ["member_id"],
    "columns": {"会员编号": {"field": "member_id"}, "手机号": {"field": "phone"}},
    "identifiers": [
        {"field": "member_id", "type": "member_id"},
        {"field": "phone", "type": "phone"},
    ],
}
NODES = [
    (1, "member_id", "h1", "M00***01"),
    (2, "phone", keyed_hash(DEMO, PHONE), "138****5678"),
    (3, "email", "h3", "z***@qq.com"),
    (4, "device:idfa", "h4", "6D92…E7DC"),
    (5, "member_id", "h5", "M00***02"),
    (6, "phone", "h6", "137****0000"),
    (7, "phone", "h7", "136****1111"),
    (8, "phone", keyed_hash(DEMO, HUB_PHONE), "139****2222"),
    (9, "device:oaid", "h9", "AB12…CD34"),
]
ONEIDS = {1: 100, 2: 100, 3: 100, 4: 100, 5: 200, 6: 200, 7: 300}
AUDIT = "run_id string, rule string, node_id long, id_type string, masked string, records long, member_ids long, threshold long, other_node_id long"  # noqa: E501
PROFILE_100 = {
    "oneid": 100,
    "identifier_counts": {"member_id": 1, "phone": 1, "email": 1, "device": 1},
    "best_phone": "138****5678",
    "best_email": "z***@qq.com",
    "first_seen": T1,
    "last_seen": T2,
    "sources": ["app_events", "crm_members", "orders"],
    "records": 4,
}


def frame(spark, rows, schema):
    return spark.createDataFrame(rows, schema)


@pytest.fixture(scope="module")
def wh(spark, tmp_path_factory):
    cfg = config_for(
        tmp_path_factory.mktemp("explore"), {"tags": TAGS, "sources": {"crm_members": CRM}}
    )
    node_schema = "node_id long, id_type string, value_hash string, masked string"
    tables = {
        "identity.nodes": frame(spark, NODES, node_schema),
        "identity.oneid_map": frame(
            spark,
            [(n, t, h, ONEIDS[n]) for n, t, h, _ in NODES if n in ONEIDS],
            "node_id long, id_type string, value_hash string, oneid long",
        ),
        "identity.edges": frame(
            spark,
            [
                (1, 2, "strong", ["crm_members"]),
                (1, 3, "weak", ["crm_members"]),
                (2, 4, "weak", ["orders", "app_events"]),
                (5, 6, "strong", ["crm_members"]),
                (4, 6, "weak", ["app_events"]),  # between two OneIDs: cut by the device limit
            ],
            "src long, dst long, strength string, sources array<string>",
        ),
        "identity.incidence": frame(
            spark,
            [
                *(("crm_members", "m1", n) for n in (1, 2, 3)),
                *(("orders", "o1", n) for n in (2, 4, 8)),
                *(("orders", "o4", n) for n in (2, 8)),
                *(("app_events", "e1", n) for n in (4, 9)),
                *(("crm_members", "m2", n) for n in (5, 6)),
                *(("orders", "o2", n) for n in (6, 8)),
                ("orders", "o3", 8),
                ("douyin_leads", "l7", 7),
            ],
            "source string, record_key string, node_id long",
        ),
        "identity.hubs": frame(
            spark,
            [(8, "max_records", 25, 0, 20), (9, "max_member_ids", 3, 2, 1)],
            "node_id long, rule string, records long, member_ids long, threshold long",
        ),
        "identity.hub_audit": frame(
            spark,
            [
                ("r1", "max_records", 3, "email", "z***@qq.com", 30, 0, 20, None),  # stale
                ("r2", "max_records", 8, "phone", "139****2222", 25, 0, 20, None),
                ("r2", "max_member_ids", 9, "device:oaid", "AB12…CD34", 3, 2, 1, None),
                ("r2", "limit:device", 4, "device:idfa", "6D92…E7DC", None, None, None, 6),
                ("r3", "blocklist", 1, "member_id", "M00***01", 1, 0, None, None),  # failed run
            ],
            AUDIT,
        ),
        "identity.run_stats": frame(
            spark,
            [("r1", True, T1), ("r2", True, T2), ("r3", False, T2 + dt.timedelta(days=1))],
            "run_id string, passed boolean, finished_at timestamp",
        ),
        "identity.profiles": frame(
            spark,
            [
                tuple(PROFILE_100.values()),
                (
                    200,
                    {"member_id": 1, "phone": 1},
                    "137****0000",
                    None,
                    T1,
                    T1,
                    ["crm_members"],
                    2,
                ),
                (300, {"phone": 1}, "136****1111", None, T2, T2, ["douyin_leads"], 1),
            ],
            "oneid long, identifier_counts map<string,bigint>, best_phone string, "
            "best_email string, first_seen timestamp, last_seen timestamp, "
            "sources array<string>, records bigint",
        ),
        "gold.tags_value": frame(
            spark,
            [
                (100, 3, "loyal", D1),
                (100, 5, "champions", D2),
                (200, 1, None, D2),
                (100, 6, "x", D3),
            ],
            "oneid long, orders bigint, segment string, dt date",
        ),
        "gold.tags_behaviour": frame(
            spark,
            [(100, "new", D1), (100, "active", D2), (200, "lost", D2)],
            "oneid long, stage string, dt date",
        ),
        "audience.membership": frame(
            spark,
            [
                ("vip", 1, 100, False, D1),
                ("win_back", 2, 100, True, D2),
                ("vip", 1, 100, False, D2),
                ("vip", 1, 200, False, D2),
            ],
            "audience_id string, version int, oneid long, holdout boolean, dt date",
        ),
        "silver.identifiers": frame(
            spark,
            [
                ("crm_members", "m1", "phone", keyed_hash(DEMO, PHONE)),
                ("crm_members", "m2", "phone", "h6"),
                ("crm_members", "m3", "phone", keyed_hash(DEMO, HUB_PHONE)),
            ],
            "source string, record_key string, id_type string, value_hash string",
        ),
        "bronze.crm_members": frame(
            spark,
            [
                ("m1", "M0001", "138 1234 5678", "b1"),
                ("m1", "M0001", "+86 138-1234-5678", "b2"),
                ("m2", "M0002", "13700000000", "b1"),
                ("m3", "M0003", "139 1111 2222", "b1"),
            ],
            "_record_key string, member_id string, phone string, _batch_id string",
        ),
    }
    for name, data in tables.items():
        overwrite(data, cfg, name)
    return cfg


@pytest.fixture
def demo_key(monkeypatch):
    monkeypatch.delenv("ONEID_HMAC_KEY", raising=False)  # the test conf allows the demo key


def plain(df: pd.DataFrame) -> list[tuple]:
    """Rows as tuples, NaN as None (nullable longs come back as floats)."""
    return [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in df.itertuples(index=False)
    ]


def test_config_from_env_resolves_paths_against_the_project():
    cfg = explore.config_from_env(REPO, {})
    assert (cfg.env_name, cfg.env.warehouse) == ("local", str(REPO / "warehouse"))
    cfg = explore.config_from_env(
        REPO,
        {
            "ONEID_WAREHOUSE": "elsewhere/wh",
            "ONEID_SET": "spark.driver_memory=1g; spark.master=local[1];;",
        },
    )
    assert cfg.env.warehouse == str(REPO / "elsewhere" / "wh")
    assert (cfg.env.spark.driver_memory, cfg.env.spark.master) == ("1g", "local[1]")
    assert (
        explore.config_from_env(REPO, {"ONEID_WAREHOUSE": "/data/wh"}).env.warehouse == "/data/wh"
    )


def test_component_sizes(spark, wh):
    assert plain(explore.component_sizes(spark, wh)) == [(1, 1), (2, 1), (4, 1)]


def test_largest_components_and_the_cuts_around_them(spark, wh):
    largest = explore.largest_components(spark, wh, n=2)
    assert plain(largest.components) == [
        (100, 4, {"device": 1, "email": 1, "member_id": 1, "phone": 1}, 4, PROFILE_100["sources"]),
        (200, 2, {"member_id": 1, "phone": 1}, 2, ["crm_members"]),
    ]
    # only the latest passed run (r2); hub 8 sits in orders o1 and o4 of OneID 100, o2 of 200
    limit_cut = ("limit:device", 4, "device:idfa", "6D92…E7DC", None, None, None, None, 6)
    assert plain(largest.cuts) == [
        (100, *limit_cut, "137****0000"),
        (100, "max_member_ids", 9, "device:oaid", "AB12…CD34", 3, 2, 1, 1, None, None),
        (100, "max_records", 8, "phone", "139****2222", 25, 0, 20, 2, None, None),
        (200, *limit_cut, "137****0000"),
        (200, "max_records", 8, "phone", "139****2222", 25, 0, 20, 1, None, None),
    ]
    assert list(largest.cuts.columns) == explore.CUT_COLUMNS
    assert explore.latest_run(spark, wh) == "r2"


def test_component_graph_holds_only_the_components_nodes_and_edges(spark, wh):
    graph = explore.component_graph(spark, wh, 100)
    assert plain(graph.nodes) == [
        (1, "member_id", "M00***01"),
        (2, "phone", "138****5678"),
        (3, "email", "z***@qq.com"),
        (4, "device:idfa", "6D92…E7DC"),
    ]
    assert [(s, d, k, list(src)) for s, d, k, src in plain(graph.edges)] == [
        (1, 2, "strong", ["crm_members"]),
        (1, 3, "weak", ["crm_members"]),
        (2, 4, "weak", ["app_events", "orders"]),
    ]
    with pytest.raises(DataContractError, match=r"OneID 999 is not in identity\.oneid_map"):
        explore.component_graph(spark, wh, 999)
    with pytest.raises(DataContractError, match="OneID 100 has 4 identifiers, more than 3"):
        explore.component_graph(spark, wh, 100, max_nodes=3)


def test_draw_component_colours_types_labels_masked_and_dashes_weak_edges(spark, wh):
    figure = explore.draw_component(explore.component_graph(spark, wh, 100))
    ax = figure.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        ["M00***01", "138****5678", "z***@qq.com", "6D92…E7DC"]
    )
    edges = {c.get_label(): c for c in ax.collections if c.get_label().endswith("edges")}
    assert {k: len(c.get_segments()) for k, c in edges.items()} == {
        "strong edges": 1,
        "weak edges": 2,
    }
    assert edges["strong edges"].get_linestyle()[0][1] is None  # solid
    assert edges["weak edges"].get_linestyle()[0][1] is not None  # dashed
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["device", "email", "member_id", "phone", "strong edge", "weak edge"]
    assert ax.get_title() == "OneID 100: 4 identifiers"


def test_plot_component_sizes(spark, wh):
    figure = explore.plot_component_sizes(explore.component_sizes(spark, wh))
    ax = figure.axes[0]
    assert [p.get_height() for p in ax.patches] == [1, 1, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


@pytest.mark.parametrize("raw", ["138 1234 5678", "+86 138-1234-5678", "008613812345678"])
def test_lookup_phone_finds_profile_latest_tags_and_audiences(spark, wh, demo_key, raw):
    person = explore.lookup_phone(spark, wh, raw)
    assert (person.masked_phone, person.status, person.oneid) == ("138****5678", "found", 100)
    assert person.profile == PROFILE_100
    # latest day every tag table has: D2 (gold.tags_value alone has D3)
    assert person.dt == D2
    assert plain(person.tags) == [
        ("gold.tags_value", "orders", 5),
        ("gold.tags_value", "segment", "champions"),
        ("gold.tags_behaviour", "stage", "active"),
    ]
    assert plain(person.audiences) == [("vip", 1, False), ("win_back", 2, True)]


def test_lookup_phone_on_a_given_day(spark, wh, demo_key):
    person = explore.lookup_phone(spark, wh, "13812345678", dt=D1)
    assert plain(person.tags) == [
        ("gold.tags_value", "orders", 3),
        ("gold.tags_value", "segment", "loyal"),
        ("gold.tags_behaviour", "stage", "new"),
    ]
    assert plain(person.audiences) == [("vip", 1, False)]


def test_lookup_phone_result_holds_no_raw_phone_hash_or_key(spark, wh, demo_key):
    person = explore.lookup_phone(spark, wh, "+86 138-1234-5678")
    text = repr(person) + repr(person.profile) + person.tags.to_csv() + person.audiences.to_csv()
    secrets = ["13812345678", "1234 5678", "1234-5678", keyed_hash(DEMO, PHONE), DEMO_KEY.decode()]
    assert [s for s in secrets if s in text] == []
    assert "138****5678" in text  # the masked form is what shows


def test_lookup_phone_hub_unknown_and_invalid(spark, wh, demo_key):
    hub = explore.lookup_phone(spark, wh, "13911112222")
    assert (hub.masked_phone, hub.status, hub.oneid, hub.profile) == (
        "139****2222",
        "hub:max_records",
        None,
        {},
    )
    unknown = explore.lookup_phone(spark, wh, "13912345678")
    assert (unknown.status, unknown.oneid, len(unknown.tags), len(unknown.audiences)) == (
        "unknown",
        None,
        0,
        0,
    )
    with pytest.raises(ValueError, match=r"^not a valid phone number \(invalid_phone\)$"):
        explore.lookup_phone(spark, wh, "1381234567x")


def test_lookup_phone_uses_the_configured_key(spark, wh, monkeypatch):
    monkeypatch.setenv("ONEID_HMAC_KEY", "another-key-0123456789")
    person = explore.lookup_phone(spark, wh, PHONE)
    assert (person.status, person.oneid) == ("unknown", None)  # hashes differ under another key
    assert "another-key" not in repr(person)


def test_pick_phone_takes_the_latest_bronze_value_of_the_best_placed_person(spark, wh):
    # m1 (OneID 100, two audiences on D2) beats m2 (one); m3's phone is a hub
    assert explore.pick_phone(spark, wh) == "+86 138-1234-5678"
