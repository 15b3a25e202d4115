"""The one SparkSession factory: Delta Lake always, GraphFrames when its jars resolve.

Local mode sets master, driver memory and the jar list; cluster mode leaves master, resources
and jars to spark-submit (``deploy/submit.sh``) and only checks the jars are there.

Local mode also replaces Hadoop's local file system classes by ones that start no process per
file written (:mod:`oneid.local_fs`).

Each session gets its own checkpoint folder and, in local mode, its own private folder for
Spark's scratch files (``spark.local.dir``); both are removed at exit and swept by the next
run when their process was killed (:mod:`oneid.scratch`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import uuid
from pathlib import Path

from pyspark import SparkContext
from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig
from oneid.errors import JarResolutionError, OneIdError
from oneid.jars import resolve_configured
from oneid.java import find_java
from oneid.local_fs import driver_can_load, no_fork_settings
from oneid.scratch import (
    HadoopFolders,
    LocalFolders,
    at_exit,
    default_scratch_root,
    private_root,
    start_run_folder,
)

logger = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
GRAPHFRAMES_CLASS = "org.graphframes.GraphFrame"
LOG4J_CONF = Path(__file__).with_name("log4j2.properties")
GRAPHFRAMES_FLAG = "spark.oneid.graphframes.available"
DATAFRAME_DEBUGGING = "spark.python.sql.dataFrameDebugging.enabled"
CHECKPOINT_FLAG = "spark.oneid.checkpoint.dir"
LOCAL_DIR = "spark.local.dir"
LOCAL_JIT_OPTIONS = "-XX:MaxInlineLevel=9 -XX:InlineSmallCode=1000"
"""The local driver JVM's optimising (C2) compiler inlines less deeply than Java 17's defaults
(15 levels; 2,500 bytes of compiled code). A local session is short-lived and keeps meeting new
Spark and Delta code: its C2 compiler thread took 71-74 s of CPU in the one-date stages on 300
people in a new session (38% of the JVM's CPU), 50-54 s with these limits, and the stages took
0.92x as long (docs/performance.md, "Where the JVM's CPU goes"). ``java_options`` come after
them and win."""
UNMARKED_CHECKPOINTS = re.compile(r"[0-9a-f]{32}")
"""Checkpoint folders of versions before owner markers: ``<checkpoint_root>/<uuid hex>``."""


def warehouse_root(cfg: OneIdConfig) -> str:
    """Absolute warehouse root (local paths are resolved against the working directory)."""
    return _absolute(cfg.env.warehouse)


def application_name(cfg: OneIdConfig, job: str | None) -> str:
    """``<spark.app_name>-<job>``: what Spark's UI and a cluster's application list show."""
    return f"{cfg.env.spark.app_name}-{job}" if job else cfg.env.spark.app_name


def build_session(
    cfg: OneIdConfig,
    *,
    job: str | None = None,
    run_id: str | None = None,
    java_options: str = "",
) -> SparkSession:
    """Build (or return the running) SparkSession for ``cfg``, with a per-run checkpoint dir
    and, for a new local-mode session, a per-run scratch dir; both are removed at exit.
    The application is named by :func:`application_name`; ``java_options`` go to a new local
    session's driver JVM after the usual ones."""
    run = run_id or uuid.uuid4().hex
    spark_conf = cfg.env.spark
    builder = SparkSession.builder.appName(application_name(cfg, job))
    settings: dict[str, str] = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(spark_conf.shuffle_partitions),
        "spark.sql.warehouse.dir": _join(warehouse_root(cfg), "_spark_catalog"),
        # Delta tables written by jobs are managed by OneID; keep the retention check on.
        "spark.databricks.delta.retentionDurationCheck.enabled": "true",
        # an aggregation whose input is already sorted by its keys streams over it instead of
        # hashing (or, for arrays, sorting it again): identity's grouping by record relies on it
        "spark.sql.execution.replaceHashWithSortAgg": "true",
        # Chinese exports come as GBK / GB18030 CSV; Spark 4 only allows them behind this flag.
        "spark.sql.legacy.javaCharsets": "true",
        # pyspark's call-site capture for error contexts: 5+ extra JVM round trips and a stack
        # walk per DataFrame or Column call (F.col + F.lit + "+": 2.4 ms with, 0.73 ms without;
        # the one-date stages 0.93x). OneID's errors name the conf key and column themselves.
        DATAFRAME_DEBUGGING: "false",
    }
    graphframes = False
    java = None
    if cfg.env.mode == "local":
        java = find_java()
        jars, graphframes = session_jars(cfg)
        # Local Python workers must be this interpreter (it has oneid, pandas, pyarrow);
        # PySpark reads the variable, not spark.pyspark.python, when it starts workers.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings.update(
            {
                "spark.master": spark_conf.master,
                "spark.driver.memory": spark_conf.driver_memory,
                "spark.ui.enabled": str(spark_conf.ui).lower(),
                "spark.jars": ",".join(str(p) for p in jars),
                "spark.pyspark.python": sys.executable,
                "spark.pyspark.driver.python": sys.executable,
                # workers import pyspark from the package, not pyspark.zip (oneid.pydaemon)
                "spark.python.daemon.module": "oneid.pydaemon",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.showConsoleProgress": "false",
                "spark.driver.extraJavaOptions": (
                    f"-Dlog4j2.configurationFile={LOG4J_CONF} "
                    f"-Dderby.system.home={tempfile.gettempdir()} "
                    # the throughput collector: G1's concurrent threads compete with the tasks
                    # for a laptop's few cores (tiny identity runs took 0.86x as long on 2 cores)
                    f"-XX:+UseParallelGC {LOCAL_JIT_OPTIONS}"
                    + (f" {java_options}" if java_options else "")
                ),
                # Delta's default of 50 partitions for log replay is a cluster setting.
                "spark.databricks.delta.snapshotPartitions": str(spark_conf.shuffle_partitions),
            }
        )
        scratch = _local_scratch_dir(cfg, run)
        if scratch is not None:
            settings[LOCAL_DIR] = scratch
    settings.update(spark_conf.extra)
    if java is not None and driver_can_load():  # Hadoop's local FS without a process per file
        settings.update(no_fork_settings(settings, java.executable, Path(cfg.env.jars.cache_dir)))
    for key, value in settings.items():
        builder = builder.config(key, value)
    started = SparkContext._active_spark_context is None
    spark = builder.getOrCreate()
    if started:
        at_exit(spark.stop)  # before the scratch dir goes (exit tasks run last added first)
    spark.sparkContext.setLogLevel("WARN")

    _require_class(spark, DELTA_EXTENSION, "jars.delta")
    if cfg.env.mode == "cluster":
        graphframes = _has_class(spark, GRAPHFRAMES_CLASS)
    spark.conf.set(GRAPHFRAMES_FLAG, str(graphframes).lower())

    checkpoint_dir = start_run_folder(
        _checkpoint_folders(spark, cfg), run, cfg.env.sweep_after_seconds, UNMARKED_CHECKPOINTS
    )
    spark.sparkContext.setCheckpointDir(checkpoint_dir)
    spark.conf.set(CHECKPOINT_FLAG, checkpoint_dir)
    logger.info(
        "spark %s session ready (mode=%s, graphframes=%s)", spark.version, cfg.env.mode, graphframes
    )
    return spark


