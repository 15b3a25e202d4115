"""A real HDFS (one NameNode, one DataNode) on loopback for tests, from Maven Central's jars.

Hadoop's ``MiniHadoopClusterManager`` (in ``hadoop-client-minicluster``, the shaded test
cluster Spark's own tests use) runs in a child JVM with HDFS only (``-nomr``); the Hadoop
client jars are pyspark's own, so the cluster's version is the client's. The cluster writes
its configuration once it serves; ``fs.defaultFS`` there is its URL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark

from oneid.conf import OneIdConfig
from oneid.jars import resolve_configured
from oneid.java import find_java

PYSPARK_JARS = Path(pyspark.__file__).resolve().parent / "jars"
TEST_JARS = ("junit:junit:4.13.2", "org.hamcrest:hamcrest-core:1.3")
"""What the minicluster's classes load besides Hadoop (JUnit's rules, for its test harness)."""
PYSPARK_JAR_PREFIXES = (
    "hadoop-client-api-",
    "hadoop-client-runtime-",
    "jcl-over-slf4j-",
    "slf4j-api-",
    "log4j-slf4j2-impl-",
    "log4j-api-",
    "log4j-core-",
    "snappy-java-",
)


def hadoop_version() -> str:
    """The Hadoop client version pyspark ships (its ``hadoop-client-api`` jar)."""
    for jar in PYSPARK_JARS.glob("hadoop-client-api-*.jar"):
        return jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    raise FileNotFoundError(f"no hadoop-client-api jar in {PYSPARK_JARS}")


def minicluster_classpath(cfg: OneIdConfig) -> list[Path]:
    fetched = resolve_configured(
        [f"org.apache.hadoop:hadoop-client-minicluster:{hadoop_version()}", *TEST_JARS],
        cfg.env.jars,
        "(tests) hadoop-client-minicluster",
    )
    ours = sorted(PYSPARK_JARS.glob("*.jar"))
    return [*fetched, *(jar for jar in ours if jar.name.startswith(PYSPARK_JAR_PREFIXES))]


@contextmanager
def mini_hdfs(cfg: OneIdConfig, folder: Path, timeout: float = 120.0) -> Iterator[str]:
    """Start HDFS with its data under ``folder``; yields its URL (``hdfs://localhost:PORT``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = folder / "conf.xml"
    log = folder / "hdfs.log"
    command = [
        str(find_java().executable),
        "-Xmx512m",
        "-cp",
        os.pathsep.join(str(jar) for jar in minicluster_classpath(cfg)),
        "org.apache.hadoop.mapreduce.MiniHadoopClusterManager",
        "-nomr",
        "-format",
        "-nnport",
        "0",
        "-nnhttpport",
        "0",
        "-writeConfig",
        str(written),
    ]
    with log.open("wb") as out:
        # its data lands in ./target under the working directory
        process = subprocess.Popen(
            command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield _wait_for_url(process, written, log, timeout)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _wait_for_url(process: subprocess.Popen, written: Path, log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"HDFS exited {process.returncode}: {log.read_text()[-3000:]}")
        text = written.read_text(encoding="utf-8") if written.is_file() else ""
        match = re.search(r"<name>fs.defaultFS</name><value>(hdfs://[^<]+)</value>", text)
        if match:
            return match.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"HDFS did not start in {timeout:.0f} s: {log.read_text()[-3000:]}")


def copy_to_local(spark, url: str, folder: Path) -> None:
    """Copy the tree at ``url`` to the local ``folder`` (no ``.crc`` files)."""
    jvm = spark.sparkContext._jvm
    source = jvm.org.apache.hadoop.fs.Path(url)
    fs = source.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.copyToLocalFile(False, source, jvm.org.apache.hadoop.fs.Path(str(folder)), True)
