"""Resolution on the driver and in pieces on Spark give the same results, on random graphs."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from oneid.conf.pipeline import ComponentsConf, IdentityConf
from oneid.identity.keys import Keys
from oneid.identity.resolve import min_labels, resolve, resolve_part

TYPES = ("member_id", "phone", "email", "device:idfa", "wx_openid:app", "crm_id")
IN_PIECES = {"local_max_identifiers": 0, "components": ComponentsConf(engine="native")}


def _scope(spark, seed: int, n: int = 160):
    """Random typed vertices, strong and weak edges, and a previous mapping with extra nodes."""
    rng = random.Random(seed)
    ids = rng.sample(range(10, 10 * n), n)  # sparse, unordered ids
    nodes = [(i, rng.choice(TYPES)) for i in ids]
    edges = {}
    for _ in range(n):
        a, b = rng.sample(ids, 2)
        edges[(min(a, b), max(a, b))] = rng.choice(("strong", "weak", "weak"))
    # a previous mapping: some vertices had ids (grouped at random), some nodes are gone now
    previous = [(i, 1000 + rng.randrange(n // 3)) for i in ids if rng.random() < 0.7]
    previous += [(100_000 + k, 9000 + k) for k in range(5)]  # their OneIDs retire
    return (
        Keys.of(spark.createDataFrame([(i,) for i in ids], "node_id long")),
        spark.createDataFrame(
            [(s, d, k) for (s, d), k in edges.items()], "src long, dst long, strength string"
        ),
        spark.createDataFrame(nodes, "node_id long, id_type string"),
        spark.createDataFrame(previous, "node_id long, oneid long"),
    )


def _rows(frame) -> list[tuple]:
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def _both(spark, settings, scope, previous, minted):
    """The scope resolved on the driver and in pieces; asserts the two are equal."""
    usable, inside, nodes, _ = scope
    driver = resolve(spark, IdentityConf(**settings), usable, inside, nodes, previous, minted)
    pieces = resolve(
        spark, IdentityConf(**settings, **IN_PIECES), usable, inside, nodes, previous, minted
    )
    assert (driver.engine, pieces.engine) == ("driver", "native+pieces")
    assert _rows(pieces.mapping) == _rows(driver.mapping)
    assert _rows(pieces.changes) == _rows(driver.changes)
    assert _rows(pieces.rejected) == _rows(driver.rejected)
    assert pieces.weak_rounds == driver.weak_rounds
    return driver


@pytest.mark.parametrize(
    ("seed", "settings"),
    [
        (1, {}),
        (2, {"limits": {"phone": 1, "device": 1, "member_id": 1}}),
        (3, {"limits": {"email": 1}, "max_weak_rounds": 1}),  # rounds run out: limit:rounds
        (4, {"limits": {}, "priority": ("device", "phone")}),  # no limits: many rounds
    ],
)
def test_pieces_resolve_as_the_driver_does(spark, seed, settings):
    scope = _scope(spark, seed)
    driver = _both(spark, settings, scope, scope[3], 5000)
    kinds = {row[0] for row in _rows(driver.changes)}
    assert {"new", "merge", "retire"} <= kinds  # the random scope exercises the lineage rules
    retired = {row[1] for row in _rows(driver.changes) if row[0] == "retire"}
    assert set(range(9000, 9005)) <= retired  # OneIDs of nodes that are no vertex any more
    minted = sorted({oneid for _, oneid in _rows(driver.mapping) if oneid > 5000})
    assert minted == list(range(5001, 5001 + len(minted)))  # fresh ids count up, none skipped
    if seed == 3:
        assert {row[2] for row in _rows(driver.rejected)} >= {"limit:rounds"}


def test_first_run_without_previous_ids(spark):
    scope = _scope(spark, 5, n=40)
    driver = _both(spark, {}, scope, None, 0)
    assert {row[0] for row in _rows(driver.changes)} == {"new"}
    assert {oneid for _, oneid in _rows(driver.mapping)} == set(
        range(1, len(driver.changes.collect()) + 1)
    )


def test_an_empty_scope_retires_every_previous_oneid(spark):
    empty = Keys.of(spark.createDataFrame([], "node_id long"))
    inside = spark.createDataFrame([], "src long, dst long, strength string")
    nodes = spark.createDataFrame([], "node_id long, id_type string")
    previous = spark.createDataFrame([(1, 7), (2, 7), (3, 8)], "node_id long, oneid long")
    result = resolve(spark, IdentityConf(), empty, inside, nodes, previous, 10)
    assert result.engine == "none" and result.mapping.count() == 0
    assert _rows(result.changes) == [("retire", 7, None, 0), ("retire", 8, None, 0)]


def test_a_oneid_split_by_its_pieces(spark):
    """OneID 7 held 1, 2, 3; now 1-2 are strongly linked and 3 stands alone: the keeper of 7
    is {1, 2}; 3 splits off with a fresh id; a vanished node's OneID 9 retires."""
    usable = Keys.of(spark.createDataFrame([(1,), (2,), (3,), (4,)], "node_id long"))
    inside = spark.createDataFrame([(1, 2, "strong")], "src long, dst long, strength string")
    nodes = spark.createDataFrame(
        [(1, "phone"), (2, "email"), (3, "phone"), (4, "email")], "node_id long, id_type string"
    )
    previous = spark.createDataFrame([(1, 7), (2, 7), (3, 7), (50, 9)], "node_id long, oneid long")
    for settings in ({}, IN_PIECES):
        result = resolve(spark, IdentityConf(**settings), usable, inside, nodes, previous, 20)
        assert _rows(result.mapping) == [(1, 7), (2, 7), (3, 21), (4, 22)]
        assert _rows(result.changes) == [
            ("new", None, 22, 1),
            ("retire", 9, None, 0),
            ("split", 7, 21, 1),
        ]


