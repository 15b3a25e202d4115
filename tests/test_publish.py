"""Export files are canonical: the same changes give the same bytes, whatever the partitioning."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from oneid.conf.pipeline import DestinationConf
from oneid.errors import ConfigError, DataContractError
from oneid.publish.job import (
    _check_written,
    _manifest,
    _scratch_folder,
    _write_platform,
    exports_root,
)
from oneid.scratch import OWNER_FILE, LocalFolders, this_process
from tests.support import dead_pid, shuffle_partitions

AS_OF = dt.date(2025, 6, 30)
TENCENT = DestinationConf(kind="tencent_ads", audiences=("vip", "win_back"), id_types=("phone",))


def _platform_export(spark, folder: Path) -> dict:
    """One day's tencent_ads export of 300 OneIDs over two audiences, built into ``folder``."""
    changes = ("entered", "exited", "remapped")
    sent = spark.createDataFrame(
        [(("vip", "win_back")[i % 2], i, changes[i % 3]) for i in range(300)],
        "audience_id string, oneid long, change string",
    )
    identifiers = spark.createDataFrame(
        [(i, "phone", f"+86139{i:08d}") for i in range(300)],
        "oneid long, id_type string, value string",
    )
    counts: dict[str, int] = {}
    keys = _write_platform(TENCENT, sent, identifiers, folder, counts)
    lines = sum(len(p.read_bytes().splitlines()) for p in folder.rglob("*.txt"))
    assert keys == lines == sum(n for k, n in counts.items() if k.count(":") == 2) > 0
    return _manifest(folder, "tencent_ads", TENCENT, AS_OF, counts)


def test_platform_files_are_sorted_and_equal_across_shuffle_partitions(spark, tmp_path):
    manifests = {}
    for partitions in (1, 2, 7):
        with shuffle_partitions(spark, partitions):
            manifests[partitions] = _platform_export(spark, tmp_path / str(partitions))
    files = sorted((tmp_path / "7").rglob("*.txt"))
    assert [f.relative_to(tmp_path / "7").as_posix() for f in files] == [
        "vip/add/HASH_MOBILE_PHONE.txt",
        "vip/remove/HASH_MOBILE_PHONE.txt",
        "win_back/add/HASH_MOBILE_PHONE.txt",
        "win_back/remove/HASH_MOBILE_PHONE.txt",
    ]
    for path in files:
        lines = path.read_bytes().splitlines()
        assert lines == sorted(lines) and len(lines) == len(set(lines)) > 40, path
        for partitions in (1, 2):
            same = tmp_path / str(partitions) / path.relative_to(tmp_path / "7")
            assert same.read_bytes() == path.read_bytes(), same
    assert {m["checksum"] for m in manifests.values()} == {manifests[1]["checksum"]}


def test_scratch_of_a_killed_publish_is_swept_and_exports_are_kept(cfg, tmp_path):
    root = tmp_path / "tencent_ads"
    (root / "dt=2025-06-29").mkdir(parents=True)
    (root / "dt=2025-06-29" / "manifest.json").write_text("{}")
    killed = "_building-" + "0" * 32
    LocalFolders(str(root)).create(killed, dataclasses.replace(this_process(), pid=dead_pid()))
    live = "_building-" + "1" * 32
    LocalFolders(str(root)).create(live, this_process())

    scratch = _scratch_folder(cfg, root)

    assert (scratch / OWNER_FILE).is_file()
    assert {p.name for p in root.iterdir()} == {"dt=2025-06-29", live, scratch.name}
    assert (root / "dt=2025-06-29" / "manifest.json").is_file()


def test_exports_go_to_a_local_folder_never_a_uri(cfg, tmp_path):
    def with_conf(warehouse: str, exports_dir: str | None):
        publish = cfg.pipeline.publish.model_copy(update={"exports_dir": exports_dir})
        return cfg.model_copy(
            update={
                "env": cfg.env.model_copy(update={"warehouse": warehouse}),
                "pipeline": cfg.pipeline.model_copy(update={"publish": publish}),
            }
        )

    assert exports_root(with_conf(str(tmp_path), None)) == tmp_path / "_exports"
    assert exports_root(with_conf("hdfs:///oneid/warehouse", "/mnt/exports")) == Path(
        "/mnt/exports"
    )
    assert exports_root(with_conf(f"file://{tmp_path}", None)) == tmp_path / "_exports"
    with pytest.raises(ConfigError, match=r"publish\.exports_dir is not set and the warehouse"):
        exports_root(with_conf("hdfs:///oneid/warehouse", None))  # was hdfs:/oneid/... locally
    with pytest.raises(ConfigError, match="s3a://bucket/exports is not a local path"):
        exports_root(with_conf(str(tmp_path), "s3a://bucket/exports"))


def test_rows_the_driver_does_not_find_in_the_files_fail_the_export(tmp_path):
    """Executors writing to a folder the driver does not share: Spark reports success."""
    _check_written("tencent_ads", 12, 12, tmp_path)
    with pytest.raises(DataContractError, match=r"12 row\(s\) sent, 0 line\(s\) in the files"):
        _check_written("tencent_ads", 12, 0, tmp_path)
