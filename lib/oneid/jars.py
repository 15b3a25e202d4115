"""Resolve the pinned JVM jars (Delta Lake, GraphFrames, Kafka) to local files, with a cache.

We fetch exact ``group:artifact:version[:classifier]`` coordinates over HTTP ourselves instead of
``spark.jars.packages``: the set is pinned and verified, so no transitive resolution is needed;
a failure becomes one clear error (coordinates + the conf key to change) instead of an Ivy
stack trace inside the JVM launcher; and folders of jars work offline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oneid.errors import JarResolutionError

if TYPE_CHECKING:
    from oneid.conf.models import JarsConf

logger = logging.getLogger(__name__)

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
SPARK_VERSION = "4.1.1"
DELTA_VERSION = "4.1.0"
GRAPHFRAMES_VERSION = "0.11.0"
DELTA_JARS: tuple[str, ...] = (
    f"io.delta:delta-spark_2.13:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
)
GRAPHFRAMES_JARS: tuple[str, ...] = (
    f"io.graphframes:graphframes-spark4_2.13:{GRAPHFRAMES_VERSION}",
    f"io.graphframes:graphframes-graphx-spark4_2.13:{GRAPHFRAMES_VERSION}",
)

KAFKA_VERSION = "4.1.1"
SPARK_KAFKA_CLIENTS_VERSION = "3.9.1"
"""The kafka-clients version spark-sql-kafka-0-10 4.1.1 is built against (its pom);
a 3.9 client talks to a 4.x broker."""
SPARK_KAFKA_JARS: tuple[str, ...] = (
    f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION}",
    f"org.apache.spark:spark-token-provider-kafka-0-10_2.13:{SPARK_VERSION}",
    f"org.apache.kafka:kafka-clients:{SPARK_KAFKA_CLIENTS_VERSION}",
    "org.apache.commons:commons-pool2:2.12.1",
)
"""Spark's Kafka source and sink; their other dependencies (lz4, snappy, zstd, slf4j, jsr305,
scala-parallel-collections) are jars of pyspark itself."""
KAFKA_BROKER_JARS: tuple[str, ...] = (
    "com.dynatrace.hash4j:hash4j:0.22.0",
    "com.fasterxml.jackson.core:jackson-annotations:2.19.0",
    "com.fasterxml.jackson.core:jackson-core:2.19.0",
    "com.fasterxml.jackson.core:jackson-databind:2.19.0",
    "com.fasterxml.jackson.dataformat:jackson-dataformat-csv:2.19.0",
    "com.fasterxml.jackson.dataformat:jackson-dataformat-yaml:2.19.0",
    "com.fasterxml.jackson.datatype:jackson-datatype-jdk8:2.19.0",
    "com.github.ben-manes.caffeine:caffeine:3.2.0",
    "com.github.luben:zstd-jni:1.5.6-10",
    "com.google.re2j:re2j:1.8",
    "com.typesafe.scala-logging:scala-logging_2.13:3.9.5",
    "com.yammer.metrics:metrics-core:2.2.0",
    "commons-beanutils:commons-beanutils:1.9.4",
    "commons-collections:commons-collections:3.2.2",
    "commons-digester:commons-digester:2.1",
    "commons-logging:commons-logging:1.3.2",
    "commons-validator:commons-validator:1.9.0",
    "net.sf.jopt-simple:jopt-simple:5.0.4",
    "net.sourceforge.argparse4j:argparse4j:0.7.0",
    f"org.apache.kafka:kafka-clients:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-coordinator-common:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-group-coordinator-api:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-group-coordinator:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-metadata:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-raft:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-server-common:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-server:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-share-coordinator:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-storage-api:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-storage:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-tools-api:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka-transaction-coordinator:{KAFKA_VERSION}",
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    "org.apache.logging.log4j:log4j-api:2.24.3",
    "org.apache.logging.log4j:log4j-core:2.24.3",
    "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3",
    "org.bitbucket.b_c:jose4j:0.9.6",
    "org.hdrhistogram:HdrHistogram:2.2.2",
    "org.jspecify:jspecify:1.0.0",
    "org.lz4:lz4-java:1.8.0",
    "org.pcollections:pcollections:4.0.2",
    "org.scala-lang:scala-library:2.13.16",
    "org.scala-lang:scala-reflect:2.13.16",
    "org.slf4j:slf4j-api:1.7.36",
    "org.xerial.snappy:snappy-java:1.1.10.7",
    "org.yaml:snakeyaml:2.4",
)
"""The runtime classpath of a Kafka 4.1.1 broker (``kafka.Kafka``), as Maven resolves
``org.apache.kafka:kafka_2.13:4.1.1`` (runtime scope), plus the log4j binding of its
slf4j. Only the embedded development broker (:mod:`oneid.realtime.broker`) uses them; it runs
in a JVM of its own, so these never meet Spark's classpath."""


