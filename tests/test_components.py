"""Connected components: the native engine agrees with NetworkX (and GraphFrames when present)."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from oneid.conf.pipeline import ComponentsConf
from oneid.identity.components import connected_components
from oneid.session import graphframes_available


def _graph(spark, n_vertices: int, edges: list[tuple[int, int]]):
    vertices = spark.createDataFrame([(i,) for i in range(n_vertices)], "id long")
    edge_frame = spark.createDataFrame(edges or [], "src long, dst long")
    return vertices, edge_frame


def _expected(n_vertices: int, edges: list[tuple[int, int]]) -> dict[int, int]:
    graph = nx.Graph()
    graph.add_nodes_from(range(n_vertices))
    graph.add_edges_from(edges)
    return {v: min(comp) for comp in nx.connected_components(graph) for v in comp}


def _labels(result) -> dict[int, int]:
    return {row.id: row.component for row in result.components.collect()}


def test_small_graph_with_isolated_vertex_and_self_loop(spark):
    edges = [(1, 2), (2, 3), (4, 5), (5, 5), (3, 1)]
    vertices, edge_frame = _graph(spark, 7, edges)
    result = connected_components(spark, vertices, edge_frame, ComponentsConf(engine="native"))
    assert _labels(result) == {0: 0, 1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 6}
    assert result.engine == "native" and result.rounds >= 1


def test_long_chain_and_random_graph_match_networkx(spark):
    rng = random.Random(7)
    chain = [(i, i + 1) for i in range(60)]  # a path needs many label-propagation rounds
    scattered = [(rng.randrange(300), rng.randrange(300)) for _ in range(250)]
    edges = chain + [(a + 100, b + 100) for a, b in scattered]
    vertices, edge_frame = _graph(spark, 420, edges)
    result = connected_components(spark, vertices, edge_frame, ComponentsConf(engine="native"))
    assert _labels(result) == _expected(420, edges)


def test_graphframes_engine_agrees_with_native(spark):
    if not graphframes_available(spark):
        pytest.skip("GraphFrames jars not resolvable here (jars.graphframes)")
    rng = random.Random(11)
    edges = [(rng.randrange(200), rng.randrange(200)) for _ in range(150)]
    vertices, edge_frame = _graph(spark, 200, edges)
    native = connected_components(spark, vertices, edge_frame, ComponentsConf(engine="native"))
    graphframes = connected_components(
        spark,
        vertices,
        edge_frame,
        ComponentsConf(engine="graphframes", algorithm="two_phase", broadcast_threshold=-1),
    )
    assert graphframes.engine == "graphframes"
    assert _labels(graphframes) == _labels(native) == _expected(200, edges)
