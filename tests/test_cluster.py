"""The whole batch pipeline on a real Spark standalone cluster gives the tables of local mode.

One master and two one-core workers from the pyspark distribution on loopback; ``jobs/demo.py``
(``oneid demo``: every registered stage with its ``demo_args``, in one driver) runs through
``deploy/submit.sh`` against it, with production's Spark settings (code generation, adaptive
execution: ``demo.spark={}``, where ``oneid demo`` would take the small-data settings). The
same stages then run in local mode in the test session on the same data (small-data settings,
no adaptive execution, one shuffle partition where the cluster run has two) into a second
warehouse, and every table of the two warehouses is compared row by row. The local half keeps
its warehouse on a real HDFS (``tests/hdfs_support.py``), the file system of the shipped
cluster conf: Delta's log, the run journal and the leases go through Hadoop's HDFS client and
delta-rs's, and the tables are copied to local disk to compare.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest
import yaml

from oneid.stages import registered_stages, run_demo_stages
from oneid_demo import generate_demo
from tests.hdfs_support import copy_to_local
from tests.support import (
    REPO,
    as_json,
    delta_records,
    realtime_notes,
    small_config,
    with_demo_data,
)

pytestmark = pytest.mark.cluster

PEOPLE = 300
ONE_DAY = "demo.as_of=[2025-06-30]"  # the demo runs two dates; every stage still runs with one
PRODUCTION_SPARK = "demo.spark={}"  # without it `oneid demo` takes the small-data settings
SPARK_HOME = Path(pyspark.__file__).resolve().parent
COMPARED_ZONES = ("bronze", "quarantine", "silver", "identity", "gold", "audience")
# legitimately different between two runs: commit times, run end times, file paths
RUN_SPECIFIC_COLUMNS = frozenset({"_ingested_at", "_file", "finished_at", "published_at"})
RUN_SPECIFIC_METRICS = frozenset({"silver_commit"})
"""Entries of ``identity.run_stats.metrics`` that differ between two runs: a commit's id."""
QUICK_JIT = "-XX:TieredStopAtLevel=1"
SUBMIT_OPTIONS = (
    "--driver-memory",
    "1g",
    "--executor-memory",
    "1g",
    "--conf",
    "spark.ui.enabled=false",
    "--conf",
    "spark.driver.host=127.0.0.1",
    "--conf",
    "spark.driver.bindAddress=127.0.0.1",
    # Delta replays its log in 50 partitions by default; local mode uses shuffle_partitions
    "--conf",
    "spark.databricks.delta.snapshotPartitions=2",
    # JIT: the quick compiler only. Three short-lived JVMs (a driver, two executors) each
    # compile the same code; at this size the optimising compiler's work does not pay back
    # (docs/performance.md). Not a Spark setting: results are the same.
    "--driver-java-options",
    QUICK_JIT,
    "--conf",
    f"spark.executor.extraJavaOptions={QUICK_JIT}",
)


@dataclass(frozen=True)
class PipelineRun:
    warehouse: Path
    seconds: float
    stages: list[str]
    """The stage of each step that ran, in order."""
    summary: str = ""
    """What ``oneid demo`` printed (the cluster run)."""


@pytest.fixture(scope="module")
def runs(spark, hdfs_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PipelineRun]:
    root = tmp_path_factory.mktemp("cluster")
    subprocess.run(["make", "-s", "package"], cwd=REPO, check=True, capture_output=True)
    generate_demo(root / "demo_data", people=PEOPLE, seed=42)
    cluster_env = _env_file(root, "cluster", {"spark": {"shuffle_partitions": 2}})
    with standalone_cluster(root / "spark", workers=2) as master:
        cluster = _run_pipeline(
            root,
            [
                str(REPO / "deploy" / "submit.sh"),
                "demo",
                "--master",
                master,
                "--env",
                str(cluster_env),
                *SUBMIT_OPTIONS,
                "--",
                "--people",
                str(PEOPLE),
                "--set",
                ONE_DAY,
                "--set",
                PRODUCTION_SPARK,
            ],
        )
    local = _run_in_session(spark, root, f"{hdfs_url}/oneid-local")
    print(f"\npipeline wall time: cluster {cluster.seconds:.1f} s, local {local.seconds:.1f} s")
    return {"cluster": cluster, "local": local}


