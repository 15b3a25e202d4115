"""The session factory gives Delta Lake, GraphFrames (when its jars resolve) and sane settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.errors.utils import is_debugging_enabled
from pyspark.sql import Row
from pyspark.sql import functions as F

from oneid.scratch import OWNER_FILE, HadoopFolders, LocalFolders, sweep, this_process
from oneid.session import (
    DATAFRAME_DEBUGGING,
    LOG4J_CONF,
    application_name,
    graphframes_available,
    remove_checkpoint_dir,
    scratch_root,
    warehouse_root,
)
from tests.support import REPO, SHUFFLE_PARTITIONS, dead_pid


def test_settings_for_local_tests(spark, cfg):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == str(SHUFFLE_PARTITIONS) == "1"
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "false"  # SMALL_DATA_SPARK
    assert spark.conf.get("spark.sql.adaptive.enabled") == "false"
    # 1 MB pages for sorts and aggregates, not 32-64 MB per task (what Spark's memory manager uses)
    assert spark.sparkContext._jsc.sc().env().memoryManager().pageSizeBytes() == 1 << 20
    assert "-XX:+UseParallelGC" in spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert _vm_option(spark, "MaxInlineLevel") == "9"  # LOCAL_JIT_OPTIONS, taken by the JVM
    assert _vm_option(spark, "InlineSmallCode") == "1000"
    assert spark.conf.get(DATAFRAME_DEBUGGING) == "false"  # no call-site capture per API call
    assert is_debugging_enabled() is False
    checkpoint = spark.sparkContext.getCheckpointDir()
    assert checkpoint is not None and "/_checkpoints/tests" in checkpoint
    assert checkpoint.startswith("file:" + warehouse_root(cfg))


def test_the_application_is_named_by_conf_then_the_job(spark, cfg):
    assert spark.sparkContext.appName == "oneid-tests"
    spark_conf = cfg.env.spark.model_copy(update={"app_name": "harbor-oneid"})
    branded = cfg.model_copy(update={"env": cfg.env.model_copy(update={"spark": spark_conf})})
    assert application_name(branded, "identity") == "harbor-oneid-identity"
    assert application_name(branded, None) == "harbor-oneid"


def test_delta_write_read_and_time_travel(spark, cfg):
    path = f"{warehouse_root(cfg)}/scratch/delta_roundtrip"
    first = spark.createDataFrame(
        [Row(oneid=1, at=dt.datetime(2025, 1, 1, 8)), Row(oneid=2, at=dt.datetime(2025, 1, 2))]
    )
    first.write.format("delta").mode("overwrite").save(path)
    spark.createDataFrame([Row(oneid=3, at=dt.datetime(2025, 1, 3))]).write.format("delta").mode(
        "append"
    ).save(path)
    expected = spark.createDataFrame(
        [
            Row(oneid=1, at=dt.datetime(2025, 1, 1, 8)),
            Row(oneid=2, at=dt.datetime(2025, 1, 2)),
            Row(oneid=3, at=dt.datetime(2025, 1, 3)),
        ]
    )
    assert_df_equality(spark.read.format("delta").load(path), expected, ignore_row_order=True)
    version_zero = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert_df_equality(version_zero, first, ignore_row_order=True)
    assert (Path(path) / "_delta_log" / "00000000000000000001.json").is_file()
    # the small-data settings write Delta's log without Hadoop's .crc side files (Delta's own
    # checksum files, _delta_log/<version>.crc, are not side files)
    assert sorted(p.name for p in (Path(path) / "_delta_log").glob(".*.crc")) == []


def test_graphframes_connected_components(spark):
    if not graphframes_available(spark):
        pytest.skip("GraphFrames jars not resolvable here (jars.graphframes); native engine used")
    from graphframes import GraphFrame

    vertices = spark.createDataFrame([(i,) for i in range(1, 7)], ["id"])
    edges = spark.createDataFrame([(1, 2), (2, 3), (4, 5)], ["src", "dst"])
    components = GraphFrame(vertices, edges).connectedComponents(
        algorithm="two_phase", checkpointInterval=2, broadcastThreshold=-1
    )
    expected = spark.createDataFrame(
        [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 6)], ["id", "component"]
    )
    assert_df_equality(components, expected, ignore_row_order=True, ignore_nullable=True)


def test_remove_checkpoint_dir(spark):
    checkpoint = spark.sparkContext.getCheckpointDir()
    df = spark.range(10).checkpoint(eager=True)
    assert df.count() == 10
    local = Path(checkpoint.removeprefix("file:"))
    assert local.is_dir()
    remove_checkpoint_dir(spark)
    assert not local.exists()


def test_spark_scratch_files_go_to_a_private_per_run_folder(spark, cfg):
    local_dir = Path(spark.sparkContext.getConf().get("spark.local.dir"))
    assert local_dir.parent == Path(scratch_root(cfg))
    assert stat.S_IMODE(local_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(local_dir.parent.stat().st_mode) == 0o700
    owner = json.loads((local_dir / OWNER_FILE).read_text())
    assert owner["pid"] == os.getpid()
    spark.range(1000).repartition(3).groupBy((F.col("id") % 7).alias("k")).count().collect()
    assert list(local_dir.glob("blockmgr-*/*/shuffle_*.data"))  # shuffle files are in it


def test_run_folders_on_a_hadoop_file_system(spark, tmp_path):
    """The checkpoint root may be any Hadoop URI: the same rules through the JVM's file system."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    folders = HadoopFolders(f"file://{tmp_path}/checkpoints", jvm, conf)
    assert folders.names() == []
    me = this_process()
    folders.create("live", me)
    folders.create("dead", dataclasses.replace(me, pid=dead_pid()))
    (tmp_path / "checkpoints" / "not-ours").mkdir()
    assert folders.owner("live")[0] == me
    assert folders.owner("not-ours")[0] is None
    assert sweep(folders, 3600.0) == ["dead"]
    assert folders.names() == ["live", "not-ours"]


