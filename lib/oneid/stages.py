"""The pipeline's stages in data-flow order: one entry per ``oneid`` sub-command / job file.

A stage declares its own arguments and a ``run`` that takes the session and conf; the CLI, the
``jobs/`` files and ``oneid demo`` all go through this registry, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: rows per table it wrote, and notes for the summary."""

    tables: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """A pipeline stage run by ``oneid <name>`` and ``jobs/<name>.py``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[SparkSession, OneIdConfig, argparse.Namespace], StageResult]
    demo_args: Callable[[OneIdConfig], list[argparse.Namespace]]
    """The parsed arguments ``oneid demo`` runs this stage with (one run each): values as
    ``add_arguments`` gives them (dates as ``datetime.date``), so nothing goes back to text."""
    explain: Callable[[OneIdConfig, argparse.Namespace], str | None] = lambda cfg, args: None
    """Text to print instead of running (no Spark session), e.g. ``--explain``; None: run."""


@dataclass
class DemoRun:
    """What ``oneid demo`` ran: seconds per stage run, rows per table, the stages' notes."""

    timings: list[tuple[str, float]] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_demo_stages(spark: SparkSession, cfg: OneIdConfig) -> DemoRun:
    """Every registered stage with its ``demo_args``, in data-flow order, in one session."""
    import time

    run = DemoRun()
    for stage in registered_stages():
        for args in stage.demo_args(cfg):
            started = time.perf_counter()
            result = stage.run(spark, cfg, args)
            run.timings.append((demo_label(stage, args), time.perf_counter() - started))
            run.tables.update(result.tables)
            run.notes.extend(f"{stage.name}: {note}" for note in result.notes)
    return run


def demo_label(stage: Stage, args: argparse.Namespace) -> str:
    """``<stage> key=value ...`` of the arguments set, e.g. ``audiences as_of=2025-06-30``."""
    unset = (None, False, [])
    shown = [f"{key}={value}" for key, value in vars(args).items() if value not in unset]
    return " ".join([stage.name, *shown])


def registered_stages() -> list[Stage]:
    """All stages that exist, in data-flow order."""
    return [
        _ingest_stage(),
        _standardize_stage(),
        _identity_stage(),
        _tags_stage(),
        _audiences_stage(),
        _publish_stage(),
        _serve_sync_stage(),
    ]


def _ingest_stage() -> Stage:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--batch-id", required=True, help="batch id, e.g. 2025-06-30 or b42")
        parser.add_argument(
            "--source", action="append", default=[], help="only this source (repeatable)"
        )
        parser.add_argument(
            "--replay",
            action="store_true",
            help="read the files this batch took again under the current conf and replace its "
            "rows (after fixing a mapping or format)",
        )

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.ingest.job import ingest

        reports = ingest(spark, cfg, args.batch_id, args.source, args.replay)
        tables: dict[str, int] = {}
        notes = []
        for r in reports:
            tables[f"bronze.{r.source}"] = r.accepted
            tables[f"quarantine.{r.source}"] = r.quarantined
            status = f" ({r.skipped})" if r.skipped else ""
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(r.reasons.items()))
            notes.append(
                f"{r.source}: read {r.rows_read} = accepted {r.accepted} + quarantined "
                f"{r.quarantined}{status}{'; ' + reasons if reasons else ''}"
            )
            if r.changed_files:
                reread = cfg.pipeline.sources[r.source].modified_files == "reread"
                notes.append(
                    f"{r.source}: {len(r.changed_files)} file(s) earlier batches took changed "
                    + (
                        "since: read again (modified_files: reread)"
                        if reread
                        else f"since, not read again (sources.{r.source}.modified_files: reread "
                        f"takes them): {', '.join(r.changed_files[:3])}"
                    )
                )
        return StageResult(tables, tuple(notes))

    return Stage(
        name="ingest",
        help="land declared sources in bronze (bad rows in quarantine)",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [Namespace(batch_id="demo-1", source=[], replay=False)],
    )


def _standardize_stage() -> Stage:
    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.standardize.job import standardize

        report = standardize(spark, cfg, args.full)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.identifiers_by_reason.items()))
        return StageResult(report.tables, (report.mode, f"identifiers: {reasons}"))

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="rebuild silver from all of bronze, not only the records that changed",
        )

    return Stage(
        name="standardize",
        help="bronze -> silver: normalised, keyed-hashed identifiers and typed facts",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [Namespace(full=False)],
    )


def _identity_stage() -> Stage:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--run-id", required=True, help="id of this identity run")
        parser.add_argument(
            "--full", action="store_true", help="recompute every component, not only touched ones"
        )

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.identity.job import demo_run_id, resolve_identities

        run_id = args.run_id or demo_run_id(spark, cfg)  # None: `oneid demo`'s
        report = resolve_identities(spark, cfg, run_id, args.full)
        stats = report.stats
        kind = report.skipped or ("full" if report.full else "incremental")
        notes = (
            f"run {report.run_id} ({kind}): "
            f"{stats['identifiers']} identifiers -> {stats['oneids']} OneIDs, largest "
            f"{stats['largest_component']}, hubs {stats['hubs']}, changes {report.changes}",
            f"component sizes: {stats['histogram']}",
        )
        if stats.get("account_keys_cut"):
            notes += (
                f"WARNING: {stats['account_keys_cut']} account key(s) (identity.hubs."
                "account_types) cut as hubs: those customers link nothing (identity.hub_audit)",
            )
        tables = {"identity.oneid_map": stats["identifiers"], "identity.profiles": stats["oneids"]}
        return StageResult(tables, notes)

    return Stage(
        name="identity",
        help="resolve identifiers into stable OneIDs (hub guard, components, lineage, gates)",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [Namespace(run_id=None, full=False)],
    )


