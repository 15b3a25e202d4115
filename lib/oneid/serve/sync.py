"""``oneid serve-sync``: load the online store from a batch's Delta tables, as one new version.

The version is named after the batch (``<as-of>.<identity run>.<digest>``, the digest of the
Delta versions read), so syncing the same batch again writes nothing: the store already holds
that version and it is made to serve. Tables are read as their last complete runs left them
(:func:`oneid.atomic.atomic_run` pins them), never a run in progress. Rows go to the store in
batches from Spark's local iterator: the driver never holds the whole store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.atomic import atomic_run
from oneid.audiences.tables import CHANGES, MEMBERSHIP
from oneid.conf import OneIdConfig
from oneid.errors import DataContractError
from oneid.serve import profile_rows
from oneid.serve.settings import open_store
from oneid.serve.store import ProfileStore, StoreVersion
from oneid.tables import PINS, read_table, read_table_or_none, table_exists, table_version
from oneid.tags.tables import tag_tables

logger = logging.getLogger(__name__)

IDENTITY = (
    "identity.oneid_map",
    "identity.nodes",
    "identity.incidence",
    "identity.profiles",
    "identity.oneid_changes",
)
STORE_FORMAT = 2
"""What a version holds (2: retirements too); in the version's digest, so a store loaded by an
older OneID is loaded again rather than found ``unchanged``."""


@dataclass(frozen=True)
class SyncReport:
    version: str
    status: str
    """``loaded``, ``unchanged`` (already serving) or ``activated`` (held, made to serve)."""
    counts: dict[str, int]
    seconds: float


def sync_store(
    spark: SparkSession, cfg: OneIdConfig, as_of: dt.date | None, store: ProfileStore | None = None
) -> SyncReport:
    """Load the store with the latest published identity run and the tags and audiences of
    ``as_of`` (None: identity only)."""
    started = time.perf_counter()
    own = store is None
    store = store or open_store(cfg)
    try:
        label = f"serve-sync {as_of or 'identity'}"
        with atomic_run(spark, cfg, "serve", label, ()):
            tables = _pinned_versions(spark, cfg, as_of)
            run_id = _published_run(spark, cfg)
            version = _version_name(as_of, run_id, tables)
            if store.has(version):
                serving = store.current()
                status = "unchanged" if serving and serving.version == version else "activated"
                if status == "activated":
                    store.activate(version)
                held = {v.version: v for v in store.versions()}[version]
                return SyncReport(version, status, held.counts, time.perf_counter() - started)
            info = _load(spark, cfg, store, as_of, run_id, version, tables)
    finally:
        if own:
            store.close()
    seconds = time.perf_counter() - started
    logger.info("serve-sync: version %s loaded in %.1f s: %s", version, seconds, info.counts)
    return SyncReport(version, "loaded", info.counts, seconds)


def _load(
    spark: SparkSession,
    cfg: OneIdConfig,
    store: ProfileStore,
    as_of: dt.date | None,
    run_id: str,
    version: str,
    tables: dict[str, int],
) -> StoreVersion:
    identifiers = profile_rows.identifier_rows(read_table(spark, cfg, "identity.oneid_map"))
    changes = read_table(spark, cfg, "identity.oneid_changes")
    documents = _documents(spark, cfg, as_of)
    expected = {"identifiers": identifiers.count()}
    info = StoreVersion(
        version=version,
        identity_run=run_id,
        as_of=as_of.isoformat() if as_of else None,
        key_version=_key_version(spark, cfg),
        loaded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        counts=expected,
        tables=tables,
    )
    with store.load(info) as loader:
        loader.identifiers(_rows(identifiers, "id_type", "value_hash", "oneid"))
        loader.profiles(_rows(documents, "oneid", "document"))
        loader.merges(_rows(profile_rows.merge_rows(changes), "from_oneid", "to_oneid"))
        loader.retired(_rows(profile_rows.retired_rows(changes), "from_oneid", "split_into"))
    return store.current() or info


def _documents(spark: SparkSession, cfg: OneIdConfig, as_of: dt.date | None) -> DataFrame:
    oneid_map = read_table(spark, cfg, "identity.oneid_map")
    identifiers = profile_rows.identifiers_by_oneid(
        oneid_map,
        read_table(spark, cfg, "identity.nodes"),
        read_table(spark, cfg, "identity.incidence"),
    )
    tags = audiences = audience_day = None
    if as_of is not None:
        days = {}
        for table in tag_tables(cfg.pipeline.tags):
            day = _latest_day(spark, cfg, table, as_of)
            if day is not None:
                days[table] = (read_table(spark, cfg, table).where(F.col("dt") == day), day)
        tags = profile_rows.tags_by_oneid(days)
        audience_day = _latest_day(spark, cfg, MEMBERSHIP, as_of)
        if audience_day is not None:
            audiences = profile_rows.audiences_by_oneid(
                read_table(spark, cfg, MEMBERSHIP),
                read_table_or_none(spark, cfg, CHANGES),
                audience_day,
            )
    return profile_rows.profile_documents(
        read_table(spark, cfg, "identity.profiles"), identifiers, tags, audiences, audience_day
    )


def _rows(frame: DataFrame, *columns: str) -> Iterator[tuple]:
    """The frame's rows streamed to the driver a partition at a time."""
    for row in frame.select(*columns).toLocalIterator(prefetchPartitions=True):
        yield tuple(row)


