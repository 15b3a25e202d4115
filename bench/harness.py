"""Benchmark harness: warm-up + repeated runs, medians, peak memory, BENCHMARKS.md.

A benchmark module ``bench/bench_<name>.py`` defines ``BENCHMARK``. Its ``cases`` callable
prepares data once and returns the cases to time; cases of one benchmark run interleaved (A, B,
A, B, ...) so that machine noise hits them alike, and ratios are taken against ``baseline``.
Results land in ``bench/results/<name>.json``; ``BENCHMARKS.md`` is rebuilt from all of them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).with_name("results")


@dataclass
class Case:
    """One thing to time. ``run`` may return extra metrics (e.g. rows, rounds) to report.

    A case doing its work in a child process of its own may return ``peak_rss_bytes``, that
    process's peak, which is reported instead of the sampled RSS of the whole process tree.
    """

    name: str
    run: Callable[[], dict | None]
    group: str = ""
    """Cases with the same group are compared against the group's baseline."""
    baseline: bool = False
    setup: Callable[[], None] | None = None
    """Untimed preparation before every run (e.g. copying a warehouse into place)."""


@dataclass
class Benchmark:
    name: str
    title: str
    description: str
    cases: Callable[[Path], list[Case]]
    runs: int = 3
    warmup: int = 1
    notes: list[str] = field(default_factory=list)


class PeakMemory:
    """Samples the RSS of this process and all its descendants (the Spark JVM included)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(self.interval)


def _tree_rss(pid: int) -> int:
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    stack.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_benchmark(bench: Benchmark, work_dir: Path, runs: int | None = None) -> dict:
    """Warm up, then time every case ``runs`` times interleaved; return the result record."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cases = bench.cases(work_dir)
    runs = runs or bench.runs
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    peaks: dict[str, int] = {case.name: 0 for case in cases}
    extras: dict[str, dict] = {case.name: {} for case in cases}
    for _ in range(bench.warmup):
        for case in cases:
            if case.setup:
                case.setup()
            case.run()
    for _ in range(runs):
        for case in cases:
            if case.setup:
                case.setup()
            with PeakMemory() as memory:
                started = time.perf_counter()
                extra = case.run() or {}
                elapsed = time.perf_counter() - started
            samples[case.name].append(elapsed)
            peak = extra.pop("peak_rss_bytes", None) or memory.peak
            peaks[case.name] = max(peaks[case.name], peak)
            extras[case.name] = extra
    rows = []
    for case in cases:
        times = samples[case.name]
        extra = dict(extras[case.name])
        if isinstance(extra.get("source_rows"), int):
            extra["rows_per_s"] = round(extra["source_rows"] / statistics.median(times))
        rows.append(
            {
                "case": case.name,
                "group": case.group,
                "baseline": case.baseline,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "runs": len(times),
                "peak_rss_mb": round(peaks[case.name] / 2**20),
                "extra": extra,
            }
        )
    return {
        "name": bench.name,
        "title": bench.title,
        "description": bench.description,
        "notes": bench.notes,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),
        "cases": rows,
    }


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    import pyspark

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_gib:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or ["?"])[0],
        "spark": pyspark.__version__,
    }


def save_result(result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def render_markdown(results: list[dict]) -> str:
    """BENCHMARKS.md from all saved results: medians, min–max, ratios vs each group's baseline."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run.py`); do not edit by hand. Each case ran after a",
        "warm-up, several times, interleaved with the cases it is compared to; times are medians",
        "with min–max. Peak memory is the RSS of the benchmark process and its children (the Spark",
        "JVM included). Ratios divide a case's median by its group's baseline median, measured",
        "side by side in the same run. The machine is shared and noisy: trust ratios over seconds.",
        "What the numbers mean and where the time goes: [performance](docs/performance.md).",
        "",
    ]
    for result in results:
        machine = result["machine"]
        lines += [
            f"## {result['title']}",
            "",
            result["description"],
            "",
            f"Measured {result['measured_at']} on {machine['cores']} cores ({machine['cpu']}), "
            f"{machine['memory']}, Python {machine['python']}, Spark {machine['spark']}, "
            f"{machine['java']}.",
            "",
            "| case | median s | min–max s | runs | peak RSS MB | ratio | details |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        baselines = {row["group"]: row["median_s"] for row in result["cases"] if row["baseline"]}
        for row in result["cases"]:
            base = baselines.get(row["group"])
            ratio = f"{row['median_s'] / base:.2f}×" if base else ""
            if row["baseline"]:
                ratio = "1.00× (baseline)"
            details = ", ".join(f"{k}={v}" for k, v in row["extra"].items())
            lines.append(
                f"| {row['case']} | {row['median_s']:.2f} | {row['min_s']:.2f}–{row['max_s']:.2f} "
                f"| {row['runs']} | {row['peak_rss_mb']} | {ratio} | {details} |"
            )
        lines.append("")
        lines += [f"- {note}" for note in result.get("notes", [])]
        if result.get("notes"):
            lines.append("")
    return "\n".join(lines)
