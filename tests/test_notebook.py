"""The notebook runs top to bottom, in its own kernel, on the shared demo warehouse (conftest)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from oneid import explore
from oneid.tables import read_table
from tests.support import REPO

pytestmark = pytest.mark.e2e

NOTEBOOK = REPO / "notebooks" / "explore_identity_graph.ipynb"
# the kernel starts its own Spark: keep it small; the native engine needs no GraphFrames jars
KERNEL_SET = (
    "spark.master=local[2];spark.driver_memory=1g;spark.shuffle_partitions=2;"
    "identity.components.engine=native"
)


def execute(nb: nbformat.NotebookNode, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel (cwd: notebooks/); a cell that raises fails the run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_HMAC_KEY", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            allow_errors=False,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        return client.execute()


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def test_a_failing_cell_fails_the_run():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    with pytest.raises(CellExecutionError, match="boom"):
        execute(nb, {})


def test_notebook_runs_on_the_demo_warehouse_and_shows_masked_values_only(spark, demo, monkeypatch):
    cfg = demo.cfg  # the whole pipeline on the default demo data, shared with other e2e tests
    nb = execute(
        nbformat.read(NOTEBOOK, as_version=4),
        {"ONEID_WAREHOUSE": cfg.env.warehouse, "ONEID_SET": KERNEL_SET},
    )
    shown = outputs(nb)
    assert [o for o in shown if o.output_type == "error"] == []
    text = "\n".join(o.get("data", {}).get("text/plain", o.get("text", "")) for o in shown)
    images = [o for o in shown if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the size distribution and the drawn component

    # what the notebook shows is what the library says about this warehouse
    monkeypatch.delenv("ONEID_HMAC_KEY", raising=False)
    largest = explore.largest_components(spark, cfg, n=10)
    person = explore.lookup_phone(spark, cfg, explore.pick_phone(spark, cfg))
    assert person.status == "found" and len(person.audiences) > 0
    for shown_value in (
        f"'phone': '{person.masked_phone}'",
        "'status': 'found'",
        f"'oneid': {person.oneid}",
        f"'day': {person.dt!r}",
        "'identity run': 'demo-1'",
    ):
        assert shown_value in text
    assert re.search(rf"^0\s+{largest.components.oneid[0]}\s", _plain(nb, "largest"), re.M)

    # no raw phone of bronze.crm_members anywhere in the outputs (masked forms only)
    raw_phones = {
        re.sub(r"\D", "", r.phone)[-11:]
        for r in read_table(spark, cfg, "bronze.crm_members").select("phone").collect()
        if r.phone and len(re.sub(r"\D", "", r.phone)) >= 11
    }
    everything = json.dumps(shown)
    assert len(raw_phones) > 100
    assert [p for p in raw_phones if p in everything] == []
    assert person.masked_phone in everything


def _plain(nb: nbformat.NotebookNode, variable: str) -> str:
    """text/plain outputs of the cells that assign ``variable``."""
    return "\n".join(
        out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        if cell.cell_type == "code" and cell.source.startswith(f"{variable} =")
        for out in cell.outputs
    )
