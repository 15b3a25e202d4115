"""Jar resolution: folders, cache, a real HTTP repository on loopback, and clear failures."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from oneid.errors import JarResolutionError
from oneid.jars import parse_coordinate, resolve_jars

COORD = "org.example:tiny-lib_2.13:1.2.3"
JAR_PATH = "org/example/tiny-lib_2.13/1.2.3/tiny-lib_2.13-1.2.3.jar"


@pytest.fixture
def repository(tmp_path):
    """A Maven-layout repository served over HTTP on 127.0.0.1; yields (url, files, hits)."""
    root = tmp_path / "repo"
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, hits
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, payload: bytes, checksum: str | None = None) -> None:
    jar = root / JAR_PATH
    jar.parent.mkdir(parents=True, exist_ok=True)
    jar.write_bytes(payload)
    (root / (JAR_PATH + ".sha1")).write_text(checksum or hashlib.sha1(payload).hexdigest())


def test_parse_coordinate():
    coord = parse_coordinate(COORD)
    assert (coord.group, coord.artifact, coord.version) == ("org.example", "tiny-lib_2.13", "1.2.3")
    assert coord.url("https://m.example/maven2/") == "https://m.example/maven2/" + JAR_PATH
    with pytest.raises(ValueError, match="group:artifact:version"):
        parse_coordinate("org.example:tiny")
    with pytest.raises(ValueError, match="group:artifact:version"):
        parse_coordinate(COORD + ":")


def test_a_classifier_names_one_of_the_versions_jars():
    coord = parse_coordinate("tools.profiler:async-profiler:4.2:linux-x64")
    assert coord.filename == "async-profiler-4.2-linux-x64.jar"
    assert coord.url("https://m.example/maven2") == (
        "https://m.example/maven2/tools/profiler/async-profiler/4.2/async-profiler-4.2-linux-x64.jar"
    )
    assert str(coord) == "tools.profiler:async-profiler:4.2:linux-x64"


def test_downloads_verifies_and_caches(tmp_path, repository):
    url, root, hits = repository
    _publish(root, b"jar bytes")
    cache = tmp_path / "cache"
    first = resolve_jars([COORD], repositories=[url], cache_dir=cache)
    assert first[0].read_bytes() == b"jar bytes"
    assert first[0] == cache / "org.example" / "tiny-lib_2.13-1.2.3.jar"
    hits.clear()
    second = resolve_jars([COORD], repositories=[url], cache_dir=cache)
    assert second == first and hits == []  # served from the cache, no request


def test_mirror_order_falls_through_to_a_working_repository(tmp_path, repository):
    url, root, _ = repository
    _publish(root, b"from second")
    dead = url + "missing/"
    paths = resolve_jars([COORD], repositories=[dead, url], cache_dir=tmp_path / "c")
    assert paths[0].read_bytes() == b"from second"


def test_checksum_mismatch_is_rejected(tmp_path, repository):
    url, root, _ = repository
    _publish(root, b"tampered", checksum="0" * 40)
    with pytest.raises(JarResolutionError, match="checksum mismatch"):
        resolve_jars([COORD], repositories=[url], cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "org.example" / "tiny-lib_2.13-1.2.3.jar").exists()


def test_folder_is_searched_first_and_works_offline(tmp_path):
    folder = tmp_path / "jars"
    folder.mkdir()
    (folder / "tiny-lib_2.13-1.2.3.jar").write_bytes(b"local")
    paths = resolve_jars(
        [COORD], repositories=[], folders=[str(folder)], cache_dir=tmp_path / "c", offline=True
    )
    assert paths == [folder / "tiny-lib_2.13-1.2.3.jar"]


def test_unresolvable_jar_names_coordinates_and_conf_keys(tmp_path, repository):
    url, _, _ = repository
    with pytest.raises(JarResolutionError) as err:
        resolve_jars(
            [COORD], repositories=[url], cache_dir=tmp_path / "c", conf_key="jars.graphframes"
        )
    message = str(err.value)
    assert "cannot resolve jars.graphframes jar(s): org.example:tiny-lib_2.13:1.2.3" in message
    assert "HTTP 404" in message
    assert "jars.repositories" in message and "jars.folders" in message


def test_offline_without_the_jar(tmp_path):
    with pytest.raises(JarResolutionError, match=r"offline: not in jars\.folders nor the cache"):
        resolve_jars(
            [COORD], repositories=["http://127.0.0.1:9/"], cache_dir=tmp_path, offline=True
        )
