"""``oneid publish --as-of D --destination X``: the day's audience changes, as files, once.

Per destination and day, files go to ``<exports>/<destination>/dt=<D>/`` with a
``manifest.json`` (rows and SHA-256 per file, one checksum over all). An export is built in a
scratch folder first; if the day was already published with the same checksum nothing is
written, with a different one the run fails unless ``--replace``; lines are in a canonical
order, so equal content has an equal checksum whatever the partitioning. Scratch folders of a
killed publish are swept by the next one (:mod:`oneid.scratch`). Holdout members are never
exported. ``audience.publish_log`` gets one row per (destination, dt) published, all in one
commit after the last export is installed; an export that a kill left installed but not logged
is logged by the next run.

- ``marketing_automation``: ``<audience>.jsonl``, one line per entered / exited / remapped
  OneID with the configured tags and masked contact data (never raw PII).
- ``tencent_ads`` / ``ocean_engine`` / ``meta``: ``<audience>/<add|remove>/<COLUMN>.txt``, one
  match key per line in the platform's format (``oneid.publish.platforms``). Entered and
  remapped OneIDs are added, exited ones removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.audiences.tables import CHANGES, STATS
from oneid.checkpoint import materialize
from oneid.conf import OneIdConfig
from oneid.conf.pipeline import DestinationConf
from oneid.control_files import local_path, require_local
from oneid.errors import ConfigError, DataContractError
from oneid.publish.match_keys import exportable_types, match_keys, normalised_identifiers
from oneid.scratch import OWNER_FILE, LocalFolders, start_run_folder
from oneid.session import warehouse_root
from oneid.tables import (
    append,
    committed,
    merge_keys,
    read_table,
    read_table_or_none,
    table_exists,
)
from oneid.tags import day_tags

logger = logging.getLogger(__name__)
PUBLISH_LOG = "audience.publish_log"
UNMARKED_BUILDS = re.compile(r"_building-[0-9a-f]{32}")
"""Scratch folders of a publish killed after its owner marker was removed (or of older
versions): swept by age only."""


@dataclass
class PublishReport:
    destination: str
    as_of: dt.date
    status: str
    """``published``, ``unchanged`` (same checksum already there) or ``replaced``."""
    folder: str
    checksum: str
    counts: dict[str, int] = field(default_factory=dict)


def exports_root(cfg: OneIdConfig) -> Path:
    """Where exports go: ``publish.exports_dir``, or ``<warehouse>/_exports``. Exports are files
    that Spark's tasks write and the driver then joins, checks and renames: a local path that
    the driver and every executor see (on a cluster, a shared mount), never a URI."""
    configured = cfg.pipeline.publish.exports_dir
    if configured:
        why = "exports are files the driver and every executor write to the same folder (on a "
        why += "cluster, a shared mount)"
        return require_local("publish.exports_dir", configured, why).expanduser().resolve()
    warehouse = local_path(warehouse_root(cfg))
    if warehouse is None:
        raise ConfigError(
            f"publish.exports_dir is not set and the warehouse {warehouse_root(cfg)} is not a "
            "local path: set publish.exports_dir to a folder the driver and every executor "
            "see (on a cluster, a shared mount)"
        )
    return warehouse / "_exports"


def run_publish(
    spark: SparkSession,
    cfg: OneIdConfig,
    as_of: dt.date,
    destinations: list[str],
    replace: bool = False,
) -> list[PublishReport]:
    """Publish the day's changes to each destination (all configured ones when empty), as the
    only publish run (its lease); the log is rolled back with a run that does not finish."""
    with atomic_run(spark, cfg, "publish", f"publish {as_of}", (PUBLISH_LOG,)):
        return _run_publish(spark, cfg, as_of, destinations, replace)


def _run_publish(
    spark: SparkSession,
    cfg: OneIdConfig,
    as_of: dt.date,
    destinations: list[str],
    replace: bool,
) -> list[PublishReport]:
    configured = cfg.pipeline.publish.destinations
    names = destinations or list(configured)
    unknown = sorted(set(names) - set(configured))
    if unknown:
        raise DataContractError(
            f"unknown destination(s) {unknown}; configured: {sorted(configured)} "
            "(publish.destinations)"
        )
    day = DayChanges.read(spark, cfg, as_of)
    identifiers = _platform_identifiers(spark, cfg, [configured[n] for n in names], day.rows)
    logged = _logged(spark, cfg, as_of)
    try:
        published = [
            _publish_one(spark, cfg, name, configured[name], day, as_of, replace, identifiers)
            for name in names
        ]
    finally:
        if identifiers is not None:
            identifiers.unpersist()
    # an unchanged export is logged too when a kill came between its install and the log
    _log(
        spark,
        cfg,
        as_of,
        [
            (report, manifest)
            for report, manifest in published
            if report.status != "unchanged" or logged.get(report.destination) != report.checksum
        ],
    )
    return [report for report, _ in published]


@dataclass(frozen=True)
class DayChanges:
    """The day's rows of ``audience.changes``, read once and kept (every destination's rows
    and match keys come from them: a Delta scan of the table would list its files again for
    each), and their counts by (audience_id, holdout, change)."""

    rows: DataFrame
    counts: dict[tuple[str, bool | None, str], int]

    @classmethod
    def read(cls, spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> DayChanges:
        """The day's changes; none on a quiet day (audiences ran: ``audience.stats`` has the
        day); an error when audiences did not run for the day."""
        changes = read_table_or_none(spark, cfg, CHANGES)
        if changes is not None:
            rows = materialize(changes.where(F.col("dt") == F.lit(as_of)))
            tally = rows.groupBy("audience_id", "holdout", "change").count().collect()
            if tally:
                return cls(rows, {(r.audience_id, r.holdout, r.change): r["count"] for r in tally})
            if not read_table(spark, cfg, STATS).where(F.col("dt") == F.lit(as_of)).isEmpty():
                return cls(rows, {})
        raise DataContractError(
            f"audiences did not run for {as_of}: run `oneid audiences --as-of {as_of}` first"
        )


def _platform_identifiers(
    spark: SparkSession, cfg: OneIdConfig, destinations: list[DestinationConf], day: DataFrame
) -> DataFrame | None:
    """Normalised identifiers of every OneID an ad platform export needs, computed once."""
    platforms = [d for d in destinations if d.kind != "marketing_automation"]
    if not platforms:
        return None
    try:
        types = sorted({t for d in platforms for t in exportable_types(d.kind, d.id_types)})
    except ValueError as exc:
        raise DataContractError(f"publish.destinations: {exc}") from None
    audiences = sorted({a for d in platforms for a in d.audiences})
    oneids = day.where(F.col("audience_id").isin(audiences) & ~F.col("holdout")).select("oneid")
    return normalised_identifiers(spark, cfg, oneids, types).persist(StorageLevel.MEMORY_AND_DISK)


def _publish_one(
    spark: SparkSession,
    cfg: OneIdConfig,
    name: str,
    destination: DestinationConf,
    day: DayChanges,
    as_of: dt.date,
    replace: bool,
    identifiers: DataFrame | None,
) -> tuple[PublishReport, dict]:
    """The export of one destination, installed; its report and manifest."""
    root = exports_root(cfg) / name
    final = root / f"dt={as_of.isoformat()}"
    scratch = _scratch_folder(cfg, root)
    mine = {key: n for key, n in day.counts.items() if key[0] in destination.audiences}
    counts = {"holdout_skipped": sum(n for (_, holdout, _), n in mine.items() if holdout is True)}
    sent = day.rows.where(
        F.col("audience_id").isin(list(destination.audiences)) & ~F.col("holdout")
    )
    try:
        if destination.kind == "marketing_automation":
            _write_marketing(spark, cfg, destination, sent, as_of, scratch)
            for (audience, holdout, change), n in mine.items():
                if holdout is False:  # the rows of ``sent``
                    counts[f"{audience}:{change}"] = n
            lines = sum(_line_count(scratch / f"{a}.jsonl") for a in destination.audiences)
            _check_written(name, sum(n for k, n in counts.items() if ":" in k), lines, scratch)
        else:
            assert identifiers is not None
            keys = _write_platform(destination, sent, identifiers, scratch, counts)
            lines = sum(n for key, n in counts.items() if key.count(":") == 2)
            _check_written(name, keys, lines, scratch)
        (scratch / OWNER_FILE).unlink()  # the marker is not part of the export
        manifest = _manifest(scratch, name, destination, as_of, counts)
        status = _install(scratch, final, manifest["checksum"], replace)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    committed(f"export {name}")
    logger.info("publish %s %s: %s (%s)", name, as_of, status, manifest["checksum"][:12])
    return PublishReport(name, as_of, status, str(final), manifest["checksum"], counts), manifest


def _scratch_folder(cfg: OneIdConfig, root: Path) -> Path:
    """A new ``_building-<uuid>`` folder under ``root``, after sweeping those of killed runs."""
    folders = LocalFolders(str(root))
    name = f"_building-{uuid.uuid4().hex}"
    return Path(start_run_folder(folders, name, cfg.env.sweep_after_seconds, UNMARKED_BUILDS))


def _write_marketing(
    spark: SparkSession,
    cfg: OneIdConfig,
    destination: DestinationConf,
    sent: DataFrame,
    as_of: dt.date,
    scratch: Path,
) -> None:
    tags = day_tags(spark, cfg, as_of, list(destination.tags)) if destination.tags else None
    contact = read_table(spark, cfg, "identity.profiles").select(
        "oneid", F.struct("best_phone", "best_email").alias("contact")
    )
    rows = sent.join(contact, "oneid", "left")
    if tags is not None:
        rows = rows.join(
            tags.select("oneid", F.struct(*destination.tags).alias("tags")), "oneid", "left"
        )
    lines = rows.select(
        "audience_id",
        F.col("audience_id").alias("audience"),
        F.col("version").alias("audience_version"),
        F.lit(as_of.isoformat()).alias("dt"),
        "oneid",
        "change",
        "from_oneid",
        "contact",
        *(["tags"] if tags is not None else []),
    )
    out = scratch / "_spark"
    whole_line = F.to_json(F.struct(*[c for c in lines.columns if c != "audience_id"]))
    (
        lines.repartition("audience_id")
        .sortWithinPartitions("audience_id", "change", "oneid", "from_oneid", whole_line)
        .write.partitionBy("audience_id")
        .option("ignoreNullFields", "false")
        .json(out.as_uri())
    )
    for audience in destination.audiences:
        parts = sorted((out / f"audience_id={audience}").glob("part-*"))
        target = scratch / f"{audience}.jsonl"
        _concatenate(parts, target)
    shutil.rmtree(out)


def _write_platform(
    destination: DestinationConf,
    sent: DataFrame,
    identifiers: DataFrame,
    scratch: Path,
    counts: dict[str, int],
) -> int:
    """The match keys of the day's sent rows, one file per (audience, action, key column); the
    number of keys sent."""
    id_types = exportable_types(destination.kind, destination.id_types)
    actions = sent.select(
        "audience_id",
        "oneid",
        F.when(F.col("change") == "exited", "remove").otherwise("add").alias("action"),
    )
    keys = match_keys(
        identifiers.join(actions.select("oneid").distinct(), "oneid"), destination.kind, id_types
    )
    resolved = keys.select("oneid").distinct()
    counts["oneids_without_keys"] = actions.join(resolved, "oneid", "left_anti").count()
    rows = actions.join(keys, "oneid").select("audience_id", "action", "column", "match_key")
    rows = rows.distinct().persist(StorageLevel.MEMORY_AND_DISK)
    out = scratch / "_spark"
    folders = ["audience_id", "action", "column"]
    try:
        sent_keys = rows.count()
        _write_keys(rows, folders, out)
    finally:
        rows.unpersist()
    for folder in sorted(out.glob("audience_id=*/action=*/column=*")):
        audience = folder.parent.parent.name.split("=", 1)[1]
        action = folder.parent.name.split("=", 1)[1]
        column = folder.name.split("=", 1)[1]
        target = scratch / audience / action / f"{column}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        _concatenate(sorted(folder.glob("part-*")), target)
        counts[f"{audience}:{action}:{column}"] = _line_count(target)
    shutil.rmtree(out)
    return sent_keys


def _write_keys(rows: DataFrame, folders: list[str], out: Path) -> None:
    """One folder of part files per value of ``folders``, the keys sorted within each."""
    (
        rows.repartition(*folders)
        # the folder columns first: a write sorts by its partitionBy columns unless the rows
        # already are, and that sort would drop an order by match_key alone
        .sortWithinPartitions(*folders, "match_key")
        .write.partitionBy(*folders)
        .text(out.as_uri())
    )


def _check_written(name: str, sent: int, lines: int, scratch: Path) -> None:
    """Every row sent is a line of the export: a folder that Spark's executors wrote to but
    the driver does not see (an exports path that is not a shared mount) loses them without
    an error of Spark's."""
    if lines != sent:
        raise DataContractError(
            f"publish {name}: {sent} row(s) sent, {lines} line(s) in the files under {scratch}: "
            "the driver does not see what the executors wrote; publish.exports_dir must be a "
            "folder every executor and the driver share (a shared mount)"
        )


