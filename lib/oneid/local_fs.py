"""Hadoop's local file systems without a forked process per file, for local-mode sessions.

Without Hadoop's native library (pip's pyspark ships none), Hadoop's local file system starts a
``chmod`` process for every file and directory it creates and a ``readlink`` process for every
rename through FileContext (how Delta's log store commits): about 900 processes for the
one-date stages on 300 people, a tenth of their time (docs/performance.md). Four small
subclasses of Hadoop's classes (``local_fs_java/*.java``) set permissions and read link status
through ``java.nio`` instead and behave otherwise as their parents. They are compiled with
Janino (one of pyspark's own jars, so a Java runtime is enough) once per machine into the jar
cache, and a local-mode session puts them in place of the Hadoop classes it would use.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pyspark

from oneid.jars import write_atomically

logger = logging.getLogger(__name__)

SOURCES = Path(__file__).with_name("local_fs_java")
COMPILER = "org.codehaus.commons.compiler.samples.CompilerDemo"
"""Janino's command-line compiler (a drop-in for ``javac``), in pyspark's commons-compiler jar."""
FILE_SYSTEM_KEYS = {
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "org.apache.hadoop.fs.local.LocalFs",
}
"""Settings that name the local file system classes, with Hadoop's defaults."""
NO_FORK = {
    "org.apache.hadoop.fs.LocalFileSystem": "oneid.hadoop.NoForkLocalFileSystem",
    "org.apache.hadoop.fs.RawLocalFileSystem": "oneid.hadoop.NoForkRawLocalFileSystem",
    "org.apache.hadoop.fs.local.LocalFs": "oneid.hadoop.NoForkLocalFs",
    "org.apache.hadoop.fs.local.RawLocalFs": "oneid.hadoop.NoForkRawLocalFs",
}
"""Each Hadoop class and the class that replaces it (a class set to anything else stays)."""
CLASSPATH = "spark.driver.extraClassPath"
JAR_PATTERNS = ("hadoop-client-api-*.jar", "hadoop-client-runtime-*.jar", "slf4j-api-*.jar")
"""What the sources compile against, from pyspark's jars."""


def no_fork_settings(settings: Mapping[str, str], java: Path, cache_dir: Path) -> dict[str, str]:
    """The settings that put the no-fork classes in place of the Hadoop classes ``settings``
    name (or Hadoop's defaults), with their jar on the driver's classpath; ``{}`` (logged) when
    the jar cannot be built, and the session keeps Hadoop's classes."""
    jar = no_fork_jar(java, cache_dir)
    if jar is None:
        return {}
    updates = {}
    for key, default in FILE_SYSTEM_KEYS.items():
        replacement = NO_FORK.get(settings.get(key, default))
        if replacement:
            updates[key] = replacement
    if updates:
        classpath = settings.get(CLASSPATH)
        updates[CLASSPATH] = os.pathsep.join(filter(None, [classpath, str(jar)]))
    return updates


def driver_can_load() -> bool:
    """Whether the driver JVM will have the classes: this process launches it (with the jar on
    its classpath), or the running one loads them. A JVM that spark-submit started before
    Python (``PYSPARK_GATEWAY_PORT``) has its classpath already, without the jar."""
    from pyspark import SparkContext

    jvm = SparkContext._jvm
    if jvm is None:
        return "PYSPARK_GATEWAY_PORT" not in os.environ
    try:
        jvm.java.lang.Class.forName(NO_FORK["org.apache.hadoop.fs.LocalFileSystem"])
    except Exception:  # py4j wraps ClassNotFoundException
        return False
    return True


def spark_jars() -> Path:
    """The jars of the Spark that pyspark launches: ``$SPARK_HOME/jars``, else the package's."""
    home = os.environ.get("SPARK_HOME")
    return Path(home) / "jars" if home else Path(pyspark.__file__).parent / "jars"


def no_fork_jar(java: Path, cache_dir: Path) -> Path | None:
    """The compiled classes' jar in ``cache_dir``, named by a hash of the sources and of the
    jars they compile against (built when missing); ``None`` when compiling fails."""
    sources = sorted(SOURCES.glob("*.java"))
    if not sources:
        logger.warning("local file system sources missing from %s: Hadoop's classes stay", SOURCES)
        return None
    jars = spark_jars()
    against = [found for pattern in JAR_PATTERNS for found in sorted(jars.glob(pattern))]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for path in against:
        digest.update(path.name.encode())
    target = Path(cache_dir).expanduser() / "oneid" / f"local-fs-{digest.hexdigest()[:16]}.jar"
    if target.is_file():
        return target
    compiler = [*jars.glob("janino-*.jar"), *jars.glob("commons-compiler-*.jar")]
    with tempfile.TemporaryDirectory(prefix="oneid-local-fs-") as work:
        command = [
            str(java),
            "-cp",
            os.pathsep.join(map(str, compiler)),
            COMPILER,
            "-d",
            work,
            "-classpath",
            os.pathsep.join(map(str, against)),
            *map(str, sources),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess(command, -1, "", str(exc))
        classes = sorted(Path(work).rglob("*.class"))
        if done.returncode != 0 or len(classes) < len(sources):
            logger.warning(
                "local file system classes not compiled (Hadoop's own, which start a process "
                "per file written, stay in use): %s",
                (done.stderr or done.stdout).strip()[-2000:],
            )
            return None
        payload = io.BytesIO()
        with zipfile.ZipFile(payload, "w") as jar:
            for path in classes:
                jar.write(path, path.relative_to(work).as_posix())
    write_atomically(target, payload.getvalue())
    return target
