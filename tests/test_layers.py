"""Imports in lib/oneid point downward: shared modules know nothing of stages, a stage does not
reach into another stage's job module, and only the CLI uses the stage registry.

``python tests/test_layers.py`` prints every upward arrow it finds (one ``module -> module`` per
line), for a look before and after a refactor.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
STAGES = ("ingest", "standardize", "identity", "tags", "audiences", "publish", "serve", "realtime")
"""Stage packages of oneid, in data-flow order."""
SHARED = (
    "tables",
    "atomic",
    "leases",
    "control_files",
    "processes",
    "scratch",
    "conf",
    "session",
    "checkpoint",
    "errors",
    "jars",
    "java",
)
"""Modules (or packages) below every stage."""
TOP = ("oneid.stages", "oneid.cli")
"""The stage registry and the console script: only the CLI and jobs/ may import them."""


def imports(root: Path = LIB) -> set[tuple[str, str]]:
    """(importing module, imported oneid module) for every ``from oneid.x import`` / ``import``."""
    arrows = set()
    for path in sorted((root / "oneid").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            arrows |= {(module, name) for name in names if name.split(".")[0] == "oneid"}
    return arrows


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def upward(arrow: tuple[str, str]) -> bool:
    """True when ``arrow`` points up the layers (see the module docstring)."""
    source, target = arrow
    source_part = source.split(".")[1] if "." in source else ""
    if source_part in SHARED and _stage(target):
        return True
    source_stage, target_stage = _stage(source), _stage(target)
    if source_stage and target_stage and source_stage != target_stage:  # noqa: SIM102
        if target.endswith(".job") or STAGES.index(target_stage) > STAGES.index(source_stage):
            return True  # another stage's job module, or a later stage
    return target in TOP and source not in (*TOP, "oneid.__main__")


def upward_arrows(root: Path = LIB) -> list[tuple[str, str]]:
    return sorted(arrow for arrow in imports(root) if upward(arrow))


def test_imports_point_downward():
    assert upward_arrows() == []


def test_the_rule_sees_each_kind_of_upward_arrow():
    assert upward(("oneid.tables", "oneid.identity.keys"))  # shared -> stage
    assert upward(("oneid.publish.match_keys", "oneid.standardize.job"))  # another stage's job
    assert upward(("oneid.standardize.job", "oneid.publish.platforms"))  # a later stage
    assert upward(("oneid.explore", "oneid.stages"))  # the registry outside the CLI
    assert not upward(("oneid.identity.hubs", "oneid.standardize.hashing"))
    assert not upward(("oneid.stages", "oneid.tags.job"))
    assert not upward(("oneid.cli", "oneid.stages"))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else LIB
    for source, target in upward_arrows(root):
        print(f"{source} -> {target}")
