"""Local-mode sessions use Hadoop's local file systems without a process per file
(:mod:`oneid.local_fs`): the classes are in place, and behave as Hadoop's own."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from oneid import local_fs
from oneid.java import find_java


def test_a_local_session_uses_the_no_fork_classes(spark):
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    uri = jvm.java.net.URI("file:///")
    file_system = jvm.org.apache.hadoop.fs.FileSystem.get(uri, conf)
    assert file_system.getClass().getName() == "oneid.hadoop.NoForkLocalFileSystem"
    # the tests' small-data settings name the raw FileContext class: its no-fork twin replaces it
    context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(uri, conf)
    assert context.getDefaultFileSystem().getClass().getName() == "oneid.hadoop.NoForkRawLocalFs"


def _pair(spark):
    """Hadoop's raw local file system and its no-fork twin, both initialised."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    uri = jvm.java.net.URI("file:///")
    systems = (
        jvm.org.apache.hadoop.fs.RawLocalFileSystem(),
        jvm.oneid.hadoop.NoForkRawLocalFileSystem(),
    )
    for system in systems:
        system.initialize(uri, conf)
    return jvm, systems


def test_files_and_folders_get_the_permissions_hadoop_gives_them(spark, tmp_path: Path):
    jvm, systems = _pair(spark)
    modes = []
    for name, system in zip(("hadoop", "no-fork"), systems, strict=True):
        root = tmp_path / name
        folder = jvm.org.apache.hadoop.fs.Path(str(root / "a" / "b"))
        assert system.mkdirs(folder, jvm.org.apache.hadoop.fs.permission.FsPermission(0o750))
        file = jvm.org.apache.hadoop.fs.Path(str(root / "a" / "b" / "part.parquet"))
        system.create(file).close()
        system.setPermission(file, jvm.org.apache.hadoop.fs.permission.FsPermission(0o604))
        shared = jvm.org.apache.hadoop.fs.Path(str(root / "a"))
        system.setPermission(shared, jvm.org.apache.hadoop.fs.permission.FsPermission(0o1777))
        modes.append(
            [
                stat.S_IMODE(os.stat(p).st_mode)
                for p in (root / "a", root / "a" / "b", root / "a" / "b" / "part.parquet")
            ]
        )
    assert modes[0] == modes[1]
    assert modes[1][0] == 0o1777 and modes[1][2] == 0o604


@contextmanager
def hadoop_processes(jvm, dump: Path) -> Iterator[list[str]]:
    """The commands of the processes Hadoop's code starts in the JVM while the block runs
    (filled on exit), as the flight recorder sees them (``jdk.ProcessStart``, any thread).
    Processes started by other code are left out: Spark runs ``getconf PAGESIZE`` once per JVM
    for its memory metrics, whenever its heartbeat first asks for them."""
    commands: list[str] = []
    path = jvm.java.io.File(str(dump)).toPath()
    recording = jvm.jdk.jfr.Recording()
    recording.enable("jdk.ProcessStart").withStackTrace()
    recording.start()
    try:
        yield commands
    finally:
        recording.stop()
        recording.dump(path)
        recording.close()
    for event in jvm.jdk.jfr.consumer.RecordingFile.readAllEvents(path):
        callers = (
            frame.getMethod().getType().getName() for frame in event.getStackTrace().getFrames()
        )
        if any(caller.startswith("org.apache.hadoop.") for caller in callers):
            commands.append(event.getString("command"))


