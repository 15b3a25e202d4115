"""PySpark's worker daemon, importing ``pyspark`` from the installed package, not from zips.

Spark puts ``pyspark.zip``, the py4j zip and the ``spark-core`` jar first on its Python workers'
path, and every task calls ``importlib.invalidate_caches()``, which makes each zip importer read
its archive's directory again (``pyspark.zip``: one importer per imported sub-package). Measured
with py-spy on the realtime stream: a third of a worker's busy time, 30-40 ms per archive and
task on a loaded 2-core machine. Local sessions run this daemon
(``spark.python.daemon.module``): when the installed ``pyspark`` has the archive's version, the
archives leave ``sys.path`` (and Python's importer cache) before ``pyspark`` is imported, and
the workers forked from the daemon import from plain folders, whose cache invalidation costs
nothing. Otherwise (no
installed ``pyspark``, or another version) nothing changes.
"""

from __future__ import annotations

import importlib.machinery
import re
import sys
import zipfile
from pathlib import Path

_VERSION = re.compile(r"""__version__[^=]*=\s*["']([^"']+)["']""")


def _archive_version(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            found = _VERSION.search(archive.read("pyspark/version.py").decode())
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return found.group(1) if found else None


def without_archives(path: list[str]) -> list[str]:
    """``path`` without its zips and jars when the ``pyspark`` found in the rest is the
    archive's version; else ``path`` unchanged."""
    kept = [p for p in path if not p.endswith((".zip", ".jar"))]
    zipped = [p for p in path if p.endswith("pyspark.zip")]
    spec = importlib.machinery.PathFinder.find_spec("pyspark", kept)
    py4j = importlib.machinery.PathFinder.find_spec("py4j", kept)
    if not zipped or py4j is None or spec is None or not spec.submodule_search_locations:
        return path
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        found = _VERSION.search(version_py.read_text())
    except OSError:
        return path
    if found is None or found.group(1) != _archive_version(zipped[0]):
        return path
    return kept


def forget_archives(path: list[str], kept: list[str]) -> None:
    """Drop the importers of the entries of ``path`` not in ``kept`` from Python's importer
    cache: starting this module made a zip importer for each archive, and
    ``importlib.invalidate_caches()`` (once per task) would still make each re-read its
    directory, though the archive is no longer on the path."""
    for entry in set(path) - set(kept):
        sys.path_importer_cache.pop(entry, None)


if __name__ == "__main__":
    _kept = without_archives(sys.path)
    forget_archives(sys.path, _kept)
    sys.path[:] = _kept
    from pyspark import daemon  # reads the worker module from sys.argv, as `-m pyspark.daemon`

    daemon.manager()