def _concatenate(parts: list[Path], target: Path) -> None:
    """Join Spark's part files (one per partition key here, its lines in canonical order) into
    one file: the same content gives the same bytes, whatever the shuffle partitions."""
    with target.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, sink)


def _line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _manifest(
    scratch: Path, name: str, destination: DestinationConf, as_of: dt.date, counts: dict[str, int]
) -> dict:
    files = []
    for path in sorted(p for p in scratch.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append(
            {"path": str(path.relative_to(scratch)), "rows": _line_count(path), "sha256": digest}
        )
    checksum = hashlib.sha256(
        json.dumps([files, counts], sort_keys=True).encode("utf-8")
    ).hexdigest()
    manifest = {
        "destination": name,
        "kind": destination.kind,
        "dt": as_of.isoformat(),
        "audiences": list(destination.audiences),
        "files": files,
        "counts": dict(sorted(counts.items())),
        "checksum": checksum,
    }
    (scratch / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest


def _install(scratch: Path, final: Path, checksum: str, replace: bool) -> str:
    """Move the built export into place unless the same one is already there."""
    existing = final / "manifest.json"
    if existing.is_file():
        previous = json.loads(existing.read_text(encoding="utf-8")).get("checksum")
        if previous == checksum:
            return "unchanged"
        if not replace:
            raise DataContractError(
                f"{final} was published with different content (checksum {previous[:12]}, now "
                f"{checksum[:12]}); destinations may have consumed it: re-run with --replace"
            )
        shutil.rmtree(final)
        scratch.rename(final)
        return "replaced"
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(final)
    return "published"


def _logged(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date) -> dict[str, str]:
    """destination → checksum of its export of ``as_of`` in ``audience.publish_log``."""
    log = read_table_or_none(spark, cfg, PUBLISH_LOG)
    if log is None:
        return {}
    rows = log.where(F.col("dt") == F.lit(as_of)).select("destination", "checksum").collect()
    return {row.destination: row.checksum for row in rows}


def _log(
    spark: SparkSession,
    cfg: OneIdConfig,
    as_of: dt.date,
    exports: list[tuple[PublishReport, dict]],
) -> None:
    """Upsert the (destination, dt) rows of ``audience.publish_log``, in one commit."""
    if not exports:
        return
    rows = spark.createDataFrame(
        [
            (
                report.destination,
                as_of,
                report.checksum,
                len(manifest["files"]),
                json.dumps(manifest["counts"]),
            )
            for report, manifest in exports
        ],
        "destination string, dt date, checksum string, files int, counts string",
    ).withColumn("published_at", F.current_timestamp())
    if table_exists(spark, cfg, PUBLISH_LOG):
        merge_keys(rows, rows, cfg, PUBLISH_LOG, ["destination", "dt"])
    else:
        append(rows, cfg, PUBLISH_LOG)
