"""Small control files beside the tables (leases, the run journal) on any file system.

Local paths go straight to the operating system, where ``link`` and ``rename`` are atomic
(Hadoop's local file system checks and then creates, which two processes can both pass). Other
schemes go through Hadoop's ``FileSystem``, whose ``rename`` refuses an existing target on HDFS
and ABFS with a hierarchical namespace; a replacement is one atomic rename over the old file on
HDFS, a delete and a rename elsewhere; on S3 and GCS see ``docs/reliability.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from py4j.java_gateway import is_instance_of
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
        fs, hpath = self._hadoop(path)
        staged = self._staged(temporary, text)
        try:
            self._overwriting_rename(fs, staged, hpath)
        except Exception:
            fs.delete(staged, False)
            raise

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
                # not there (never written, released, taken over): no file. Replaced while we
                # read it (the old file's blocks went with it): read the new one
                if self._is(error, "java.io.FileNotFoundException"):
                    return None
                if attempt == READ_ATTEMPTS or not self._is(error, "java.io.IOException"):
                    raise
                logger.info("re-reading %s (%s)", path, error.java_exception.getClass().getName())
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def names(self, folder: str) -> list[str]:
        """Names of the entries of ``folder``, sorted ([] when it does not exist)."""
        local = local_path(folder)
        if local is not None:
            return sorted(os.listdir(local)) if local.is_dir() else []
        fs, hpath = self._hadoop(folder)
        try:
            statuses = fs.listStatus(hpath)
        except Py4JJavaError as error:
            if self._is(error, "java.io.FileNotFoundException"):
                return []  # never made, or removed (a rolled-back table's folder)
            raise
        return sorted(status.getPath().getName() for status in statuses)

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
            elif not local.is_dir():
                local.unlink(missing_ok=True)
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

    def _overwriting_rename(self, fs, source, target) -> None:  # py4j objects
        """Rename over an existing target: on HDFS one atomic operation (readers see the old
        file or the new one, never none); other Hadoop file systems offer no such rename, so
        there it is a delete and a rename."""
        context = self._spark.sparkContext
        if not self._is_instance(fs, "org.apache.hadoop.hdfs.DistributedFileSystem"):
            fs.delete(target, False)
            if not fs.rename(source, target):
                raise OSError(f"could not rename {source.toString()} to {target.toString()}")
            return
        rename_option = getattr(context._jvm.org.apache.hadoop.fs, "Options$Rename")
        options = context._gateway.new_array(rename_option, 1)
        options[0] = rename_option.OVERWRITE
        fs.rename(source, target, options)  # DistributedFileSystem's public rename with options

    def _is(self, error: Py4JJavaError, java_class: str) -> bool:
        """Whether the Java exception behind ``error`` is a ``java_class`` (or a subclass)."""
        return self._is_instance(error.java_exception, java_class)

    def _is_instance(self, java_object, java_class: str) -> bool:
        return bool(is_instance_of(self._spark.sparkContext._gateway, java_object, java_class))

    def _hadoop(self, path: str):  # py4j objects
        if self._spark is None:
            raise ValueError(f"{path}: a path that is not local needs a Spark session")
        jvm = self._spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        return hpath.getFileSystem(self._spark.sparkContext._jsc.hadoopConfiguration()), hpath


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
