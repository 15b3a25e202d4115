"""Resolve the pinned JVM jars (Delta Lake, GraphFrames) to local files, with a cache.

We fetch exact ``group:artifact:version`` coordinates over HTTP ourselves instead of
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

from oneid.errors import JarResolutionError

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


@dataclass(frozen=True)
class Coordinate:
    """A Maven coordinate of a jar."""

    group: str
    artifact: str
    version: str

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        group_path = self.group.replace(".", "/")
        base = repository.rstrip("/")
        return f"{base}/{group_path}/{self.artifact}/{self.version}/{self.filename}"

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


def parse_coordinate(text: str) -> Coordinate:
    """Parse ``group:artifact:version``; raise ValueError otherwise."""
    parts = text.strip().split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"expected a Maven coordinate group:artifact:version, got {text!r}")
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
        _write_atomically(target, payload)
        _write_atomically(target.with_suffix(".jar.sha1"), actual.encode())
        logger.info("downloaded %s (%d bytes) into %s", coord, len(payload), target.parent)
        return target, reasons
    return None, reasons or ["no repositories configured"]


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "oneid-jar-resolver"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _write_atomically(target: Path, payload: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    os.replace(tmp, target)
