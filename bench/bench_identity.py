"""Identity at scale: full run, incremental 1% vs --full, components alone (GraphFrames, native,
NetworkX). ``ONEID_BENCH_IDENTITY_RECORDS`` sets the size (source rows)."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import networkx as nx
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from harness import Benchmark, Case
from identity_common import config, fresh_warehouse, prepared_silver, size_label
from oneid.conf.pipeline import ComponentsConf
from oneid.identity.components import connected_components
from oneid.identity.job import IDENTITY_TABLES, resolve_identities
from oneid.identity.publish import MERGE_KEYS, STATE_TABLES
from oneid.session import build_session, graphframes_available
from oneid.tables import merge_keys, overwrite, read_table

RECORDS = int(os.environ.get("ONEID_BENCH_IDENTITY_RECORDS", "1000000"))
# what an incremental run reads: silver, the node dictionary and the state it MERGEs
READ_BY_INCREMENTAL = (
    "silver.identifiers",
    "identity.nodes",
    *(f"identity.{name}" for name in STATE_TABLES),
)
WRITTEN_BY_FULL = tuple(name for name in IDENTITY_TABLES if name != "identity.run_stats")
"""What a full run on a new warehouse writes (besides its one row of run statistics)."""


def cases(work: Path) -> list[Case]:
    spark = build_session(config(work / "silver", work), job="bench-identity")
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

    # changed records: the state after every record, then the phone rows of 1% of the records
    # move by a day (records and edge dates change, no OneID does)
    shutil.copytree(work / "reference", work / "moved")
    moved = (F.abs(F.xxhash64("source", "record_key")) % 100 == 1) & (F.col("id_type") == "phone")
    later = F.when(moved, F.col("event_time") + F.expr("INTERVAL 1 DAY"))
    changed = silver.withColumn("event_time", F.coalesce(later, F.col("event_time")))
    overwrite(changed, config(work / "moved", data), "silver.identifiers")
    targets: dict[str, Path] = {}

    def place(case: str, state: Path, silver: Path | None = None) -> None:
        """A copy of the warehouse ``state`` for ``case``, optionally with ``silver``'s silver
        zone instead of its own (untimed); the case's previous copy is removed."""
        shutil.rmtree(targets.get(case, work / "none"), ignore_errors=True)
        targets[case] = target = work / f"{case}-{next(counter)}"
        shutil.copytree(state, target)
        if silver is not None:
            shutil.rmtree(target / "silver")
            shutil.copytree(silver / "silver", target / "silver")

    def fresh(case: str) -> None:
        """An empty warehouse holding silver only."""
        shutil.rmtree(targets.get(case, work / "none"), ignore_errors=True)
        targets[case] = work / f"{case}-{next(counter)}"
        fresh_warehouse(work / "silver", targets[case], ("silver",))

    def after_99(case: str) -> None:
        """The 99% state with all of silver in place."""
        place(case, work / "base99", silver=work / "silver")

    def full_run() -> dict:
        result = resolve_identities(spark, config(targets["full"], data), "bench", full=True)
        return {
            "source_rows": rows,
            "identifiers": result.stats["identifiers"],
            "oneids": result.stats["oneids"],
            "weak_rounds": result.stats["weak_merge_rounds"],
        }

    def next_run(case: str, full: bool, run_id: str) -> dict:
        """The run after the prepared state: incremental, or ``--full`` on that state."""
        result = resolve_identities(spark, config(targets[case], data), run_id, full=full)
        assert result.full == full, "the incremental case fell back to a full rebuild"
        return {
            "changed_records": result.stats["changed_records"],
            "recomputed_identifiers": result.stats["recomputed_identifiers"],
            "changes": result.changes,
        }

    def read_floor() -> dict:
        """One read of every column of every table an incremental run reads."""
        cfg = config(targets["reads"], data)
        total = sum(_scan(read_table(spark, cfg, name)) for name in READ_BY_INCREMENTAL)
        return {"tables": len(READ_BY_INCREMENTAL), "rows": total}

    written: dict[str, DataFrame] = {}

    def hold_written() -> None:
        """The reference run's tables, cached in memory before the clock: the rows a full run
        writes."""
        for name in WRITTEN_BY_FULL:
            written[name] = read_table(spark, reference, name).cache()
            written[name].count()

    def io_floor() -> dict:
        """A full run's reads and writes alone: one read of silver, and the rows a full run
        writes (held in memory) written as plain Delta tables."""
        out = work / "io-floor"
        shutil.rmtree(out, ignore_errors=True)
        read = _scan(read_table(spark, reference, "silver.identifiers"))
        for name, frame in written.items():
            frame.write.format("delta").mode("overwrite").save(str(out / name))
        rows = sum(int(frame.count()) for frame in written.values())  # from the cache
        for frame in written.values():
            frame.unpersist()
        return {"silver_rows": read, "tables": len(written), "rows_written": rows}

    one_key: dict[str, DataFrame] = {}

    def pick_keys() -> None:
        after_99("merges")
        cfg = config(targets["merges"], data)
        for name, keys in MERGE_KEYS.items():
            table = read_table(spark, cfg, f"identity.{name}").select(*keys)
            one_key[name] = spark.createDataFrame(table.limit(1).collect(), table.schema)

    def merge_floor() -> dict:
        """The smallest write an incremental run makes: one row deleted from each table it
        MERGEs, through ``merge_keys`` on the run's keys (picked before the clock starts)."""
        cfg = config(targets["merges"], data)
        for name, keys in MERGE_KEYS.items():
            empty = read_table(spark, cfg, f"identity.{name}").limit(0)
            merge_keys(empty, one_key[name], cfg, f"identity.{name}", keys)
        return {"tables": len(MERGE_KEYS)}

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
            lambda: next_run("inc", False, "r100"),
            group="full",
            setup=lambda: after_99("inc"),
        ),
        Case(
            "1% new records: --full",
            lambda: next_run("rebuild", True, "r100"),
            group="full",
            setup=lambda: after_99("rebuild"),
        ),
        Case(
            "phone times of 1% of records changed: incremental",
            lambda: next_run("moved", False, "r101"),
            group="full",
            setup=lambda: place("moved", work / "moved"),
        ),
        Case(
            "floor: one read of every table an incremental run reads",
            read_floor,
            group="full",
            setup=lambda: after_99("reads"),
        ),
        Case(
            "floor: one-row MERGE into each table an incremental run MERGEs",
            merge_floor,
            group="full",
            setup=pick_keys,
        ),
    ]
    if os.environ.get("ONEID_BENCH_COMPONENTS", "1") != "1":
        return out
    cc = [
        Case("components: native engine", lambda: components("native"), group="cc"),
        Case("components: NetworkX (collect + connected_components)", networkx_run, group="cc"),
        Case(
            "floor: a full run's reads and writes alone (silver read once, its tables written)",
            io_floor,
            group="cc",
            setup=hold_written,
        ),
    ]
    if graphframes_available(spark):
        graphframes = Case(
            "components: GraphFrames two_phase", lambda: components("graphframes"), group="cc"
        )
        cc.insert(0, graphframes)
    cc[0].baseline = True
    return out + cc