def test_every_registered_stage_ran_in_both_modes(runs):
    names = [stage.name for stage in registered_stages()]
    for run in runs.values():
        assert sorted(set(run.stages), key=names.index) == names


def test_cluster_ran_with_production_settings(runs):
    assert "code generation on, adaptive execution on" in runs["cluster"].summary


def test_cluster_tables_equal_local_tables(runs):
    cluster, local = runs["cluster"].warehouse, runs["local"].warehouse
    tables = _tables(cluster)
    assert tables == _tables(local)
    zones = {table.split("/")[0] for table in tables}
    assert {"bronze", "quarantine", "silver", "identity"} <= zones
    differences = {}
    for table in tables:
        cluster_rows, local_rows = _rows(cluster / table), _rows(local / table)
        if cluster_rows != local_rows:
            only_cluster = sorted(set(cluster_rows) - set(local_rows))[:3]
            only_local = sorted(set(local_rows) - set(cluster_rows))[:3]
            differences[table] = (len(cluster_rows), len(local_rows), only_cluster, only_local)
    assert differences == {}


def test_every_run_on_hdfs_committed(runs):
    """The run journal the local half kept on HDFS: each scope's last entry is a commit."""
    journal = runs["local"].warehouse / "_oneid" / "runs"
    last = {scope.name: sorted(p.name for p in scope.iterdir())[-1] for scope in journal.iterdir()}
    cluster_scopes = {p.name for p in (runs["cluster"].warehouse / "_oneid" / "runs").iterdir()}
    assert set(last) == cluster_scopes  # every stage and ingest source kept its journal there
    assert {"identity", "standardize", "ingest.orders"} <= set(last)
    assert [scope for scope, name in last.items() if not name.endswith("-committed.json")] == []
    assert list((runs["local"].warehouse / "_oneid" / "leases").iterdir()) == []


def test_the_look_up_and_the_stream_ran_against_the_cluster(runs):
    """``oneid demo``'s last two steps on the cluster's session: the API answered a look-up from
    the store the stages loaded, and the realtime stream's micro-batches (run by the cluster's
    executors) read every replayed event and pushed each trigger they sent once, on the OneIDs
    of the cluster's identity run."""
    text = runs["cluster"].summary
    assert re.search(r"^serve: POST \S+/v1/lookup .* -> OneID \d+ ", text, re.M), text[-3000:]
    notes = realtime_notes(text)
    assert notes.read == notes.replayed == notes.processed + notes.quarantined
    assert notes.processed > 0 and notes.pushes_on_oneids > 0 and notes.clean
    sent = notes.triggers.get("sent", 0)
    assert sent > 0 and notes.pushes == sent


def test_identity_is_not_empty(runs):
    rows = _rows(runs["cluster"].warehouse / "identity" / "oneid_map")
    assert len(rows) > PEOPLE  # every person has several identifiers


@contextmanager
def standalone_cluster(work: Path, workers: int) -> Iterator[str]:
    """A master and ``workers`` one-core workers on loopback; stopped (process groups) on exit."""
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    daemons: list[tuple[subprocess.Popen, Path]] = []
    try:
        port, ui_port = _free_port(), _free_port()
        master = f"spark://127.0.0.1:{port}"
        loopback = ("--host", "127.0.0.1")
        daemons.append(
            _daemon(
                work / "master.log",
                env,
                "master.Master",
                *loopback,
                "--port",
                str(port),
                "--webui-port",
                str(ui_port),
            )
        )
        for i in range(workers):
            daemons.append(
                _daemon(
                    work / f"worker{i}.log",
                    env,
                    "worker.Worker",
                    master,
                    *loopback,
                    "--cores",
                    "1",
                    "--memory",
                    "2g",
                    "--work-dir",
                    str(work / f"worker{i}"),
                    "--webui-port",
                    str(_free_port()),
                )
            )
        _wait_for_workers(ui_port, workers, daemons)
        yield master
    finally:
        for process, _ in reversed(daemons):
            _stop(process)