def test_no_process_starts_for_files_folders_or_delta_commits(spark, tmp_path: Path):
    """Counted, not inferred: Hadoop's own class starts a process to set a permission (the
    control: the recorder sees them), its twin starts none, and neither does a Delta table
    created, appended to and read through the session's file systems."""
    jvm, systems = _pair(spark)
    permission = jvm.org.apache.hadoop.fs.permission.FsPermission
    started = {}
    for name, system in zip(("hadoop", "no-fork"), systems, strict=True):
        with hadoop_processes(jvm, tmp_path / f"{name}.jfr") as commands:
            folder = jvm.org.apache.hadoop.fs.Path(str(tmp_path / name / "a"))
            system.mkdirs(folder, permission(0o750))
            file = jvm.org.apache.hadoop.fs.Path(str(tmp_path / name / "a" / "part"))
            system.create(file).close()
            system.setPermission(file, permission(0o604))
        started[name] = commands
    table = str(tmp_path / "table")
    with hadoop_processes(jvm, tmp_path / "delta.jfr") as commands:
        spark.range(5).repartition(2).write.format("delta").save(table)
        spark.range(5).write.format("delta").mode("append").save(table)
        assert spark.read.format("delta").load(table).count() == 10
    started["delta"] = commands
    assert any("chmod" in command for command in started["hadoop"]), started
    assert started["no-fork"] == started["delta"] == [], started


def test_link_statuses_are_hadoops(spark, tmp_path: Path):
    jvm, systems = _pair(spark)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for name in ("folder", "file", "link", "dangling"):
        path = jvm.org.apache.hadoop.fs.Path(str(tmp_path / name))
        hadoop, no_fork = (system.getFileLinkStatus(path) for system in systems)
        seen = [
            (s.isSymlink(), s.isDirectory(), s.getLen(), s.getPath().toString())
            for s in (hadoop, no_fork)
        ]
        assert seen[0] == seen[1], name
    missing = jvm.org.apache.hadoop.fs.Path(str(tmp_path / "missing"))
    for system in systems:
        with pytest.raises(Exception, match="FileNotFoundException"):
            system.getFileLinkStatus(missing)


def test_the_jar_is_built_once_per_machine(tmp_path: Path):
    java = find_java().executable
    jar = local_fs.no_fork_jar(java, tmp_path)
    assert jar is not None and jar.parent == tmp_path / "oneid"
    built = jar.stat().st_mtime_ns
    assert local_fs.no_fork_jar(java, tmp_path) == jar
    assert jar.stat().st_mtime_ns == built


def test_settings_replace_hadoops_classes_only(tmp_path: Path):
    java = find_java().executable
    chosen = {
        "spark.hadoop.fs.file.impl": "com.example.TheirFileSystem",
        "spark.driver.extraClassPath": "/opt/theirs.jar",
    }
    settings = local_fs.no_fork_settings(chosen, java, tmp_path)
    assert "spark.hadoop.fs.file.impl" not in settings  # a class of the user's own stays
    assert settings["spark.hadoop.fs.AbstractFileSystem.file.impl"] == "oneid.hadoop.NoForkLocalFs"
    first, jar = settings["spark.driver.extraClassPath"].split(os.pathsep)
    assert first == "/opt/theirs.jar" and Path(jar).is_file()


def test_a_failed_compile_keeps_hadoops_classes(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(local_fs, "COMPILER", "no.such.Compiler")
    with caplog.at_level(logging.WARNING, logger="oneid.local_fs"):
        assert local_fs.no_fork_settings({}, find_java().executable, tmp_path) == {}
    assert "not compiled" in caplog.text and "no.such.Compiler" in caplog.text
    assert list(tmp_path.rglob("*.jar")) == []


def test_missing_sources_keep_hadoops_classes(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(local_fs, "SOURCES", tmp_path / "nowhere")
    with caplog.at_level(logging.WARNING, logger="oneid.local_fs"):
        assert local_fs.no_fork_settings({}, find_java().executable, tmp_path) == {}
    assert "sources missing" in caplog.text


def test_a_driver_jvm_started_by_spark_submit_keeps_hadoops_classes(spark, monkeypatch):
    from pyspark import SparkContext

    assert local_fs.driver_can_load()  # the test session's JVM has them
    monkeypatch.setattr(SparkContext, "_jvm", None)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert local_fs.driver_can_load()  # this process would launch the JVM, with the jar
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")  # spark-submit launched it before us
    assert not local_fs.driver_can_load()
