"""Find a Java runtime Spark can use, or say clearly which versions work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from oneid.errors import JavaNotFoundError
from oneid.jars import SPARK_VERSION

SUPPORTED_JAVA = (17, 21)


@dataclass(frozen=True)
class JavaRuntime:
    """The ``java`` binary Spark will launch and its major version."""

    executable: Path
    major: int


def find_java() -> JavaRuntime:
    """Return the Java Spark will use (``JAVA_HOME`` first, then ``PATH``), checked for version."""
    hint = (
        f"Spark {SPARK_VERSION} needs Java {' or '.join(map(str, SUPPORTED_JAVA))}: install one "
        "(e.g. Debian package openjdk-17-jre-headless) and set JAVA_HOME to it"
    )
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        executable = Path(java_home) / "bin" / "java"
        if not executable.is_file():
            raise JavaNotFoundError(f"JAVA_HOME={java_home} has no bin/java. {hint}")
    else:
        found = shutil.which("java")
        if not found:
            raise JavaNotFoundError(f"no java on PATH and JAVA_HOME is unset. {hint}")
        executable = Path(found)
    major = _major_version(executable)
    if major not in SUPPORTED_JAVA:
        raise JavaNotFoundError(f"{executable} is Java {major}. {hint}")
    return JavaRuntime(executable=executable, major=major)


def _major_version(executable: Path) -> int:
    try:
        result = subprocess.run(
            [str(executable), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise JavaNotFoundError(f"cannot run {executable}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise JavaNotFoundError(f"cannot read the version of {executable}: {result.stderr.strip()}")
    first = int(match.group(1))
    return int(match.group(2)) if first == 1 and match.group(2) else first