def _latest_day(
    spark: SparkSession, cfg: OneIdConfig, table: str, as_of: dt.date
) -> dt.date | None:
    """The table's latest ``dt`` up to ``as_of`` (None: no such day)."""
    frame = read_table_or_none(spark, cfg, table)
    if frame is None:
        return None
    return frame.where(F.col("dt") <= F.lit(as_of)).agg(F.max("dt")).first()[0]


def _published_run(spark: SparkSession, cfg: OneIdConfig) -> str:
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    row = None
    if stats is not None:
        row = stats.where(F.col("passed")).agg(F.max_by("run_id", "finished_at")).first()
    if row is None or row[0] is None:
        raise DataContractError("serve-sync: no published identity run yet (run oneid identity)")
    return row[0]


def _key_version(spark: SparkSession, cfg: OneIdConfig) -> int:
    """The HMAC key version of the identifiers (0: the demo key), from silver."""
    silver = read_table_or_none(spark, cfg, "silver.identifiers")
    found = silver.agg(F.max("key_version")).first()[0] if silver is not None else None
    return int(found) if found is not None else cfg.env.secrets.hmac_key_version


def _pinned_versions(
    spark: SparkSession, cfg: OneIdConfig, as_of: dt.date | None
) -> dict[str, int]:
    """The Delta version of each table the load reads (pinned by the run, else the latest);
    ``read_table`` reads exactly these for the rest of the run."""
    names = [*IDENTITY, "identity.run_stats"]
    if as_of is not None:
        names += [*tag_tables(cfg.pipeline.tags), MEMBERSHIP, CHANGES]
    pins = dict(PINS.get())
    versions = {}
    for name in names:
        if pins.get(name, 0) < 0 or not table_exists(spark, cfg, name):
            continue
        versions[name] = pins[name] if name in pins else table_version(spark, cfg, name)
    missing = [name for name in IDENTITY if name not in versions]
    if missing:
        raise DataContractError(f"serve-sync: no identity tables yet ({', '.join(missing)})")
    PINS.set({**pins, **versions})
    return versions


def _version_name(as_of: dt.date | None, run_id: str, tables: dict[str, int]) -> str:
    read = json.dumps([STORE_FORMAT, sorted(tables.items())])
    digest = hashlib.sha256(read.encode()).hexdigest()[:10]
    run = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:60]
    return f"{as_of.isoformat() if as_of else 'identity'}.{run}.{digest}"