RUN = """
import os, sys, time
from tests.support import small_config
from oneid.session import build_session
cfg = small_config(sys.argv[1], "scratch_root=" + sys.argv[2])
spark = build_session(cfg, job="scratch-test")
spark.range(1000).repartition(3).count()
spark.range(10).checkpoint(eager=True).count()
print(spark.sparkContext.getConf().get("spark.local.dir"), flush=True)
print(spark.conf.get("spark.oneid.checkpoint.dir"), flush=True)
if sys.argv[3] == "hang":
    time.sleep(600)
raise RuntimeError("the stage failed")
"""


def _run(warehouse: Path, scratch: Path, how: str) -> tuple[subprocess.Popen, list[str]]:
    """A process that builds a session, shuffles and checkpoints, then fails or waits."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(REPO)])}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(warehouse), str(scratch), how],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    folders = [process.stdout.readline().strip(), process.stdout.readline().strip()]
    assert all(folders), f"the run printed no folders (exit code {process.poll()})"
    return process, [f.removeprefix("file:") for f in folders]


@pytest.mark.slow
def test_run_folders_are_removed_at_exit_and_swept_after_a_kill(tmp_path):
    warehouse, scratch = tmp_path / "warehouse", tmp_path / "scratch"
    checkpoints = warehouse / "_checkpoints"
    me = this_process()
    for root in (checkpoints, scratch):  # a live run's folders, and a dead run's
        LocalFolders(str(root)).create("live-run", me)
        LocalFolders(str(root)).create("dead-run", dataclasses.replace(me, pid=dead_pid()))

    killed, killed_folders = _run(warehouse, scratch, "hang")
    assert all(Path(f).is_dir() for f in killed_folders), killed_folders
    os.killpg(killed.pid, signal.SIGKILL)  # kill -9, the JVM too: no clean-up runs
    killed.wait()
    time.sleep(1)
    assert all(Path(f).is_dir() for f in killed_folders)

    failed, failed_folders = _run(warehouse, scratch, "raise")
    assert failed.wait(timeout=300) != 0
    assert not any(Path(f).exists() for f in failed_folders)
    for root in (checkpoints, scratch):  # the killed and dead runs' folders were swept
        assert sorted(p.name for p in root.iterdir()) == ["live-run"]


def test_python_workers_import_pyspark_from_the_package_not_its_zip(spark):
    """Each task makes a zip importer re-read its archive (oneid.pydaemon): none is left."""
    from pyspark.sql.functions import udf

    @udf("string")
    def origin(_):
        import sys

        import pyspark

        archives = [p for p in sys.path if p.endswith((".zip", ".jar"))] + [
            p for p, f in sys.path_importer_cache.items() if type(f).__name__ == "zipimporter"
        ]
        return json.dumps([pyspark.__file__, archives])

    where, archives = json.loads(spark.range(1).select(origin("id")).first()[0])
    assert ".zip" not in where and archives == []


def test_archives_stay_when_the_installed_pyspark_is_another_version(tmp_path):
    import zipfile

    from oneid.pydaemon import without_archives

    fake = tmp_path / "pyspark.zip"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("pyspark/version.py", "__version__: str = '0.0.1'\n")
    path = [str(fake), *sys.path]
    assert without_archives(path) == path
    assert without_archives([p for p in path if p != str(fake)]) == [
        p for p in path if p != str(fake)
    ]


QUIETED = {
    "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer": (
        ["Map state people doesn't contain key [6].", "No more data to read from the socket"],
        "Map state people could not be updated",
    ),
    "org.apache.spark.sql.execution.streaming.operators.stateful.transformwithstate.timers."
    "TimerStateImpl": (
        [
            "Failed to register timer for key=[3] and timestamp=1796555010000 ms since it already "
            "exists"
        ],
        "Failed to delete timer for key=[3]",
    ),
    "org.apache.spark.scheduler.DAGScheduler": (
        ["Failed to cancel job group 0e75f79e. Cannot find active jobs for it."],
        "Failed to cancel job 7",
    ),
    "org.apache.spark.storage.BlockManager": (
        ["Block rdd_29_0 already exists on this machine; not re-adding it"],
        "Block rdd_29_0 could not be removed as it was not found on disk or in memory",
    ),
}
"""Logger → (normal-path warnings the local log conf drops, a warning of it that still shows)."""


@pytest.mark.parametrize("logger", sorted(QUIETED))
def test_the_local_log_conf_drops_only_the_normal_path_warnings_it_names(spark, logger):
    jvm = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    config = log4j.LogManager.getContext(False).getConfiguration().getLoggerConfig(logger)
    assert config.getName() == logger  # its own entry, not a parent's

    def verdict(text: str) -> str:
        event = (
            log4j.core.impl.Log4jLogEvent.newBuilder()
            .setLoggerName(logger)
            .setLevel(log4j.Level.WARN)
            .setMessage(log4j.message.SimpleMessage(text))
            .build()
        )
        return config.getFilter().filter(event).toString()

    dropped, shown = QUIETED[logger]
    assert [verdict(text) for text in dropped] == ["DENY"] * len(dropped)
    assert verdict(shown) == "NEUTRAL"


def test_every_logger_the_local_log_conf_names_is_a_class_of_the_session(spark):
    """A logger named after a class that moved (Spark moves them between releases) would
    configure nothing, silently."""
    conf = LOG4J_CONF.read_text(encoding="utf-8")
    names = re.findall(r"^logger\.[^.]+\.name = (\S+)$", conf, flags=re.MULTILINE)
    classes = [name for name in names if name.rsplit(".", 1)[-1][:1].isupper()]
    assert len(classes) >= 8, names
    missing = []
    for name in classes:
        try:
            spark.sparkContext._jvm.java.lang.Class.forName(name)
        except Exception:  # py4j reports ClassNotFoundException
            missing.append(name)
    assert missing == []


def _vm_option(spark, name: str) -> str:
    """The running driver JVM's value of the HotSpot option ``name``."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    return bean.getVMOption(name).getValue()