def _scan(table: DataFrame) -> int:
    """Read every flat column of ``table`` once (a count and an order-free hash); its rows."""
    flat = [c for c, kind in table.dtypes if not kind.startswith(("map", "array"))]
    return table.agg(F.count(F.lit(1)), F.bit_xor(F.xxhash64(*flat))).first()[0]


WARMUP = int(os.environ.get("ONEID_BENCH_WARMUP", "1"))
RUNS = int(os.environ.get("ONEID_BENCH_RUNS", "2"))

BENCHMARK = Benchmark(
    name=f"identity_{size_label(RECORDS)}",
    title=f"Identity at ~{RECORDS:,} source records",
    description=(
        f"Demo data of ~{RECORDS:,} source rows through ingest and standardise (not timed), then"
        " `oneid identity` on it. The 1% cases start from the state after 99% of the records (a"
        " full run) and add the last 1%: the incremental run vs `--full` on the same state; "
        "copying the warehouse into place is not timed. The changed-records case starts from "
        "the state after every record and moves the phone rows of 1% of the records by a day: "
        "records and the dates on their edges change, no OneID does. The two floor cases, on "
        "the same 99% state, time what any incremental run pays before computing anything: one "
        "read of every table it reads, and the smallest MERGE (one row deleted) into each of "
        "the six tables it MERGEs. Components-only cases run on the edge list of a full run: "
        "GraphFrames connectedComponents (two_phase, AQE broadcast) when its jars resolve, "
        "OneID's native large-star/small-star engine, and NetworkX on the same edges collected "
        "to the driver. Beside them, the floor of a full run: silver read once and the rows of "
        "the tables a full run writes (the reference run's, held in memory before the clock) "
        "written as plain Delta tables."
    ),
    cases=cases,
    runs=RUNS,
    warmup=WARMUP,
    notes=[f"{WARMUP} warm-up round(s) of every case, then {RUNS} timed, interleaved."],
)
