"""Identity resolution engines on one scope: the driver path and the pieces path of
:func:`oneid.identity.resolve.resolve`. ``ONEID_BENCH_RESOLUTION_RECORDS`` sets the size."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import functions as F

from harness import Benchmark, Case
from identity_common import config, fresh_warehouse, prepared_silver, size_label
from oneid.conf.pipeline import ComponentsConf
from oneid.identity.job import resolve_identities
from oneid.identity.keys import Keys
from oneid.identity.resolve import resolve
from oneid.session import build_session
from oneid.tables import read_table

RECORDS = int(os.environ.get("ONEID_BENCH_RESOLUTION_RECORDS", "100000"))


def scope(work: Path):
    """(spark, conf, usable, inside, nodes, previous, minted): every identifier of a full run
    resolved again, its mapping as the previous one (the scope of a second ``--full`` run)."""
    spark = build_session(config(work / "silver", work), job="bench-resolution")
    reference = work / "reference"
    if not (reference / "identity").exists():  # prepared once per work dir
        data, _ = prepared_silver(spark, work, RECORDS)
        fresh_warehouse(work / "silver", reference, ("silver",))
        resolve_identities(spark, config(reference, data), "reference", full=True)
    cfg = config(reference, work / "demo_data")
    previous = read_table(spark, cfg, "identity.oneid_map").select("node_id", "oneid").cache()
    usable = Keys.of(previous.select("node_id"))
    inside = read_table(spark, cfg, "identity.edges").select("src", "dst", "strength").cache()
    nodes = read_table(spark, cfg, "identity.nodes").select("node_id", "id_type").cache()
    minted = previous.agg(F.max("oneid")).first()[0]
    inside.count(), nodes.count()
    return spark, cfg.pipeline.identity, usable, inside, nodes, previous, minted


def fingerprint(mapping, changes, rejected) -> dict:
    """Counts and order-free hashes of a result, so engines can be compared."""

    def digest(frame) -> str:
        row = frame.agg(F.count(F.lit(1)), F.bit_xor(F.xxhash64(*frame.columns))).first()
        return f"{row[0]}:{row[1]}"

    return {"mapping": digest(mapping), "changes": digest(changes), "rejected": digest(rejected)}


def cases(work: Path) -> list[Case]:
    spark, conf, usable, inside, nodes, previous, minted = scope(work)
    in_pieces = conf.model_copy(
        update={"local_max_identifiers": 0, "components": ComponentsConf(engine="native")}
    )

    def run(identity) -> dict:
        result = resolve(spark, identity, usable, inside, nodes, previous, minted)
        return {
            "identifiers": usable.size,
            "engine": result.engine,
            "weak_rounds": result.weak_rounds,
            **fingerprint(result.mapping, result.changes, result.rejected),
        }

    return [
        Case("driver (collect, numpy)", lambda: run(conf), group="resolve", baseline=True),
        Case("pieces (native components, applyInPandas)", lambda: run(in_pieces), group="resolve"),
    ]


WARMUP = int(os.environ.get("ONEID_BENCH_WARMUP", "1"))
RUNS = int(os.environ.get("ONEID_BENCH_RUNS", "3"))

BENCHMARK = Benchmark(
    name=f"resolution_{size_label(RECORDS)}",
    title=f"Identity resolution engines at ~{RECORDS:,} source records",
    description=(
        f"Demo data of ~{RECORDS:,} source rows through ingest, standardise and a full identity "
        "run (not timed); then every identifier of that run resolved again with its mapping as "
        "the previous one (the scope of a second `--full` run): strong components, weak merges "
        "within the limits, assignment and lineage, with the results materialised. Engines: "
        "the whole scope collected to the driver, and the scope cut into pieces by the native "
        "components engine and resolved by `applyInPandas`. `mapping`, `changes`, `rejected` "
        "are counts and order-free hashes: equal hashes, equal results."
    ),
    cases=cases,
    runs=RUNS,
    warmup=WARMUP,
    notes=[f"{WARMUP} warm-up round(s) of every case, then {RUNS} timed, interleaved."],
)
