"""`oneid demo` runs again only on its own warehouse, never mixing two demos or a brand's tables
with its own, and removes nothing."""

from __future__ import annotations

import json

import pytest

from oneid.demo_warehouse import claim_demo_warehouse
from oneid.errors import DataContractError

DEFAULT = {"people": 5000, "seed": 42, "version": "7"}


def _table(root, name="bronze/orders"):
    log = root / name / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("{}", encoding="utf-8")


def _mark(root) -> dict:
    return json.loads((root / "_oneid" / "demo.json").read_text(encoding="utf-8"))


def test_a_warehouse_without_tables_is_marked_as_the_demos(tmp_path):
    claim_demo_warehouse(str(tmp_path / "new"), DEFAULT)
    assert _mark(tmp_path / "new") == DEFAULT
    scratch = tmp_path / "scratch"  # what `oneid check` or `oneid broker` leave there
    (scratch / "_checkpoints").mkdir(parents=True)
    (scratch / "_kafka" / "logs").mkdir(parents=True)
    claim_demo_warehouse(str(scratch), DEFAULT)
    assert _mark(scratch) == DEFAULT


def test_the_same_demo_again_runs_on_its_warehouse(tmp_path):
    claim_demo_warehouse(str(tmp_path), DEFAULT)
    _table(tmp_path)
    claim_demo_warehouse(str(tmp_path), dict(DEFAULT))
    assert (tmp_path / "bronze" / "orders" / "_delta_log").is_dir()


def test_other_demo_data_is_refused_and_the_warehouse_kept(tmp_path):
    claim_demo_warehouse(str(tmp_path), DEFAULT)
    _table(tmp_path)
    with pytest.raises(DataContractError) as error:
        claim_demo_warehouse(str(tmp_path), {**DEFAULT, "people": 300})
    assert str(error.value) == (
        f"the warehouse {tmp_path} holds the demo of 5000 people, seed 42, generator 7; this is "
        "the demo of 300 people, seed 42, generator 7: remove the warehouse first (`make clean`) "
        "or give the demo another one (`oneid demo --set warehouse=PATH`)"
    )
    assert _mark(tmp_path) == DEFAULT
    assert (tmp_path / "bronze" / "orders" / "_delta_log").is_dir()


def test_tables_no_demo_marked_are_refused_and_kept(tmp_path):
    for name in ("bronze/orders", "silver/identifiers", "identity/nodes", "gold/tags_rfm"):
        _table(tmp_path, name)
    with pytest.raises(DataContractError) as error:
        claim_demo_warehouse(str(tmp_path), DEFAULT)
    assert "holds 4 table(s) that no demo marked as its own (bronze.orders, gold.tags_rfm, " in (
        str(error.value)
    )
    assert "identity.nodes, ...); this is the demo of 5000 people" in str(error.value)
    assert not (tmp_path / "_oneid" / "demo.json").exists()
    assert (tmp_path / "silver" / "identifiers" / "_delta_log").is_dir()


def test_a_warehouse_not_on_local_disk_is_refused_and_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL taken for a relative path would create s3a:/bucket/...
    with pytest.raises(DataContractError, match="s3a://bucket/warehouse is not one"):
        claim_demo_warehouse("s3a://bucket/warehouse", DEFAULT)
    assert list(tmp_path.iterdir()) == []
    claim_demo_warehouse((tmp_path / "mounted").as_uri(), DEFAULT)  # a shared mount is local
    assert _mark(tmp_path / "mounted") == DEFAULT
