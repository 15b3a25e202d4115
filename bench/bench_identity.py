"""Identity at scale: full run, components alone (GraphFrames, native, NetworkX), incremental 1%."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import networkx as nx
from pyspark.sql import functions as F

from harness import Benchmark, Case
from identity_common import config, fresh_warehouse, prepared_silver
from oneid.conf.pipeline import ComponentsConf
from oneid.identity.components import connected_components
from oneid.identity.job import resolve_identities
from oneid.session import build_session, graphframes_available
from oneid.tables import overwrite, read_table

RECORDS = int(os.environ.get("ONEID_BENCH_IDENTITY_RECORDS", "1000000"))


def cases(work: Path) -> list[Case]:
    spark = build_session(config(work / "silver", work), app_name="oneid-bench-identity")
    data, rows = prepared_silver(spark, work, RECORDS)
    counter = itertools.count()

    # the edge list of one full run, shared by the components-only cases
    reference = config(work / "reference", data)
    fresh_warehouse(work / "silver", work / "reference", ("silver",))
    resolve_identities(spark, reference, "reference", full=True)
    edges = read_table(spark, reference, "identity.edges").select("src", "dst").cache()
    vertices = read_table(spark, reference, "identity.nodes").select(F.col("node_id").alias("id"))
    vertices = vertices.cache()
    n_edges, n_vertices = edges.count(), vertices.count()

    # incremental: state after 99% of the records, then the last 1% arrives
    silver = read_table(spark, reference, "silver.identifiers")
    records = silver.select("source", "record_key").distinct()
    held = records.where(F.abs(F.xxhash64("source", "record_key")) % 100 == 0)
    base = config(work / "base99", data)
    fresh_warehouse(work / "silver", work / "base99", ("silver",))
    overwrite(silver.join(held, ["source", "record_key"], "left_anti"), base, "silver.identifiers")
    resolve_identities(spark, base, "r99", full=True)

    def full_run() -> dict:
        target = work / f"full-{next(counter)}"
        fresh_warehouse(work / "silver", target, ("silver",))
        result = resolve_identities(spark, config(target, data), "bench", full=True)
        shutil.rmtree(target, ignore_errors=True)
        return {
            "source_rows": rows,
            "identifiers": result.stats["identifiers"],
            "oneids": result.stats["oneids"],
            "weak_rounds": result.stats["weak_merge_rounds"],
        }

    def after_one_percent(full: bool) -> dict:
        target = work / f"step-{next(counter)}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(work / "base99", target)
        cfg = config(target, data)
        shutil.rmtree(target / "silver")
        shutil.copytree(work / "silver" / "silver", target / "silver")
        result = resolve_identities(spark, cfg, "r100", full=full)
        shutil.rmtree(target, ignore_errors=True)
        return {"changes": result.changes}

    def components(engine: str) -> dict:
        conf = ComponentsConf(engine=engine)
        result = connected_components(spark, vertices, edges, conf)
        n = result.components.select("component").distinct().count()
        return {"vertices": n_vertices, "edges": n_edges, "components": n, "rounds": result.rounds}

    def networkx_run() -> dict:
        pdf = edges.toPandas()
        graph = nx.Graph()
        graph.add_nodes_from(r.id for r in vertices.toLocalIterator())
        graph.add_edges_from(zip(pdf.src.tolist(), pdf.dst.tolist(), strict=True))
        return {"components": nx.number_connected_components(graph)}

    out = [
        Case("oneid identity --full", full_run, group="full", baseline=True),
        Case("1% new records: incremental", lambda: after_one_percent(False), group="full"),
        Case("1% new records: --full", lambda: after_one_percent(True), group="full"),
        Case("components: native engine", lambda: components("native"), group="cc"),
        Case("components: NetworkX (collect + connected_components)", networkx_run, group="cc"),
    ]
    if graphframes_available(spark):
        out.insert(
            3,
            Case(
                "components: GraphFrames two_phase",
                lambda: components("graphframes"),
                group="cc",
                baseline=True,
            ),
        )
    else:
        out[3].baseline = True
    return out


BENCHMARK = Benchmark(
    name=f"identity_{RECORDS // 1000}k",
    title=f"Identity at ~{RECORDS:,} source records",
    description=(
        f"Demo data of ~{RECORDS:,} source rows through ingest and standardise (not timed), then "
        "`oneid identity` on it. Components-only cases run on the edge list of that run: "
        "GraphFrames connectedComponents (two_phase, AQE broadcast), OneID's native "
        "large-star/small-star engine, and NetworkX on the same edges collected to the driver. "
        "The 1% cases start from the state after 99% of the records and add the last 1%."
    ),
    cases=cases,
    runs=int(os.environ.get("ONEID_BENCH_RUNS", "2")),
    warmup=0,
    notes=[
        "Runs without a warm-up (the identity setup itself warms the JVM); 2 timed runs.",
        "At 100k records the incremental run is slower than --full: closing the affected set "
        "over the edges costs more fixed Spark jobs than the smaller component computation "
        "saves. The issue's target (1% batch well under a tenth of a full rebuild) is about "
        "5M records, which is not measured yet.",
        "NetworkX wins at this size: 30k vertices fit in the driver's memory; Spark's per-job "
        "overhead dominates. The native engine needs 3 large-star/small-star rounds here.",
    ],
)
