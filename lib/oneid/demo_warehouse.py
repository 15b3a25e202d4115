"""Which demo data a warehouse holds, so that ``oneid demo`` never mixes two.

``oneid demo`` ingests its generated files as batch ``demo-1``. A warehouse that took that batch
from other demo data (another ``--people`` or seed, or a newer generator) would skip it and
show the old people under the new heading; a warehouse of a brand's own tables would get the
demo's mixed into them. So the demo marks the warehouse it fills with the data it holds
(``<warehouse>/_oneid/demo.json``) and runs again only on its own: it refuses a warehouse with
tables and another mark or none, and says how to go on. It removes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from oneid.control_files import local_path
from oneid.errors import DataContractError

MARK = ("_oneid", "demo.json")


def claim_demo_warehouse(root: str, data: dict) -> None:
    """Mark ``root`` as the warehouse of the demo of ``data`` (people, seed, generator version),
    or raise when it holds tables of anything else. A warehouse not on a local disk (or a
    ``file://`` mount) is refused: the demo could not tell its tables from a brand's there."""
    base = local_path(root)
    if base is None:
        raise DataContractError(
            f"oneid demo writes a local warehouse; {root} is not one (a brand's warehouse, "
            "perhaps): give the demo a folder (`--set warehouse=PATH`, or file:///PATH on a "
            "mount every node shares)"
        )
    mark = base.joinpath(*MARK)
    held = mark.read_text(encoding="utf-8") if mark.is_file() else None
    wanted = json.dumps(data, sort_keys=True)
    if held == wanted:
        return
    tables = _tables(base)
    if tables:
        holds = (
            f"the demo of {_describe(json.loads(held))}"
            if held
            else f"{len(tables)} table(s) that no demo marked as its own ({', '.join(tables[:3])}"
            + (", ...)" if len(tables) > 3 else ")")
        )
        raise DataContractError(
            f"the warehouse {root} holds {holds}; this is the demo of {_describe(data)}: remove "
            "the warehouse first (`make clean`) or give the demo another one "
            "(`oneid demo --set warehouse=PATH`)"
        )
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(wanted, encoding="utf-8")


def _tables(base: Path) -> list[str]:
    """``zone.table`` of every Delta table under ``base`` (scratch and journal folders are not
    tables)."""
    return sorted(
        f"{log.parent.parent.name}.{log.parent.name}" for log in base.glob("*/*/_delta_log")
    )


def _describe(data: dict) -> str:
    return f"{data.get('people')} people, seed {data.get('seed')}, generator {data.get('version')}"
