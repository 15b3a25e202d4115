"""``oneid ingest --batch-id B``: land every declared source in bronze, bad rows in quarantine.

Per source and batch: rows read = rows accepted + rows quarantined, checked against what was
actually committed, or the job fails. Re-running a finished batch writes nothing; a batch that
died half-way is rolled back before the next run of the source (:mod:`oneid.atomic`). One
source has one writer at a time (its lease), so a file is ingested by one batch only and a new
batch takes only the files that arrived since; different sources ingest in parallel.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import Run, atomic_run
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import SourceConf
from oneid.delta_log import commit_info, latest_version
from oneid.errors import ConfigError, DataContractError
from oneid.ingest.batch_ids import check_batch_id
from oneid.ingest.fields import currency_problem, field_problem, present
from oneid.ingest.readers import list_files, read_source, resolve_secret_options, source_types
from oneid.tables import append, read_table_or_none, replace_where, table_exists, table_path

logger = logging.getLogger(__name__)

RUNS = "ops.ingest_runs"
FILE_FORMATS = frozenset({"csv", "json", "parquet"})
SCHEMAS = "ops.source_schemas"
RUNS_SCHEMA = (
    "source string, batch_id string, rows_read long, accepted long, quarantined long, "
    "reasons map<string,long>, files array<string>, file_stamps map<string,string>"
)
"""A row of :data:`RUNS` before its ``finished_at``."""


@dataclass(frozen=True)
class SourceReport:
    """The accounting of one source in one batch."""

    source: str
    batch_id: str
    rows_read: int
    accepted: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None
    changed_files: tuple[str, ...] = ()
    """Files earlier batches took that changed since: read again with ``modified_files:
    reread``, else left (and named here)."""


def ingest(
    spark: SparkSession,
    cfg: OneIdConfig,
    batch_id: str,
    only: Sequence[str] = (),
    replay: bool = False,
) -> list[SourceReport]:
    """Ingest the declared sources (or ``only`` those) as batch ``batch_id``; with ``replay``,
    read the files batch ``batch_id`` took again under the current conf and replace its rows
    (after a conf fix: rows it quarantined that now pass move to bronze)."""
    check_batch_id(batch_id, [] if replay else _batch_ids(spark, cfg))
    sources = cfg.pipeline.sources
    unknown = sorted(set(only) - set(sources))
    if unknown:
        raise ConfigError(f"--source {unknown}: not declared under sources: {sorted(sources)}")
    if not sources:
        raise ConfigError(f"{cfg.files[1]}: sources: no source declared")
    names = [name for name in sources if not only or name in only]
    workers = max(1, min(cfg.pipeline.ingest.parallel_sources, len(names)))
    if workers > 1 and not table_exists(spark, cfg, RUNS):
        # created once here: sources creating it at once would conflict and retry
        _append_runs(spark.createDataFrame([], RUNS_SCHEMA), cfg)
    # Sources are independent tables: ingesting a few at once hides Delta's per-commit latency.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        futures = [
            pool.submit(ingest_source, spark, cfg, name, sources[name], batch_id, replay)
            for name in names
        ]
        return [future.result() for future in futures]


def _batch_ids(spark: SparkSession, cfg: OneIdConfig) -> list[str]:
    """Every batch id an earlier ingest run recorded."""
    runs = read_table_or_none(spark, cfg, RUNS)
    return [] if runs is None else [r[0] for r in runs.select("batch_id").distinct().collect()]


@dataclass(frozen=True)
class IngestState:
    """What earlier batches of one source recorded: finished runs, files taken, column types."""

    runs: dict[tuple[str, str], tuple[int, int, int]]
    files: dict[str, dict[str, str]]
    """source -> file -> batch that took it"""
    types: dict[str, dict[str, str]]
    stamps: dict[str, dict[str, str]] = field(default_factory=dict)
    """source -> file -> its stamp when taken (runs before stamps were recorded have none)"""

    @classmethod
    def load(cls, spark: SparkSession, cfg: OneIdConfig, source: str) -> IngestState:
        mine = F.col("source") == source  # each source loads its own rows, under its lease
        runs: dict[tuple[str, str], tuple[int, int, int]] = {}
        files: dict[str, dict[str, str]] = {}
        stamps: dict[str, dict[str, str]] = {}
        frame = read_table_or_none(spark, cfg, RUNS)
        if frame is not None:
            if "file_stamps" not in frame.columns:
                frame = frame.withColumn("file_stamps", F.lit(None).cast("map<string,string>"))
            columns = ("source", "batch_id", "rows_read", "accepted", "quarantined", "files")
            # a replayed batch has a row per run: the latest one counts
            rows = frame.where(mine).orderBy("finished_at").select(*columns, "file_stamps")
            for row in rows.collect():
                runs[(row.source, row.batch_id)] = (row.rows_read, row.accepted, row.quarantined)
                for path in row.files or []:
                    files.setdefault(row.source, {})[path] = row.batch_id
                stamps.setdefault(row.source, {}).update(row.file_stamps or {})
        types: dict[str, dict[str, str]] = {}
        frame = read_table_or_none(spark, cfg, SCHEMAS)
        if frame is not None:
            for row in frame.where(mine).select("source", "column", "type").collect():
                types.setdefault(row.source, {})[row.column] = row.type
        return cls(runs, files, types, stamps)


def ingest_source(
    spark: SparkSession,
    cfg: OneIdConfig,
    name: str,
    source: SourceConf,
    batch_id: str,
    replay: bool = False,
) -> SourceReport:
    """Ingest one source as one batch, as the only writer of the source (its lease), in one
    atomic run (:mod:`oneid.atomic`): a kill leaves no trace of the batch but its rollback (a
    replay's rollback leaves the batch as it was before the replay)."""
    tables = [f"bronze.{name}", f"quarantine.{name}"]
    own_run = f"source = '{name}' AND batch_id = '{batch_id}'"
    if replay:  # the rows this run appends: its own, newer than the batch's earlier runs
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        own_run += f" AND finished_at >= TIMESTAMP '{started}'"
    label = f"ingest {name} batch {batch_id}" + (" (replay)" if replay else "")
    with atomic_run(spark, cfg, f"ingest.{name}", label, tables, {RUNS: own_run}) as run:
        state = IngestState.load(spark, cfg, name)  # under the lease: no other run takes them
        return _ingest_batch(spark, cfg, name, source, batch_id, state, run, replay)


def _ingest_batch(
    spark: SparkSession,
    cfg: OneIdConfig,
    name: str,
    source: SourceConf,
    batch_id: str,
    state: IngestState,
    run: Run,
    replay: bool = False,
) -> SourceReport:
    done = state.runs.get((name, batch_id))
    changed: tuple[str, ...] = ()
    if replay:
        files = _replayed_files(spark, name, source, batch_id, state)
    elif done is not None:
        logger.info("%s batch %s already ingested; nothing to do", name, batch_id)
        return SourceReport(name, batch_id, *done, skipped="already ingested")
    else:
        files, changed = _new_files(spark, name, source, batch_id, state)
    if source.format in FILE_FORMATS and not files:
        logger.info("%s batch %s: no new files", name, batch_id)
        return SourceReport(name, batch_id, 0, 0, 0, skipped="no new files", changed_files=changed)

    known_types = state.types.get(name, {})
    raw = read_source(spark, name, source, list(files), known_types)
    checked = raw.withColumn("_reason", quarantine_reason(source)).transform(
        lambda df: with_lineage(df, name, batch_id, source)
    )
    checked = checked.persist()
    try:
        if source.on_new_columns == "fail":
            _fail_on_new_columns(checked, name)
        reasons = {
            row["_reason"]: row["count"] for row in checked.groupBy("_reason").count().collect()
        }
        rows_read = sum(reasons.values())
        quarantined = sum(n for reason, n in reasons.items() if reason is not None)
        accepted = reasons.get(None, 0)
        if source.quarantines_too_much(quarantined, rows_read):
            raise _mostly_quarantined(checked, name, source, batch_id, rows_read, quarantined)
        condition = f"_batch_id = '{batch_id}'"
        tag = f"oneid ingest {name} {batch_id} {uuid.uuid4().hex}"
        # a new batch has no rows yet (a batch without a finished run left none: an unfinished
        # run is rolled back before the next run of its source): appended; a replay replaces
        options = {"partition_by": ("_batch_id",), "user_metadata": tag, "new": not replay}
        bronze_cols = [c for c in checked.columns if c not in {"_reason", "_raw", "_malformed"}]
        replace_where(
            checked.where(F.col("_reason").isNull()).select(*bronze_cols),
            cfg,
            f"bronze.{name}",
            condition,
            change_feed=True,  # standardize reads what changed from the feed
            **options,
        )
        quarantine_cols = [c for c in checked.columns if c != "_malformed"]
        replace_where(
            checked.where(F.col("_reason").isNotNull()).select(*quarantine_cols),
            cfg,
            f"quarantine.{name}",
            condition,
            **options,
        )
    finally:
        checked.unpersist()

    _check_accounting(spark, cfg, name, batch_id, rows_read, accepted, quarantined, tag)
    reason_counts = {k: v for k, v in reasons.items() if k is not None}
    if source.format in {"parquet", "delta", "jdbc"} and not known_types:
        run.share(SCHEMAS, f"source = '{name}'")
        _record_types(
            spark, cfg, name, source, raw_types=_types_of(spark, name, source, list(files))
        )
    _record_run(spark, cfg, name, batch_id, files, rows_read, accepted, quarantined, reason_counts)
    logger.info(
        "%s batch %s: read %d = accepted %d + quarantined %d %s",
        name,
        batch_id,
        rows_read,
        accepted,
        quarantined,
        reason_counts,
    )
    return SourceReport(
        name, batch_id, rows_read, accepted, quarantined, reason_counts, changed_files=changed
    )


def quarantine_reason(source: SourceConf) -> Column:
    """The first reason a raw row cannot be accepted, or NULL. Order: what the reader found
    (file problems, bad encoding), structure, drift, fields."""
    reason = F.when(F.col("_problem").isNotNull(), F.col("_problem"))
    reason = reason.when(F.col("_malformed"), F.lit("malformed_row"))
    reason = reason.when(F.col("_type_changed").isNotNull(), F.col("_type_changed"))
    if source.on_new_columns == "quarantine":
        reason = reason.when(
            F.size(F.col("_extra")) > 0,
            F.concat(F.lit("new_column:"), F.array_join(F.sort_array(F.map_keys("_extra")), ",")),
        )
    for key in source.record_key:
        reason = reason.when(~present(F.col(key)), F.lit(f"missing_record_key:{key}"))
    problems = [
        field_problem(F.col(column.field), column, source.time_zone, source.time_zone_aliases)
        for column in source.columns.values()
    ]
    currency = currency_problem(source)
    problems += [currency] if currency is not None else []
    return F.coalesce(reason, *problems) if problems else reason


def with_lineage(df: DataFrame, name: str, batch_id: str, source: SourceConf) -> DataFrame:
    """Add ``_source``, ``_batch_id``, ``_record_key``, ``_ingested_at`` and ``_row_hash``."""
    fields = [column.field for column in source.columns.values()]
    key = F.concat_ws(":", *[F.coalesce(F.trim(F.col(k)), F.lit("")) for k in source.record_key])
    return df.select(
        F.lit(name).alias("_source"),
        F.lit(batch_id).alias("_batch_id"),
        key.alias("_record_key"),
        *fields,
        "_extra",
        "_file",
        F.current_timestamp().alias("_ingested_at"),
        F.sha2(F.to_json(F.struct(*fields, "_extra")), 256).alias("_row_hash"),
        "_raw",
        "_malformed",
        "_reason",
    )


def _mostly_quarantined(
    checked: DataFrame,
    name: str,
    source: SourceConf,
    batch_id: str,
    rows_read: int,
    quarantined: int,
    top: int = 5,
) -> DataContractError:
    """The error of a batch that would quarantine too much: its top reasons, with counts and up
    to three files each (file names only: values stay in the files)."""
    file_name = F.regexp_extract(F.col("_file"), r"([^/]*)$", 1)
    rows = (
        checked.where(F.col("_reason").isNotNull())
        .groupBy("_reason")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.slice(F.sort_array(F.collect_set(file_name)), 1, 3).alias("files"),
        )
        .orderBy(F.desc("rows"), "_reason")
        .limit(top)
        .collect()
    )
    reasons = "; ".join(
        f"{r['_reason']}: {r['rows']} row{'s' * (r['rows'] != 1)} ({', '.join(r['files'])})"
        for r in rows
    )
    return DataContractError(
        f"sources.{name} batch {batch_id}: {quarantined} of {rows_read} rows "
        f"({quarantined / rows_read:.0%}) would be quarantined, over max_quarantined_share "
        f"{source.max_quarantined_share:g}; nothing was written. Top reasons: {reasons}. "
        "Fix the conf (a column name, a format) or the files and run the batch again, or raise "
        f"sources.{name}.max_quarantined_share."
    )


