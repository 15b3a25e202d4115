"""Small control files beside the tables (leases, the run journal) on any file system.

Local paths go straight to the operating system, where ``link`` and ``rename`` are atomic
(Hadoop's local file system checks and then creates, which two processes can both pass). Other
schemes go through Hadoop's ``FileSystem``, whose ``rename`` refuses an existing target on HDFS,
ABFS and GCS; a replacement is one atomic rename over the old file on HDFS, a delete and a
rename elsewhere; on S3 see ``docs/reliability.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from oneid.errors import ConfigError

logger = logging.getLogger(__name__)

READ_ATTEMPTS = 3


class ControlFiles:
    """Create-once, replace, read, list and delete small text files under one root."""

    def __init__(self, spark: SparkSession | None, root: str) -> None:
        """``spark`` reaches Hadoop's file systems; None serves local paths only."""
        self._spark = spark
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def create_new(self, path: str, text: str) -> bool:
        """Write ``text`` to ``path`` unless it exists; whether it was written.

        The file appears whole or not at all: it is written under a temporary name and then
        linked (local) or renamed (Hadoop: rename fails when the target exists) into place.
        """
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        local = local_path(path)
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            staged = local_path(temporary)
            assert staged is not None
            staged.write_text(text, encoding="utf-8")
            try:
                os.link(staged, local)
            except FileExistsError:
                return False
            finally:
                staged.unlink()
            return True
        fs, hpath = self._hadoop(path)
        staged = self._staged(temporary, text)
        if fs.rename(staged, hpath):
            return True
        fs.delete(staged, False)
        return False

    def replace(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` through a temporary file and a rename (never half written)."""
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        local = local_path(path)
        if local is not None:
            staged = local_path(temporary)
            assert staged is not None
            local.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(text, encoding="utf-8")
            os.replace(staged, local)
            return
        _, hpath = self._hadoop(path)
        staged = self._staged(temporary, text)
        self._overwriting_rename(staged, hpath)

    def read(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        local = local_path(path)
        if local is not None:
            try:
                return local.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        fs, hpath = self._hadoop(path)
        jvm = self._spark.sparkContext._jvm
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                stream = fs.open(hpath)
                try:
                    reader = jvm.java.io.InputStreamReader(stream, "UTF-8")
                    return jvm.org.apache.commons.io.IOUtils.toString(reader)
                finally:
                    stream.close()
            except Py4JJavaError as error:
                # gone (deleted or taken over between our look and our read): no file; replaced
                # while we read it (the old file's blocks went with it): read the new one
                if _java_class(error) == "java.io.FileNotFoundException":
                    return None
                if attempt == READ_ATTEMPTS:
                    raise
                logger.info("re-reading %s (%s)", path, _java_class(error))
        raise AssertionError("unreachable")

    def names(self, folder: str) -> list[str]:
        """Names of the entries of ``folder``, sorted ([] when it does not exist)."""
        local = local_path(folder)
        if local is not None:
            return sorted(os.listdir(local)) if local.is_dir() else []
        fs, hpath = self._hadoop(folder)
        if not fs.exists(hpath):
            return []
        return sorted(status.getPath().getName() for status in fs.listStatus(hpath))

    def rename(self, source: str, target: str) -> bool:
        """Move ``source`` to ``target``; False when ``source`` is gone (someone else moved it)."""
        local = local_path(source)
        if local is not None:
            try:
                os.rename(local, local_path(target))  # type: ignore[arg-type]
            except FileNotFoundError:
                return False
            return True
        fs, hpath = self._hadoop(source)
        return bool(fs.rename(hpath, self._hadoop(target)[1]))

    def delete(self, path: str, recursive: bool = False) -> None:
        local = local_path(path)
        if local is not None:
            if local.is_dir() and recursive:
                shutil.rmtree(local, ignore_errors=True)
            elif local.exists():
                local.unlink()
            return
        fs, hpath = self._hadoop(path)
        fs.delete(hpath, recursive)

    def _staged(self, path: str, text: str):  # a py4j Path
        """``text`` written to ``path`` (a temporary name) on a Hadoop file system."""
        fs, hpath = self._hadoop(path)
        stream = fs.create(hpath, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        return hpath

    def _overwriting_rename(self, source, target) -> None:  # py4j Paths
        """Rename over an existing target. ``FileContext`` with ``OVERWRITE`` is one atomic
        operation on HDFS (readers see the old file or the new one, never none); other Hadoop
        file systems carry it out as a delete and a rename."""
        context = self._spark.sparkContext
        jvm = context._jvm
        hadoop_fs = jvm.org.apache.hadoop.fs
        files = hadoop_fs.FileContext.getFileContext(
            target.toUri(), context._jsc.hadoopConfiguration()
        )
        rename_option = getattr(hadoop_fs, "Options$Rename")
        options = context._gateway.new_array(rename_option, 1)
        options[0] = rename_option.OVERWRITE
        files.rename(source, target, options)

    def _hadoop(self, path: str):  # py4j objects
        if self._spark is None:
            raise ValueError(f"{path}: a path that is not local needs a Spark session")
        jvm = self._spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        return hpath.getFileSystem(self._spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _java_class(error: Py4JJavaError) -> str:
    return error.java_exception.getClass().getName()


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local file system (plain or ``file:``)."""
    return local_path(path) is not None


def require_local(key: str, value: str, why: str) -> Path:
    """``value`` of conf key ``key`` as a local path; a URI is a :class:`ConfigError` saying
    ``why`` the path must be local."""
    path = local_path(value)
    if path is None:
        raise ConfigError(f"{key}: {value} is not a local path ({why})")
    return path


def local_path(path: str) -> Path | None:
    """The local path of ``path`` (plain or ``file:``), or None for another scheme."""
    if path.startswith("file:"):
        return Path("/" + path[len("file:") :].lstrip("/"))
    if "://" in path or ":" in path.split("/", 1)[0]:
        return None
    return Path(path)