@dataclass(frozen=True)
class Coordinate:
    """A Maven coordinate of a jar."""

    group: str
    artifact: str
    version: str
    classifier: str = ""
    """Which of the version's jars (e.g. ``linux-x64``); none: the main one."""

    @property
    def filename(self) -> str:
        suffix = f"-{self.classifier}" if self.classifier else ""
        return f"{self.artifact}-{self.version}{suffix}.jar"

    def url(self, repository: str) -> str:
        group_path = self.group.replace(".", "/")
        base = repository.rstrip("/")
        return f"{base}/{group_path}/{self.artifact}/{self.version}/{self.filename}"

    def __str__(self) -> str:
        classifier = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.artifact}:{self.version}{classifier}"


def parse_coordinate(text: str) -> Coordinate:
    """Parse ``group:artifact:version[:classifier]``; raise ValueError otherwise."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError(
            f"expected a Maven coordinate group:artifact:version[:classifier], got {text!r}"
        )
    return Coordinate(*parts)


def resolve_jars(
    coordinates: Sequence[str],
    *,
    repositories: Sequence[str],
    folders: Sequence[str] = (),
    cache_dir: str | Path,
    offline: bool = False,
    timeout: float = 60.0,
    conf_key: str = "jars",
) -> list[Path]:
    """Return local paths of the jars, downloading missing ones into ``cache_dir``.

    Raises :class:`JarResolutionError` naming every coordinate that failed and the conf keys
    (``jars.repositories`` / ``jars.folders``) that fix it.
    """
    cache = Path(cache_dir).expanduser()
    found: list[Path] = []
    failures: list[str] = []
    for text in coordinates:
        coord = parse_coordinate(text)
        path = _find_local(coord, folders, cache)
        if path is None and not offline:
            path, reasons = _download(coord, repositories, cache, timeout)
        elif path is None:
            reasons = ["offline: not in jars.folders nor the cache"]
        if path is None:
            failures.append(f"{coord} ({'; '.join(reasons)})")
        else:
            found.append(path)
    if failures:
        raise JarResolutionError(
            f"cannot resolve {conf_key} jar(s): {', '.join(failures)}. "
            "Point jars.repositories at a Maven mirror that has them, or put the jar files in a "
            f"folder listed in jars.folders (cache: {cache}); see README 'Jars offline or behind "
            "a mirror'."
        )
    return found


def resolve_configured(coordinates: Sequence[str], settings: JarsConf, conf_key: str) -> list[Path]:
    """:func:`resolve_jars` with the repositories, folders, cache and timeout of ``jars.*``."""
    return resolve_jars(
        coordinates,
        repositories=settings.repositories,
        folders=settings.folders,
        cache_dir=settings.cache_dir,
        offline=settings.offline,
        timeout=settings.timeout_seconds,
        conf_key=conf_key,
    )


def _find_local(coord: Coordinate, folders: Sequence[str], cache: Path) -> Path | None:
    for folder in folders:
        candidate = Path(folder).expanduser() / coord.filename
        if candidate.is_file():
            return candidate.resolve()
    cached = cache / coord.group / coord.filename
    if cached.is_file() and _verified(cached):
        return cached
    return None


def _verified(path: Path) -> bool:
    marker = path.with_suffix(".jar.sha1")
    if not marker.is_file():
        return False
    return marker.read_text().strip() == _sha1(path)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(
    coord: Coordinate, repositories: Sequence[str], cache: Path, timeout: float
) -> tuple[Path | None, list[str]]:
    reasons: list[str] = []
    target = cache / coord.group / coord.filename
    for repo in repositories:
        url = coord.url(repo)
        try:
            expected = _fetch(url + ".sha1", timeout).decode().split()[0].strip().lower()
            payload = _fetch(url, timeout)
        except urllib.error.HTTPError as exc:
            reasons.append(f"{url}: HTTP {exc.code}")
            continue
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        actual = hashlib.sha1(payload).hexdigest()
        if actual != expected:
            reasons.append(f"{url}: checksum mismatch ({actual} != {expected})")
            continue
        write_atomically(target, payload)
        write_atomically(target.with_suffix(".jar.sha1"), actual.encode())
        logger.info("downloaded %s (%d bytes) into %s", coord, len(payload), target.parent)
        return target, reasons
    return None, reasons or ["no repositories configured"]


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "oneid-jar-resolver"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def write_atomically(target: Path, payload: bytes) -> None:
    """``payload`` into ``target`` through a temporary file beside it (readers never see half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.replace(tmp, target)
