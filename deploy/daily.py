"""Run the daily chain (``deploy/daily.yaml``) in one Spark driver: what the scheduled app runs.

    spark-submit deploy/daily.py [--as-of YYYY-MM-DD] [--time-zone TZ] -- --env cluster ...

Arguments after ``--`` go to every stage (``--env``, ``--conf-dir``, ``--set``). A cron schedule
has no date to pass, so ``--as-of`` defaults to yesterday in ``--time-zone``: the one place where
OneID reads the clock; the date is printed and every stage gets it explicitly. Every step must be
a stage of this build (checked before anything runs); the first failing stage stops the chain.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

STEPS_FILE = Path(__file__).with_name("daily.yaml")


def load_steps(path: Path) -> list[tuple[str, list[str]]]:
    """The ``(stage, argument templates)`` pairs of a chain file, in order."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(step["stage"], [str(arg) for arg in step.get("args", [])]) for step in data["steps"]]


def yesterday(time_zone: str, now: dt.datetime | None = None) -> str:
    """The day before ``now`` (default: the clock) in ``time_zone``, as YYYY-MM-DD."""
    zone = ZoneInfo(time_zone)
    today = (now or dt.datetime.now(zone)).astimezone(zone).date()
    return (today - dt.timedelta(days=1)).isoformat()


def _as_of(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    own, common = args[:split], args[split + 1 :]
    parser = argparse.ArgumentParser(prog="daily.py", description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", type=_as_of, default=None, help="as-of date (YYYY-MM-DD)")
    parser.add_argument("--time-zone", default="Asia/Shanghai", help="for the default as-of")
    parser.add_argument("--steps", type=Path, default=STEPS_FILE, help="chain file")
    options = parser.parse_args(own)

    from oneid.cli import main as oneid_main
    from oneid.stages import registered_stages

    steps = load_steps(options.steps)
    known = [stage.name for stage in registered_stages()]
    missing = [stage for stage, _ in steps if stage not in known]
    if missing:
        print(
            f"daily: error: {', '.join(missing)} not stage(s) of this build of oneid "
            f"(it has {', '.join(known)}); nothing was run",
            file=sys.stderr,
        )
        return 2
    as_of = options.as_of or yesterday(options.time_zone)
    print(f"daily: as-of {as_of}: {' -> '.join(stage for stage, _ in steps)}", file=sys.stderr)
    for stage, templates in steps:
        code = oneid_main([stage, *common, *(arg.format(as_of=as_of) for arg in templates)])
        if code:
            print(f"daily: {stage} failed (exit {code}); later steps not run", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