def _tags_stage() -> Stage:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--as-of", type=_date, help="business date YYYY-MM-DD")
        parser.add_argument("--from", dest="date_from", type=_date, help="backfill start date")
        parser.add_argument("--to", dest="date_to", type=_date, help="backfill end (inclusive)")

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.tags.job import run_tags

        dates = _dates(args)
        report = run_tags(spark, cfg, dates)
        notes = []
        for day, rows in sorted(report.summary.items()):
            by_metric: dict[str, list[str]] = {}
            for metric, key, count, share in rows:
                shown = f"{count}" if key == "" and share in (None, 1.0) else f"{share:.3f}"
                by_metric.setdefault(metric, []).append(f"{key}={count}" if key else shown)
            notes += [f"{day} {metric}: {', '.join(v)}" for metric, v in by_metric.items()]
        return StageResult(report.tables, tuple(notes))

    def demo_args(cfg: OneIdConfig) -> list[Namespace]:
        days = cfg.pipeline.demo.as_of
        return [Namespace(as_of=None, date_from=days[0], date_to=days[-1])]

    return Stage(
        name="tags",
        help="tag tables (RFM, value, preference, behaviour) for --as-of D or --from/--to",
        add_arguments=add_arguments,
        run=run,
        demo_args=demo_args,
    )


def _audiences_stage() -> Stage:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--as-of", type=_date, required=True, help="business date YYYY-MM-DD")
        parser.add_argument(
            "--explain", metavar="AUDIENCE", help="print the audience's SQL and compute nothing"
        )

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.audiences.job import run_audiences

        report = run_audiences(spark, cfg, args.as_of)
        notes = [
            f"{args.as_of} {audience}: "
            + ", ".join(f"{k} {v}" for k, v in figures.items() if k != "baseline" or v)
            for audience, figures in report.sizes.items()
        ]
        overlaps = ", ".join(f"{a}&{b}={n}" for (a, b), n in sorted(report.overlaps.items()))
        if overlaps:
            notes.append(f"{args.as_of} overlaps: {overlaps}")
        if report.later:
            notes.append(
                f"{args.as_of}: the later day {report.later} has changes diffed against an "
                f"earlier snapshot: run `oneid audiences --as-of {report.later}` again (then "
                "publish it with --replace if it was published)"
            )
        return StageResult(report.tables, tuple(notes))

    return Stage(
        name="audiences",
        help="audience snapshots for --as-of D, entered/exited diffs, stats (--explain ID: SQL)",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [
            Namespace(as_of=day, explain=None) for day in cfg.pipeline.demo.as_of
        ],
        explain=lambda cfg, args: _explain(cfg, args),
    )


def _publish_stage() -> Stage:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--as-of", type=_date, required=True, help="business date YYYY-MM-DD")
        parser.add_argument(
            "--destination",
            action="append",
            default=[],
            help="destination from publish.destinations (repeatable; default: all)",
        )
        parser.add_argument(
            "--replace", action="store_true", help="replace a day published with other content"
        )

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.publish.job import run_publish

        reports = run_publish(spark, cfg, args.as_of, args.destination, args.replace)
        notes = []
        for r in reports:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(r.counts.items()))
            notes.append(f"{r.as_of} {r.destination}: {r.status} ({r.checksum[:12]}) {shown}")
        return StageResult({}, tuple(notes))

    return Stage(
        name="publish",
        help="export the day's audience changes to destinations (idempotent, with manifests)",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [
            Namespace(as_of=day, destination=[], replace=False) for day in cfg.pipeline.demo.as_of
        ],
    )


def _serve_sync_stage() -> Stage:
    """``oneid serve-sync``: the batch's last step, the data service's online store loaded with
    the day's identity, tags and audiences. It reads what ``publish`` reads and nothing
    ``publish`` writes; it runs after it so that a day's run ends with the store serving it
    (a failed publish stops the chain, and the store keeps serving the previous day)."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--as-of",
            type=_date,
            help="date of the tags and audiences to serve (default: identity only)",
        )

    def run(spark: SparkSession, cfg: OneIdConfig, args: argparse.Namespace) -> StageResult:
        from oneid.serve.sync import sync_store

        report = sync_store(spark, cfg, args.as_of)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(report.counts.items()))
        note = f"store {cfg.env.serve.store} version {report.version}: {report.status} ({shown})"
        return StageResult({}, (note,))

    return Stage(
        name="serve-sync",
        help="load the data service's online store from a batch (versioned, atomic)",
        add_arguments=add_arguments,
        run=run,
        demo_args=lambda cfg: [Namespace(as_of=cfg.pipeline.demo.as_of[-1])],
    )


def _explain(cfg: OneIdConfig, args: argparse.Namespace) -> str | None:
    if not args.explain:
        return None
    from oneid.audiences.job import explain

    return explain(cfg, args.explain, args.as_of)


def _date(text: str) -> dt.date:
    """``--as-of`` and friends: the one place a date is parsed from text."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _dates(args: argparse.Namespace) -> list[dt.date]:
    from oneid.errors import OneIdError
    from oneid.tags.job import date_range

    if args.as_of and not (args.date_from or args.date_to):
        return [args.as_of]
    if args.date_from and args.date_to and not args.as_of:
        return date_range(args.date_from, args.date_to)
    raise OneIdError("give --as-of D, or --from D1 --to D2 (a backfill), not both")