def graphframes_available(spark: SparkSession) -> bool:
    """Whether the session has the GraphFrames jars on its classpath."""
    return spark.conf.get(GRAPHFRAMES_FLAG, "false") == "true"


def remove_checkpoint_dir(spark: SparkSession) -> None:
    """Delete this run's checkpoint directory (any Hadoop file system)."""
    path = spark.conf.get(CHECKPOINT_FLAG, None)
    if not path:
        return
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.delete(hadoop_path, True)


def checkpoint_root(cfg: OneIdConfig) -> str:
    """Absolute root of the per-run checkpoint folders (``checkpoint_root``)."""
    return _absolute(cfg.env.checkpoint_root or _join(warehouse_root(cfg), "_checkpoints"))


def scratch_root(cfg: OneIdConfig) -> str:
    """Absolute root of the per-run local scratch folders (``scratch_root``)."""
    return _absolute(cfg.env.scratch_root or default_scratch_root())


def _checkpoint_folders(spark: SparkSession, cfg: OneIdConfig) -> LocalFolders | HadoopFolders:
    root = checkpoint_root(cfg)
    if "://" not in root:
        return LocalFolders(root)
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    return HadoopFolders(root, spark.sparkContext._jvm, hadoop_conf)


def _local_scratch_dir(cfg: OneIdConfig, run: str) -> str | None:
    """A private per-run ``spark.local.dir``, or None where it is decided elsewhere: a running
    SparkContext (it cannot change), ``SPARK_LOCAL_DIRS``, or ``spark.extra``."""
    if SparkContext._active_spark_context is not None:
        return None
    if os.environ.get("SPARK_LOCAL_DIRS") or LOCAL_DIR in cfg.env.spark.extra:
        logger.info("spark.local.dir left as set by SPARK_LOCAL_DIRS or spark.extra")
        return None
    folders = LocalFolders(private_root(scratch_root(cfg)))
    return start_run_folder(folders, f"{run}-{os.getpid()}", cfg.env.sweep_after_seconds)


def session_jars(cfg: OneIdConfig) -> tuple[list[Path], bool]:
    """Local paths of the jars a session needs (``jars.*``), and whether GraphFrames is among them.

    Local mode puts them in ``spark.jars``; for a cluster ``oneid jars`` prints them for
    ``spark-submit --jars``.
    """
    jars_conf = cfg.env.jars
    jars = resolve_configured(jars_conf.delta, jars_conf, "jars.delta")
    # Spark's Kafka source/sink (the realtime stage): four small jars, always on the classpath
    jars += resolve_configured(jars_conf.kafka, jars_conf, "jars.kafka")
    engine = cfg.pipeline.identity.components.engine
    if engine == "native":
        return jars, False
    try:
        jars += resolve_configured(jars_conf.graphframes, jars_conf, "jars.graphframes")
    except JarResolutionError as exc:
        if engine == "graphframes":
            raise
        logger.warning(
            "GraphFrames jars unavailable; connected components use the native engine "
            "(identity.components.engine=auto; set it to native to use that engine without "
            "looking for the jars). %s",
            exc,
        )
        return jars, False
    return jars, True


def _require_class(spark: SparkSession, name: str, conf_key: str) -> None:
    if not _has_class(spark, name):
        raise OneIdError(
            f"class {name} is not on the Spark classpath: pass the {conf_key} jars to "
            "spark-submit (deploy/submit.sh does) or check conf key " + conf_key
        )


def _has_class(spark: SparkSession, name: str) -> bool:
    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.spark.util.Utils.classForName(name, True, False)
    except Exception:  # py4j wraps ClassNotFoundException
        return False
    return True


def _absolute(path: str) -> str:
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])