def _daemon(
    log: Path, env: dict[str, str], daemon: str, *args: str
) -> tuple[subprocess.Popen, Path]:
    """``spark-class org.apache.spark.deploy.<daemon> args`` in its own process group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), f"org.apache.spark.deploy.{daemon}", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: executors die with their worker
        )
    return process, log


def _wait_for_workers(
    ui_port: int, workers: int, daemons: list[tuple[subprocess.Popen, Path]]
) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for process, log in daemons:
            if process.poll() is not None:
                raise AssertionError(f"{log.name} exited:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as page:
                if json.load(page).get("aliveworkers", 0) >= workers:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"workers did not register:\n{_tail(daemons[0][1])}")


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group (executors)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env_file(root: Path, mode: str, extra: dict) -> Path:
    """An env conf of ``mode`` with its own warehouse; the repo's pipeline.yaml."""
    path = root / f"{mode}-test.yaml"
    env = {
        "mode": mode,
        "pipeline": str(REPO / "conf" / "pipeline.yaml"),
        # a folder every node sees at the same path: in cluster mode, a URI
        "warehouse": (root / f"warehouse-{mode}").as_uri(),
        "secrets": {"allow_demo_key": True},
        **extra,
    }
    path.write_text(yaml.safe_dump(env), encoding="utf-8")
    return path


def _run_pipeline(root: Path, command: list[str]) -> PipelineRun:
    """Run ``oneid demo`` as one driver (cwd: the demo data's parent) and time it."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("ONEID_HMAC_KEY", None)  # both runs use the demo key (allow_demo_key)
    log = root / "logs" / "cluster.log"
    log.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    with log.open("wb") as out:
        result = subprocess.run(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise AssertionError(f"cluster demo exit {result.returncode}:\n{_tail(log)}")
    text = log.read_text(encoding="utf-8", errors="replace")
    return PipelineRun(root / "warehouse-cluster", seconds, _stages_run(text), text)


def _stages_run(printed: str) -> list[str]:
    """The stage of each line of the timing summary ``oneid demo`` prints."""
    stages = {stage.name for stage in registered_stages()}
    found = []
    for line in printed.splitlines():
        match = re.match(r"^(\S+)(?: \S+)*?\s{2,}\d+\.\d$", line)
        if match and match.group(1) in stages:
            found.append(match.group(1))
    return found


def _run_in_session(spark, root: Path, warehouse: str) -> PipelineRun:
    """The same stages in local mode, in the test session, into ``warehouse`` (on HDFS), then
    copied to ``warehouse-local``. Exports and the serving store stay on local disk."""
    exports, store = f"publish.exports_dir={root / 'exports'}", f"serve.sqlite_dir={root / 'serve'}"
    cfg = small_config(warehouse, ONE_DAY, exports, store)
    cfg = with_demo_data(cfg, root / "demo_data")
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_HMAC_KEY", raising=False)  # the demo key, as the cluster run
        run = run_demo_stages(spark, cfg)
    seconds = time.perf_counter() - started
    stages = [label.split()[0] for label, _ in run.timings]
    copy_to_local(spark, warehouse, root / "warehouse-local")
    return PipelineRun(root / "warehouse-local", seconds, stages)


def _tables(warehouse: Path) -> list[str]:
    return sorted(
        f"{path.parent.parent.name}/{path.parent.name}"
        for zone in COMPARED_ZONES
        for path in (warehouse / zone).glob("*/_delta_log")
    )


def _rows(path: Path) -> list[str]:
    """The table's rows as canonical JSON (run-specific columns and metrics dropped), sorted."""
    rows = delta_records(path, drop=RUN_SPECIFIC_COLUMNS)
    for row in rows:
        if "metrics" in row:
            row["metrics"] = [e for e in row["metrics"] if e[0] not in RUN_SPECIFIC_METRICS]
    return sorted(as_json(row) for row in rows)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