def test_min_labels_on_a_long_chain_and_cycles():
    n = 200
    order = np.random.default_rng(3).permutation(n)  # a path visiting vertices in random order
    src, dst = order[:-1], order[1:]
    labels = min_labels(n + 3, np.append(src, [n + 1]), np.append(dst, [n + 2]))
    assert (labels[:n] == 0).all()
    assert labels[n] == n and labels[n + 1] == labels[n + 2] == n + 1


def test_an_edge_to_an_unknown_vertex_is_an_error(spark):
    usable = Keys.of(spark.createDataFrame([(1,), (2,)], "node_id long"))
    inside = spark.createDataFrame([(1, 3, "strong")], "src long, dst long, strength string")
    nodes = spark.createDataFrame([(1, "phone"), (2, "phone")], "node_id long, id_type string")
    with pytest.raises(ValueError, match="not among the vertices"):
        resolve(spark, IdentityConf(), usable, inside, nodes, None, 0)


# a family tablet (node 9) seen with member 1 (whose phone is 2) and with phone 3 of another person
FAMILY = {1: "member_id", 2: "phone", 3: "phone", 4: "email", 9: "device"}


def _components(edges: list[tuple[int, int, bool]], conf: IdentityConf) -> tuple[set, list]:
    """The OneIDs (as sets of node ids) and sorted rejected (src, dst, reason) of ``edges``
    (src, dst, strong) over :data:`FAMILY`, resolved from scratch by :func:`resolve_part`."""
    ids = np.array(list(FAMILY), dtype=np.int64)
    kinds = np.array(list(FAMILY.values()), dtype=object)
    src, dst, strong = (np.array(column) for column in zip(*edges, strict=True))
    previous = pd.DataFrame({"node_id": [], "oneid": []}, dtype="int64")
    part = resolve_part(ids, kinds, src, dst, strong.astype(bool), previous, conf)
    groups = part.mapping.groupby("component")["node_id"].apply(frozenset)
    rejected = sorted(part.rejected.itertuples(index=False, name=None))
    return set(groups), rejected


def test_a_device_seen_with_two_peoples_logins_links_neither():
    edges = [(1, 2, True), (1, 9, False), (3, 9, False)]
    together, _ = _components(edges, IdentityConf(hubs={"shared_types": []}))
    assert frozenset({1, 2, 3, 9}) in together  # before the rule: the limits allow it
    apart, rejected = _components(edges, IdentityConf())
    assert apart == {frozenset({1, 2}), frozenset({3}), frozenset({4}), frozenset({9})}
    assert rejected == [(1, 9, "shared:device"), (3, 9, "shared:device")]


def test_two_phone_only_people_on_one_tablet_stay_apart():
    apart, rejected = _components([(2, 9, False), (3, 9, False)], IdentityConf())
    assert apart == {frozenset({1}), frozenset({2}), frozenset({3}), frozenset({4}), frozenset({9})}
    assert rejected == [(2, 9, "shared:device"), (3, 9, "shared:device")]


def test_one_persons_device_under_two_logins_that_strong_edges_join_still_links():
    # member 1 and phone 2 are one person by a strong record: the tablet is theirs alone
    one, rejected = _components([(1, 2, True), (1, 9, False), (2, 9, False)], IdentityConf())
    assert frozenset({1, 2, 9}) in one and rejected == []
    # a device seen with one login and an email (no login) is no shared device either
    one, rejected = _components([(1, 9, False), (4, 9, False)], IdentityConf())
    assert frozenset({1, 4, 9}) in one and rejected == []
