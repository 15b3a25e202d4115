"""python -m oneid_demo --out DIR --people N --seed S"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from oneid_demo.demo import generate_demo

logger = logging.getLogger("oneid_demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oneid_demo", description="Write the deterministic OneID demo data."
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--people", type=int, default=5000, help="number of people (default 5000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--chunk-people", type=int, default=200_000, help="people per part file (default 200000)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    manifest = generate_demo(args.out, args.people, args.seed, args.chunk_people)
    for source, rows in manifest["rows"].items():
        logger.info("%-15s %9d rows  defects %s", source, rows, manifest["defects"][source])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
