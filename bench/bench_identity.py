"""Identity at scale: full run, incremental 1% vs --full, components alone (GraphFrames, native,
NetworkX). ``ONEID_BENCH_IDENTITY_RECORDS`` sets the size (source rows)."""

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


def size_label(records: int) -> str:
    """100000 -> 100k, 1000000 -> 1m."""
    if records >= 1_000_000 and records % 1_000_000 == 0:
        return f"{records // 1_000_000}m"
    return f"{records // 1000}k"


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
    targets: dict[str, Path] = {}

    def fresh(case: str) -> None:
        """An empty warehouse holding silver only (untimed)."""
        shutil.rmtree(targets.get(case, work / "none"), ignore_errors=True)
        targets[case] = work / f"{case}-{next(counter)}"
        fresh_warehouse(work / "silver", targets[case], ("silver",))

    def after_99(case: str) -> None:
        """The 99% state with all of silver in place (untimed)."""
        shutil.rmtree(targets.get(case, work / "none"), ignore_errors=True)
        targets[case] = target = work / f"{case}-{next(counter)}"
        shutil.copytree(work / "base99", target)
        shutil.rmtree(target / "silver")
        shutil.copytree(work / "silver" / "silver", target / "silver")

    def full_run() -> dict:
        result = resolve_identities(spark, config(targets["full"], data), "bench", full=True)
        return {
            "source_rows": rows,
            "identifiers": result.stats["identifiers"],
            "oneids": result.stats["oneids"],
            "weak_rounds": result.stats["weak_merge_rounds"],
        }

    def after_one_percent(case: str, full: bool) -> dict:
        result = resolve_identities(spark, config(targets[case], data), "r100", full=full)
        assert result.full == full, "the incremental case fell back to a full rebuild"
        return {
            "changed_records": result.stats["changed_records"],
            "recomputed_identifiers": result.stats["recomputed_identifiers"],
            "changes": result.changes,
        }

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
        Case(
            "oneid identity --full",
            full_run,
            group="full",
            baseline=True,
            setup=lambda: fresh("full"),
        ),
        Case(
            "1% new records: incremental",
            lambda: after_one_percent("inc", False),
            group="full",
            setup=lambda: after_99("inc"),
        ),
        Case(
            "1% new records: --full",
            lambda: after_one_percent("rebuild", True),
            group="full",
            setup=lambda: after_99("rebuild"),
        ),
    ]
    if os.environ.get("ONEID_BENCH_COMPONENTS", "1") == "1":
        out += [
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


WARMUP = int(os.environ.get("ONEID_BENCH_WARMUP", "1"))
RUNS = int(os.environ.get("ONEID_BENCH_RUNS", "2"))

BENCHMARK = Benchmark(
    name=f"identity_{size_label(RECORDS)}",
    title=f"Identity at ~{RECORDS:,} source records",
    description=(
        f"Demo data of ~{RECORDS:,} source rows through ingest and standardise (not timed), then "
        "`oneid identity` on it. The 1% cases start from the state after 99% of the records "
        "(a full run) and add the last 1%: the incremental run vs `--full` on the same state; "
        "copying the warehouse into place is not timed. Components-only cases run on the edge "
        "list of a full run: GraphFrames connectedComponents (two_phase, AQE broadcast) when its "
        "jars resolve, OneID's native large-star/small-star engine, and NetworkX on the same "
        "edges collected to the driver."
    ),
    cases=cases,
    runs=RUNS,
    warmup=WARMUP,
    notes=[f"{WARMUP} warm-up round(s) of every case, then {RUNS} timed, interleaved."],
)
