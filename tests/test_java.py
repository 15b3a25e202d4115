"""A missing or unsupported Java gives a clear error naming the versions that work."""

from __future__ import annotations

import pytest

from oneid.errors import JavaNotFoundError
from oneid.java import find_java


def _fake_java_home(tmp_path, version_line: str):
    bin_dir = tmp_path / "jdk" / "bin"
    bin_dir.mkdir(parents=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return tmp_path / "jdk"


@pytest.mark.parametrize(
    ("line", "major"),
    [('openjdk version "11.0.22" 2024-01-16', 11), ('java version "1.8.0_392"', 8)],
)
def test_unsupported_java_is_named(tmp_path, monkeypatch, line, major):
    monkeypatch.setenv("JAVA_HOME", str(_fake_java_home(tmp_path, line)))
    with pytest.raises(JavaNotFoundError) as err:
        find_java()
    assert f"is Java {major}" in str(err.value)
    assert "needs Java 17 or 21" in str(err.value)


def test_supported_java_is_accepted(tmp_path, monkeypatch):
    home = _fake_java_home(tmp_path, 'openjdk version "21.0.5" 2024-10-15')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert find_java().major == 21


def test_no_java_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="no java on PATH and JAVA_HOME is unset"):
        find_java()


def test_java_home_without_java(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="has no bin/java"):
        find_java()
