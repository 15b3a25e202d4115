"""``oneid check``: the conf tried against the declared sources before anything is written.

For each source it reads a sample of rows the way ingest reads them and reports, per column,
how many values were present and how many parse, what would be quarantined and why, and how
many identifiers of each type the sample holds; then whether the tag registry and the audience
rules can be computed from the declared sources. Nothing is written and no lease is taken.
Reports hold counts, column names and reasons, never values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig
from oneid.conf.pipeline import ColumnConf, SourceConf
from oneid.errors import ConfigError, OneIdError
from oneid.ingest.fields import field_problem, present
from oneid.ingest.job import FILE_FORMATS, quarantine_reason, source_files
from oneid.ingest.readers import read_source

SAMPLE_ROWS = 1000


@dataclass
class ColumnFigures:
    """One declared column in the sample: values present, and how many of them parse."""

    raw: str
    column: ColumnConf
    present: int
    ok: int


@dataclass
class SourceCheck:
    """What the sample of one source showed; ``errors`` make ``oneid check`` fail."""

    name: str
    files: int = 0
    rows: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    columns: list[ColumnFigures] = field(default_factory=list)
    identifiers: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    sources: list[SourceCheck]
    downstream: dict[str, tuple[bool, str]]
    """``tags`` / ``audiences`` -> (computable, what was found or the error that stops them)."""

    @property
    def ok(self) -> bool:
        computable = all(passed for passed, _ in self.downstream.values())
        return computable and not any(source.errors for source in self.sources)


def check(
    spark: SparkSession, cfg: OneIdConfig, only: Sequence[str] = (), rows: int = SAMPLE_ROWS
) -> CheckReport:
    """Sample every declared source (or ``only`` those), then check tags and audiences."""
    sources = cfg.pipeline.sources
    unknown = sorted(set(only) - set(sources))
    if unknown:
        raise ConfigError(f"--source {unknown}: not declared under sources: {sorted(sources)}")
    names = [name for name in sources if not only or name in only]
    checks = [_check_source(spark, name, sources[name], rows) for name in names]
    return CheckReport(checks, _downstream(spark, cfg))


def _check_source(spark: SparkSession, name: str, source: SourceConf, rows: int) -> SourceCheck:
    result = SourceCheck(name)
    try:
        files = []
        if source.format in FILE_FORMATS:
            files = list(source_files(spark, name, source))
            result.files = len(files)
            if not files:
                return result
        raw = read_source(spark, name, source, files)
        sample = raw.limit(rows).withColumn("_reason", quarantine_reason(source)).cache()
        try:
            _measure(sample, source, result)
        finally:
            sample.unpersist()
    except OneIdError as exc:
        result.errors.append(str(exc))
        return result
    if source.quarantines_too_much(result.quarantined, result.rows):
        result.errors.append(
            f"sources.{name}: {result.quarantined / result.rows:.0%} of the sample would be "
            f"quarantined, over max_quarantined_share {source.max_quarantined_share:g}: ingest "
            "would refuse it"
        )
    return result


def _measure(sample: DataFrame, source: SourceConf, result: SourceCheck) -> None:
    """Reasons, per-column and per-identifier counts of the sample (two Spark jobs)."""
    reasons = sample.groupBy("_reason").count().collect()
    result.rows = sum(row["count"] for row in reasons)
    result.reasons = {row["_reason"]: row["count"] for row in reasons if row["_reason"]}
    result.quarantined = sum(result.reasons.values())

    def count(condition: Column) -> Column:
        return F.coalesce(F.sum(condition.cast("long")), F.lit(0))

    zone, aliases = source.time_zone, source.time_zone_aliases
    columns = [(raw, column, F.col(column.field)) for raw, column in source.columns.items()]
    figures = [F.count(F.lit(1))]
    for _, column, value in columns:
        parses = field_problem(value, column, zone, aliases).isNull()
        figures += [count(present(value)), count(present(value) & parses)]
    figures += [count(present(F.col(ident.field))) for ident in source.identifiers]
    totals = list(sample.agg(*figures).first())[1:]
    for i, (raw, column, _) in enumerate(columns):
        result.columns.append(ColumnFigures(raw, column, totals[2 * i], totals[2 * i + 1]))
    for ident, n in zip(source.identifiers, totals[2 * len(columns) :], strict=True):
        result.identifiers[ident.type] = result.identifiers.get(ident.type, 0) + n


def _downstream(spark: SparkSession, cfg: OneIdConfig) -> dict[str, tuple[bool, str]]:
    """Whether the tag registry and the audience rules can be computed from the sources."""
    import datetime as dt

    from oneid.audiences.job import compiled_rules
    from oneid.tags.check import check_tags

    outcome = {}
    registry = cfg.pipeline.tags
    if registry.definitions:
        try:
            check_tags(spark, cfg.pipeline, dt.date.today())
            outcome["tags"] = (True, f"{len(registry.definitions)} tags")
        except ConfigError as exc:
            outcome["tags"] = (False, str(exc))
    if cfg.audiences.audiences:
        try:
            compiled = compiled_rules(cfg)
            outcome["audiences"] = (True, f"{len(compiled.audiences)} audiences")
        except ConfigError as exc:
            outcome["audiences"] = (False, str(exc))
    return outcome


def report_lines(report: CheckReport) -> list[str]:
    """The report as ``oneid check`` prints it."""
    lines = []
    for source in report.sources:
        sampled = f"{source.rows} rows sampled" + (
            f" from {source.files} file(s)" if source.files else ""
        )
        share = f"{source.quarantined / source.rows:.1%}" if source.rows else "-"
        lines.append(f"{source.name}: {sampled}; would quarantine {source.quarantined} ({share})")
        for figures in source.columns:
            column = figures.column
            kind = column.type + (f" {'|'.join(column.formats())}" if column.formats() else "")
            bad = figures.present - figures.ok
            lines.append(
                f"  {figures.raw} -> {column.field} ({kind}): {figures.present} present, "
                f"{figures.ok} parse" + (f", {bad} do not" if bad else "")
            )
        if source.identifiers:
            counted = ", ".join(f"{kind} {n}" for kind, n in source.identifiers.items())
            lines.append(f"  identifiers: {counted}")
        if source.reasons:
            ranked = sorted(source.reasons.items(), key=lambda item: (-item[1], item[0]))
            lines.append("  quarantine reasons: " + ", ".join(f"{r} {n}" for r, n in ranked))
        lines += [f"  ERROR {error}" for error in source.errors]
        if not source.rows and not source.errors:
            lines.append("  (no rows to sample)")
    for stage, (passed, text) in report.downstream.items():
        lines.append(f"{stage}: {'ok: ' if passed else 'ERROR '}{text}")
    lines.append("check: ok" if report.ok else "check: FAILED (see ERROR lines)")
    return lines
