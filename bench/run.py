"""``make bench``: run the benchmarks in bench/bench_*.py and rewrite BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE_ORDER = (
    "generate",
    "ingest",
    "identity",
    "daily",
    "resolution",
    "tags",
    "cluster",
    "realtime",
    "serve",
)
"""BENCHMARKS.md sections in pipeline order; benchmarks not named here follow."""
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benchmarks, and tests.support

from harness import RESULTS_DIR, render_markdown, run_benchmark, save_result  # noqa: E402


def _modules() -> dict[str, object]:
    """Every benchmark, by name; a module defines ``BENCHMARK`` or a list ``BENCHMARKS``."""
    found = {}
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for bench in getattr(module, "BENCHMARKS", [module.BENCHMARK]):
            found[bench.name] = bench
    return found


def _selected(name: str, only: list[str] | None) -> bool:
    """``--only tags`` selects ``tags`` and its sizes ``tags_1m``, ``tags_10m``."""
    return not only or any(name == o or name.startswith(f"{o}_") for o in only)


def _family(name: str) -> tuple[str, float]:
    """``identity_1m`` -> ("identity", 1e6): sizes of one benchmark sort together, small first."""
    family, _, size = name.partition("_")
    scale = {"k": 1e3, "m": 1e6}.get(size[-1:], 0)
    number = size[:-1]
    return family, float(number) * scale if scale and number.isdigit() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="benchmark name (repeatable)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case")
    parser.add_argument("--work-dir", default=str(HERE.parent / "bench_data"))
    parser.add_argument("--render-only", action="store_true", help="rebuild BENCHMARKS.md only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    benches = _modules()
    if not args.render_only:
        for name, bench in benches.items():
            if not _selected(name, args.only):
                continue
            work = Path(args.work_dir) / name
            result = run_benchmark(bench, work, args.runs)
            print(f"{name}: saved {save_result(result)}")
            shutil.rmtree(work, ignore_errors=True)
    results = [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(RESULTS_DIR.glob("*.json"))
    ]
    families = [*PIPELINE_ORDER, *(_family(name)[0] for name in benches)]
    results.sort(
        key=lambda r: (
            families.index(_family(r["name"])[0])
            if _family(r["name"])[0] in families
            else len(families),
            _family(r["name"])[1],
        )
    )
    (HERE.parent / "BENCHMARKS.md").write_text(render_markdown(results), encoding="utf-8")
    print("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