def _fail_on_new_columns(df: DataFrame, name: str) -> None:
    keys = df.select(F.explode(F.map_keys("_extra")).alias("k")).distinct().limit(20).collect()
    if keys:
        cols = sorted(row["k"] for row in keys)
        raise DataContractError(
            f"sources.{name}: new column(s) {cols} and on_new_columns=fail; map them in "
            "conf or set on_new_columns to keep / quarantine"
        )


def _new_files(
    spark: SparkSession, name: str, source: SourceConf, batch_id: str, state: IngestState
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Files under the source path that no other batch has taken (with their stamps), and the
    files an earlier batch took that changed since (taken again with ``modified_files:
    reread``). A missing path is an error; an empty folder is not: it has no new files."""
    if source.format not in FILE_FORMATS:
        return {}, ()
    taken, stamps = state.files.get(name, {}), state.stamps.get(name, {})
    found = source_files(spark, name, source)
    new = {path: stamp for path, stamp in found.items() if taken.get(path, batch_id) == batch_id}
    changed = tuple(
        path
        for path, stamp in found.items()
        if path not in new and stamps.get(path, stamp) != stamp
    )
    if changed and source.modified_files == "reread":
        new = {path: found[path] for path in sorted((*new, *changed))}
    elif changed:
        logger.warning(
            "%s batch %s: %d file(s) earlier batches took changed since and are not read again "
            "(first: %s); sources.%s.modified_files: reread takes them",
            name,
            batch_id,
            len(changed),
            changed[0],
            name,
        )
    return new, changed


def _replayed_files(
    spark: SparkSession, name: str, source: SourceConf, batch_id: str, state: IngestState
) -> dict[str, str]:
    """The files batch ``batch_id`` took, all still there (with their stamps), for a replay."""
    if (name, batch_id) not in state.runs:
        raise ConfigError(
            f"{name} batch {batch_id}: never ingested, nothing to replay (drop --replay)"
        )
    if source.format not in FILE_FORMATS:
        raise ConfigError(
            f"sources.{name}: a {source.format} source keeps no files per batch to read again; "
            "ingest a new batch instead of replaying one"
        )
    taken = sorted(path for path, batch in state.files.get(name, {}).items() if batch == batch_id)
    found = source_files(spark, name, source)
    gone = sorted(set(taken) - set(found))
    if gone:
        raise ConfigError(
            f"{name} batch {batch_id}: {len(gone)} of its {len(taken)} file(s) are no longer "
            f"under {source.path} (first: {gone[0]}); a replay reads the same files again"
        )
    return {path: found[path] for path in taken}


def source_files(spark: SparkSession, name: str, source: SourceConf) -> dict[str, str]:
    """Every data file under a file source's path, with its stamp (:func:`list_files`); a path
    that does not exist is an error."""
    try:
        return list_files(spark, source.path or "")
    except FileNotFoundError:
        raise ConfigError(f"sources.{name}.path: {source.path} does not exist") from None


def _types_of(
    spark: SparkSession, name: str, source: SourceConf, files: list[str]
) -> dict[str, str]:
    if source.format == "parquet":
        frame = spark.read.parquet(*files)
    elif source.format == "delta":
        frame = spark.read.format("delta").load(source.path or "")
    else:
        options = resolve_secret_options(name, source.options)
        frame = spark.read.format("jdbc").options(dbtable=source.table, **options).load()
    return source_types(frame, source)


def _record_types(
    spark: SparkSession, cfg: OneIdConfig, name: str, source: SourceConf, raw_types: dict[str, str]
) -> None:
    rows = [(name, column, kind) for column, kind in sorted(raw_types.items())]
    if rows:
        append(
            spark.createDataFrame(rows, "source string, column string, type string"), cfg, SCHEMAS
        )


def _check_accounting(
    spark: SparkSession,
    cfg: OneIdConfig,
    name: str,
    batch_id: str,
    rows_read: int,
    accepted: int,
    quarantined: int,
    tag: str,
) -> None:
    """Compare what Delta says this run's commits wrote with what was read.

    Delta makes no commit for an empty write, so a missing commit means zero rows written.
    """

    def written(table: str) -> int:
        path = table_path(cfg, table)
        version = latest_version(spark, path)
        last = commit_info(spark, path, version) if version >= 0 else None
        if last is None or last.get("userMetadata") != tag:
            return 0
        return int((last.get("operationMetrics") or {}).get("numOutputRows", "0"))

    got_accepted, got_quarantined = written(f"bronze.{name}"), written(f"quarantine.{name}")
    if (got_accepted, got_quarantined) != (accepted, quarantined) or (
        got_accepted + got_quarantined != rows_read
    ):
        raise DataContractError(
            f"{name} batch {batch_id}: rows read {rows_read} != accepted {got_accepted} + "
            f"quarantined {got_quarantined} committed; the batch is not recorded as done, re-run it"
        )


def _record_run(
    spark: SparkSession,
    cfg: OneIdConfig,
    name: str,
    batch_id: str,
    files: dict[str, str],
    rows_read: int,
    accepted: int,
    quarantined: int,
    reasons: dict[str, int],
) -> None:
    """One row per finished (source, batch): the commit marker that makes a re-run a no-op."""
    run = spark.createDataFrame(
        [(name, batch_id, rows_read, accepted, quarantined, reasons, list(files), files)],
        RUNS_SCHEMA,
    )
    _append_runs(run, cfg)


def _append_runs(rows: DataFrame, cfg: OneIdConfig) -> None:
    append(rows.withColumn("finished_at", F.current_timestamp()), cfg, RUNS)
