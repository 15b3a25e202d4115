"""Per-run scratch folders: owned by one process, removed at its exit, swept when it is gone.

A run's checkpoint folder (``<checkpoint_root>/<run>``) and, in local mode, Spark's local dir
(shuffle and spill files, which hold raw values while ingest runs) are created with an owner
marker, ``_owner.json``: host, pid, the process's start time and when the folder was made.
At start, a run sweeps the folders of runs that are gone:

- same host: the owner pid no longer exists, or is now another process (start time differs);
- another host (a cluster driver, a container): older than ``sweep_after_hours``, since a
  process on another machine cannot be checked;
- no marker: only a name the caller knows as its own (``unmarked``, e.g. the bare uuids of
  older versions' checkpoint folders), older than ``sweep_after_hours``. Anything else under
  the root is never touched, so a root shared with other data is safe.

A folder whose owner is alive is never touched. Exit cleanup runs on a normal exit and after
an unhandled exception (``atexit``); a killed run (``kill -9``, a lost container) leaves its
folders to the next run's sweep.
"""

from __future__ import annotations

import atexit
import getpass
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from oneid.errors import ConfigError
from oneid.processes import gone_on_this_host, process_start

logger = logging.getLogger(__name__)

OWNER_FILE = "_owner.json"
PRIVATE = 0o700


@dataclass(frozen=True)
class Owner:
    """The process that made a scratch folder."""

    host: str
    pid: int
    pid_started: int | None
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    created: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Owner | None:
        try:
            data = json.loads(text)
            started = data.get("pid_started")
            return cls(
                str(data["host"]),
                int(data["pid"]),
                None if started is None else int(started),
                float(data["created"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def this_process() -> Owner:
    """The owner record of the running process."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, process_start(pid), time.time())


def is_gone(owner: Owner | None, age_seconds: float, sweep_after_seconds: float) -> bool:
    """Whether a folder's owner is certainly gone (see the module notes for the rules)."""
    gone = None if owner is None else gone_on_this_host(owner.host, owner.pid, owner.pid_started)
    return age_seconds > sweep_after_seconds if gone is None else gone


class Folders(Protocol):
    """The run folders under one root, on some file system."""

    root: str

    def names(self) -> list[str]: ...

    def owner(self, name: str) -> tuple[Owner | None, float]:
        """The folder's owner marker (None when absent or unreadable) and its age in seconds."""
        ...

    def create(self, name: str, owner: Owner) -> str:
        """Make the folder with its marker; return its path."""
        ...

    def remove(self, name: str) -> None: ...


class LocalFolders:
    """Run folders on the local file system, private to the user (mode 0700)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def names(self) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir())
        except FileNotFoundError:
            return []

    def owner(self, name: str) -> tuple[Owner | None, float]:
        folder = Path(self.root, name)
        try:
            owner = Owner.from_json((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except OSError:
            owner = None
        try:
            changed = folder.stat().st_mtime
        except OSError:
            changed = time.time()
        return owner, time.time() - (owner.created if owner else changed)

    def create(self, name: str, owner: Owner) -> str:
        folder = Path(self.root, name)
        folder.mkdir(mode=PRIVATE, parents=True, exist_ok=True)  # a run id given twice: reused
        folder.chmod(PRIVATE)
        (folder / OWNER_FILE).write_text(owner.to_json(), encoding="utf-8")
        return str(folder)

    def remove(self, name: str) -> None:
        shutil.rmtree(Path(self.root, name), ignore_errors=True)


class HadoopFolders:
    """Run folders on any Hadoop file system (HDFS, S3A, ABFS ...), through the session's JVM."""

    def __init__(self, root: str, jvm: Any, hadoop_conf: Any) -> None:
        self.root = root
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(root).getFileSystem(hadoop_conf)

    def names(self) -> list[str]:
        root = self._path(self.root)
        if not self._fs.exists(root):
            return []
        return sorted(s.getPath().getName() for s in self._fs.listStatus(root) if s.isDirectory())

    def owner(self, name: str) -> tuple[Owner | None, float]:
        marker = self._path(f"{self.root}/{name}/{OWNER_FILE}")
        owner = None
        if self._fs.exists(marker):
            stream = self._fs.open(marker)
            try:
                data = bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()
            owner = Owner.from_json(data.decode("utf-8", "replace"))
        if owner is not None:
            return owner, time.time() - owner.created
        changed = self._fs.getFileStatus(self._path(f"{self.root}/{name}")).getModificationTime()
        return None, time.time() - changed / 1000

    def create(self, name: str, owner: Owner) -> str:
        folder = f"{self.root}/{name}"
        self._fs.mkdirs(self._path(folder))
        stream = self._fs.create(self._path(f"{folder}/{OWNER_FILE}"), True)
        try:
            stream.write(bytearray(owner.to_json().encode("utf-8")))
        finally:
            stream.close()
        return folder

    def remove(self, name: str) -> None:
        self._fs.delete(self._path(f"{self.root}/{name}"), True)


def sweep(
    folders: Folders, sweep_after_seconds: float, unmarked: re.Pattern[str] | None = None
) -> list[str]:
    """Remove the folders under ``folders.root`` whose owner is gone; return their names.

    A folder without an owner marker is a candidate only when ``unmarked`` matches its name.
    """
    removed = []
    for name in folders.names():
        try:
            owner, age = folders.owner(name)
            if owner is None and not (unmarked and unmarked.fullmatch(name)):
                continue
            if is_gone(owner, age, sweep_after_seconds):
                folders.remove(name)
                removed.append(name)
        except Exception as exc:  # a folder that vanished or is not ours: leave it
            logger.debug("not swept: %s/%s (%s)", folders.root, name, exc)
    if removed:
        logger.info("removed %d folder(s) of finished runs under %s", len(removed), folders.root)
    return removed


def start_run_folder(
    folders: Folders,
    name: str,
    sweep_after_seconds: float,
    unmarked: re.Pattern[str] | None = None,
) -> str:
    """Sweep ``folders``, then create this run's folder ``name``, removed when the process exits."""
    sweep(folders, sweep_after_seconds, unmarked)
    path = folders.create(name, this_process())
    at_exit(lambda: folders.remove(name))
    return path


def default_scratch_root() -> str:
    """``<system temp>/oneid-<user>``: one private folder per user on a shared machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = str(os.getuid())
    return str(Path(tempfile.gettempdir(), f"oneid-{user}"))


def private_root(path: str) -> str:
    """Create ``path`` (mode 0700) or check an existing one is this user's and private."""
    root = Path(path)
    root.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
    info = root.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(
            f"scratch_root {root} belongs to another user (uid {info.st_uid}); Spark's scratch "
            "files hold raw personal data: set conf key scratch_root to a folder of your own"
        )
    if stat.S_IMODE(info.st_mode) != PRIVATE:
        root.chmod(PRIVATE)
    return str(root)


_EXIT_TASKS: list[Callable[[], None]] = []


def at_exit(task: Callable[[], None]) -> None:
    """Run ``task`` when the interpreter exits (normal exit or unhandled exception), last added
    first; a failing task is logged and the others still run."""
    if not _EXIT_TASKS:
        atexit.register(_run_exit_tasks)
    _EXIT_TASKS.append(task)


def _run_exit_tasks() -> None:
    while _EXIT_TASKS:
        task = _EXIT_TASKS.pop()
        try:
            task()
        except Exception as exc:
            logger.warning("scratch clean-up at exit failed: %s", exc)
