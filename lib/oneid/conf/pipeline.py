"""Typed configuration of what the pipeline does (``conf/pipeline.yaml``).

Each stage owns one section; later stages add theirs here. Unknown keys are errors.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from decimal import Decimal
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from oneid.conf.realtime import RealtimeConf
from oneid.conf.tags import TagsConf


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SMALL_DATA_SPARK = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "org.apache.hadoop.fs.local.RawLocalFs",
    "spark.buffer.pageSize": "1m",
}
"""Spark settings for small data (the demo, the tests): compiling generated code for every new
plan costs more CPU than it saves on a few thousand rows, and so do adaptive execution, which
runs each shuffle of a query as a Spark job of its own (one-date stages on 5,000 people with two
shuffle partitions: 0.91× the time without it, publish 108 jobs instead of 229; with the demo's
eight partitions the difference was within the noise), and spreading each Delta table's log
replay over several tasks. Delta's log files on a local disk are written without Hadoop's
``.crc`` side file, a file fewer to create and rename per commit (a local-mode session also
replaces the class named here by one that starts no process per file: :mod:`oneid.local_fs`).
(The same setting for ``fs.file.impl`` would break the RocksDB state store, which needs Hadoop's
checksummed local file system.) Sorts and hash aggregates take memory in 1 MB pages instead of
the 32–64 MB Spark sizes from the heap: each task of a sort or an aggregate allocates at least
one page, and since Spark 4.1 a sort's last page stays reachable from its task thread after the
task (the one-date stages on 300 people, four rounds in one session: 465 MB of live heap at the
end instead of 1,158 MB, 104 young collections instead of 180). Results do not depend on
them."""


class DemoConf(_Strict):
    """Generated demo data used by ``oneid demo`` and ``oneid generate``."""

    people: PositiveInt = 5000
    seed: int = 42
    data_dir: str = "./demo_data"
    as_of: tuple[datetime.date, ...] = (datetime.date(2025, 6, 29), datetime.date(2025, 6, 30))
    """Consecutive business dates the demo computes tags and audiences for."""
    spark: dict[str, str] = Field(default_factory=lambda: dict(SMALL_DATA_SPARK))
    """Spark settings of ``oneid demo``'s session, beneath the environment's ``spark.extra``
    (which wins); ``{}`` runs the demo with the environment's settings alone."""


FieldType = Literal["string", "decimal", "integer", "timestamp", "date", "enum"]
EARLIEST = {"timestamp": datetime.date(1990, 1, 1), "date": datetime.date(1900, 1, 1)}
"""Default earliest plausible value of a timestamp / date column (``earliest`` overrides)."""
NUMERIC_TIME_FORMATS = ("epoch_seconds", "epoch_millis", "excel_serial")
"""``format`` names of numbers that are times: seconds or milliseconds since 1970-01-01 UTC, or
an Excel serial day (days since 1899-12-30 on the source's wall clock, fraction = time of day)."""
LATEST = datetime.date(2100, 1, 1)
"""Default latest plausible value: a fixed far bound, because ingest never reads the clock
(a re-run must give the same rows); ``latest`` tightens it per column."""
DECIMAL_MIN = Decimal(0)
"""Default lower bound of a decimal (amounts are not negative unless ``min`` says so)."""
DECIMAL_PLACES = 2
"""Default most decimal places of a decimal (more would be rounded silently)."""
DEVICE_KINDS = ("idfa", "oaid", "imei", "android_id")
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
CURRENCY_COLUMN = "currency"
"""The column of ``silver.<facts>`` holding the currency code of the row's amounts."""
IdentifierType = Literal[
    "phone",
    "email",
    "member_id",
    "wx_openid",
    "wx_unionid",
    "douyin_openid",
    "device",
    "wecom_external_userid",
]


class ColumnConf(_Strict):
    """How one raw column maps onto a canonical field, and how it must parse.

    A value that is present but does not parse (``abc`` for a decimal) quarantines the row with
    reason ``bad_<type>``; it never becomes a silent NULL.
    """

    field: str
    type: FieldType = "string"
    required: bool = False
    values: tuple[str, ...] = ()
    """Allowed values of an ``enum`` column."""
    format: str | tuple[str, ...] | None = None
    """timestamp / date: a Spark datetime pattern (``yyyy/MM/dd HH:mm``), a list of them tried in
    order, or one of ``epoch_seconds``, ``epoch_millis``, ``excel_serial``. Unset: ISO 8601
    (with or without an offset; dates ``yyyy-MM-dd``)."""
    pii: bool = False
    """Personal data that is not an identifier (name, birthday, free text): bronze only."""
    min: Decimal | None = None
    """decimal / integer: smallest accepted value (decimal default 0; integer: unbounded)."""
    max: Decimal | None = None
    """decimal / integer: largest accepted value (default unbounded)."""
    max_decimals: NonNegativeInt | None = None
    """decimal: most decimal places (default 2); more is ``too_many_decimals``, never rounded."""
    earliest: datetime.date | None = None
    """timestamp / date: earliest plausible day (default 1990-01-01, dates 1900-01-01)."""
    latest: datetime.date | None = None
    """timestamp / date: latest plausible day, inclusive (default 2100-01-01)."""

    @model_validator(mode="after")
    def _checks_fit_type(self) -> ColumnConf:
        allowed = {
            "decimal": {"min", "max", "max_decimals"},
            "integer": {"min", "max"},
            "timestamp": {"earliest", "latest"},
            "date": {"earliest", "latest"},
        }.get(self.type, set())
        checks = ("min", "max", "max_decimals", "earliest", "latest")
        wrong = [k for k in checks if getattr(self, k) is not None and k not in allowed]
        if self.format is not None and self.type not in EARLIEST:
            wrong.append("format")
        if wrong:
            raise ValueError(f"{wrong} do not apply to a {self.type} column")
        low, high = self.bounds()
        if low is not None and high is not None and low > high:
            raise ValueError(f"lower bound {low} is above upper bound {high}")
        return self

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        patterns = (value,) if isinstance(value, str) else value or ()
        if isinstance(value, tuple) and not value:
            raise ValueError("an empty list of formats: leave `format` out for ISO 8601")
        for pattern in patterns:
            if not pattern.strip():
                raise ValueError("an empty format")
            numeric_like = pattern.strip().lower().startswith(("epoch", "excel", "unix"))
            if numeric_like and pattern not in NUMERIC_TIME_FORMATS:
                raise ValueError(
                    f"{pattern!r} is not a datetime pattern; numeric times are one of "
                    f"{list(NUMERIC_TIME_FORMATS)}"
                )
        return value

    def formats(self) -> tuple[str, ...]:
        """The declared formats in the order they are tried (empty: ISO 8601)."""
        if self.format is None:
            return ()
        return (self.format,) if isinstance(self.format, str) else self.format

    def bounds(self) -> tuple[Decimal | datetime.date | None, Decimal | datetime.date | None]:
        """(lowest, highest) accepted value with the defaults of the column's type applied."""
        if self.type in EARLIEST:
            return self.earliest or EARLIEST[self.type], self.latest or LATEST
        if self.type == "decimal":
            return (DECIMAL_MIN if self.min is None else self.min), self.max
        if self.type == "integer":
            return self.min, self.max
        return None, None

    def decimals(self) -> int:
        """Most decimal places a decimal column accepts."""
        return DECIMAL_PLACES if self.max_decimals is None else self.max_decimals


class IdentifierConf(_Strict):
    """A canonical field that holds an identifier of a person.

    ``scope_field`` namespaces it (the WeChat appid of an openid), ``kind_field`` gives a device
    id's kind (idfa, oaid, imei, android_id); ``kind`` fixes it for the whole source, and
    ``kind: auto`` (or an empty ``kind_field`` cell) detects it from the value's shape.
    """

    field: str
    type: IdentifierType
    scope_field: str | None = None
    scope: str | None = None
    kind_field: str | None = None
    kind: str | None = None
    strength: Literal["strong", "weak"] | None = None
    """Edges between two strong identifiers of a record join first and are never cut by the
    per-type limits. Default: ``identity.strong_types``."""

    @model_validator(mode="after")
    def _device_kind(self) -> IdentifierConf:
        if self.type == "device" and not (self.kind or self.kind_field):
            raise ValueError(
                f"device identifier {self.field!r} needs `kind_field` (a column holding idfa, "
                "oaid, imei or android_id), `kind` (one of them for the whole source) or "
                "`kind: auto` (detected from each value's shape)"
            )
        if self.kind and self.kind not in (*DEVICE_KINDS, "auto"):
            raise ValueError(f"kind {self.kind!r}: expected one of {[*DEVICE_KINDS, 'auto']}")
        if self.type != "device" and (self.kind or self.kind_field):
            raise ValueError("`kind` / `kind_field` apply to device identifiers only")
        return self


class SourceConf(_Strict):
    """One source a brand brings: where it is, how to read it, which column is what."""

    format: Literal["csv", "json", "parquet", "delta", "jdbc"]
    path: str | None = None
    table: str | None = None
    encoding: str = "utf-8"
    options: dict[str, str] = Field(default_factory=dict)
    columns: dict[str, ColumnConf]
    record_key: tuple[str, ...]
    timestamp: str | None = None
    time_zone: str = "Asia/Shanghai"
    identifiers: tuple[IdentifierConf, ...] = ()
    facts: Literal["contacts", "orders", "events"] = "contacts"
    on_new_columns: Literal["keep", "quarantine", "fail"] = "keep"
    modified_files: Literal["warn", "reread"] = "warn"
    """A file an earlier batch took that has changed since (same path, another size or time):
    ``warn`` leaves it (the batch's report names it), ``reread`` takes it again in the new batch
    (an export overwritten in place every day)."""
    quoting: Literal["rfc4180", "backslash"] = "rfc4180"
    """CSV: ``rfc4180`` (``""`` inside quotes, newlines inside quoted fields: Excel, Python) or
    ``backslash`` (``\\"`` inside quotes, one record per line: Spark's own default)."""
    currency: str = "CNY"
    """ISO 4217 code of the source's decimal amounts (``USD``), unless ``currency_field``."""
    currency_field: str | None = None
    """A field holding each row's currency code; an empty cell means ``currency``, a value that
    is not three letters quarantines the row (``bad_currency:<field>``)."""
    max_quarantined_share: float = Field(default=0.05, ge=0, le=1)
    """A batch that would quarantine more than this share of its rows fails before it writes
    anything, naming the top reasons (a wrong format or column mapping quarantines every row);
    1 accepts any share."""
    time_zone_aliases: dict[str, str] = Field(default_factory=dict)
    """Zone abbreviations this source's timestamps may end with, and the zone each means
    (``CST: Asia/Shanghai``); any other abbreviation is ambiguous and quarantined."""

    def quarantines_too_much(self, quarantined: int, rows: int) -> bool:
        """Whether a batch of ``rows`` quarantining ``quarantined`` is over the source's limit."""
        return quarantined > self.max_quarantined_share * rows

    def has_amounts(self) -> bool:
        """Whether the source has decimal columns (whose currency silver records)."""
        return bool(self.currency_field) or any(c.type == "decimal" for c in self.columns.values())

    @field_validator("time_zone_aliases")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for abbreviation, zone in value.items():
            if not abbreviation.isalpha():
                raise ValueError(f"{abbreviation!r}: an abbreviation is letters only (e.g. CST)")
            if zone not in zoneinfo.available_timezones():
                raise ValueError(f"{abbreviation}: {zone!r} is not an IANA zone name")
        return {abbreviation.upper(): zone for abbreviation, zone in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> SourceConf:
        fields = [column.field for column in self.columns.values()]
        duplicates = sorted({f for f in fields if fields.count(f) > 1})
        if duplicates:
            raise ValueError(f"canonical field(s) mapped twice: {duplicates}")
        known = set(fields)
        refs = [*self.record_key, *([self.timestamp] if self.timestamp else [])]
        for ident in self.identifiers:
            refs += [f for f in (ident.field, ident.scope_field, ident.kind_field) if f]
        if self.currency_field:
            refs.append(self.currency_field)
        if not CURRENCY_CODE.match(self.currency):
            raise ValueError(f"currency {self.currency!r}: an ISO 4217 code such as CNY or USD")
        if CURRENCY_COLUMN in known and self.currency_field != CURRENCY_COLUMN:
            raise ValueError(
                f"field {CURRENCY_COLUMN!r} is what silver calls the amounts' currency: map the "
                f"column to it with `currency_field: {CURRENCY_COLUMN}` or to another field"
            )
        unknown = sorted({ref for ref in refs if ref not in known})
        if unknown:
            raise ValueError(f"field(s) {unknown} are not produced by any column mapping")
        if self.format == "jdbc" and not self.table:
            raise ValueError("jdbc sources need `table` (and options url/user/password env)")
        if self.format != "jdbc" and not (self.path or self.table):
            raise ValueError(f"{self.format} sources need `path` (or `table` for delta)")
        for column in self.columns.values():
            if column.type == "enum" and not column.values:
                raise ValueError(f"enum field {column.field!r} needs `values`")
        return self


class RunsConf(_Strict):
    """One writer per stage (per source for ingest): see docs/reliability.md."""

    lease_seconds: float = Field(default=300.0, ge=5)
    """A run's lease expires this long after its last renewal (renewed every third of it);
    a holder on the same host that is gone is noticed at once."""
    wait_seconds: float = Field(default=0.0, ge=0)
    """How long a second run waits for the holder to finish before it refuses (0: at once)."""


class IngestConf(_Strict):
    """Ingest settings."""

    parallel_sources: PositiveInt = 8
    """Sources ingested at the same time (each is its own Delta table). While one source's
    commit waits on Delta's log, another's tasks use the cores: on 2 cores the demo's seven
    sources all at once took 0.87-0.93x the time of three at once (four interleaved pairs)."""


class StandardizeConf(_Strict):
    """Identifier normalisation: extra junk values (normalised form) per identifier type.

    They extend the normaliser's built-in list (13800138000, all-zero device ids, ...); an
    identifier that matches is dropped from silver and counted with reason ``blocklisted``.
    """

    junk_values: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class ComponentsConf(_Strict):
    """Connected components: which engine and with which options (never the library defaults).

    ``engine``: ``graphframes`` needs the GraphFrames jars (``jars.graphframes``); ``native`` is
    OneID's own DataFrame implementation of the same large-star / small-star algorithm;
    ``auto`` takes GraphFrames when its jars resolve and ``native`` otherwise (logged).
    """

    engine: Literal["auto", "graphframes", "native"] = "auto"
    algorithm: Literal["two_phase", "randomized_contraction", "graphx"] = "two_phase"
    """GraphFrames algorithm (engine graphframes only)."""
    checkpoint_interval: PositiveInt = 2
    broadcast_threshold: int = -1
    """-1 leaves skewed joins to AQE: GraphFrames' recommended fast path (its default is 1e6)."""
    max_iterations: PositiveInt = 100


class HubRulesConf(_Strict):
    """Frequency rules: an identifier over a threshold is a hub and links nothing.

    ``max_records`` maps an identifier type (base type, e.g. ``phone``, ``device``) or
    ``default`` to the most records one identifier may appear in; ``max_member_ids`` is the
    most distinct member ids whose records an identifier (other than a member id) may share.
    """

    max_records: dict[str, PositiveInt] = Field(
        default_factory=lambda: {"default": 200, "phone": 20, "email": 20, "device": 150}
    )
    max_member_ids: PositiveInt = 1
    account_types: tuple[str, ...] = ("member_id",)
    """Account keys: one customer's own id, however often they buy. ``default`` does not apply
    to them (only a ``max_records`` entry of their own does), and every cut of one is a warning
    in the run's summary."""
    shared_types: tuple[str, ...] = ("device",)
    """Weak identifier types a household shares (a family tablet): one whose weak edges reach the
    login identities (``login_types``) of two or more strong components links none of them (rule
    ``shared:<type>`` in ``identity.hub_audit``); people that strong edges join are one login."""
    login_types: tuple[str, ...] = ("member_id", "phone")
    """Identifier types a person signs in with (their strong components are the "people" a shared
    identifier is seen with)."""


class GatesConf(_Strict):
    """Checks before the new mapping is published; a failed gate fails the run."""

    max_component_identifiers: PositiveInt = 500
    max_changed_share: float = Field(default=0.2, ge=0, le=1)
    """Share of previously mapped identifiers whose OneID changed (first run exempt)."""
    max_multi_member_components: int = Field(default=0, ge=0)
    """Components holding more than one member id."""


class IdentityConf(_Strict):
    """Identity resolution settings (graph, hub guard, components, gates)."""

    strong_types: tuple[str, ...] = (
        "member_id",
        "wx_unionid",
        "wx_openid",
        "douyin_openid",
        "wecom_external_userid",
    )
    blocklist: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Normalised values per identifier type that never link (test accounts, placeholders)."""
    hubs: HubRulesConf = Field(default_factory=HubRulesConf)
    limits: dict[str, PositiveInt] = Field(
        default_factory=lambda: {"member_id": 1, "device": 5, "phone": 3, "email": 3}
    )
    """Most identifiers of a (base) type one OneID may hold; weak edges that would exceed a
    limit are not used."""
    priority: tuple[str, ...] = (
        "member_id",
        "wx_unionid",
        "wecom_external_userid",
        "wx_openid",
        "phone",
        "email",
        "device",
    )
    """Order in which weak edges are considered, by the type of their endpoints."""
    max_weak_rounds: PositiveInt = 20
    incremental_min_identifiers: NonNegativeInt = 500_000
    """Below this many identifiers (as of the last run) every run is a full rebuild: on small
    graphs it is as fast as an incremental run and gives the same OneIDs (BENCHMARKS.md: equal
    at 300k identifiers on 2 cores); 0 keeps runs incremental at any size."""
    local_max_identifiers: NonNegativeInt = 2_000_000
    """A run whose recomputed identifiers are at most this many resolves them on the driver
    (no Spark job per round); a larger scope is resolved in pieces on Spark, by the same rules
    (:mod:`oneid.identity.resolve`: same results either way); 0 always uses the pieces."""
    components: ComponentsConf = Field(default_factory=ComponentsConf)
    gates: GatesConf = Field(default_factory=GatesConf)


class AudienceSettings(_Strict):
    """Where the audience rules are and what the daily audience stats count."""

    rules: str | None = None
    """YAML file of rules (``docs/audiences.md``), relative to the pipeline file."""
    stats_by: tuple[str, ...] = ()
    """Tags whose values are counted per audience in ``audience.stats`` (e.g. rfm_segment)."""


class DestinationConf(_Strict):
    """One place the day's audience changes go (``oneid publish --destination NAME``)."""

    kind: Literal["marketing_automation", "tencent_ads", "ocean_engine", "meta"]
    audiences: tuple[str, ...]
    tags: tuple[str, ...] = ()
    """marketing_automation: tags each JSON line carries (masked contact data is always in)."""
    id_types: tuple[str, ...] = ()
    """Ad platforms: identifier types to send (default: every type the platform matches on)."""


class PublishConf(_Strict):
    """Exports: files under ``exports_dir/<destination>/dt=<D>/`` with a manifest each."""

    exports_dir: str | None = None
    """Default: ``<warehouse>/_exports``."""
    destinations: dict[str, DestinationConf] = Field(default_factory=dict)


class PipelineConf(_Strict):
    """The whole pipeline definition."""

    demo: DemoConf = Field(default_factory=DemoConf)
    sources: dict[str, SourceConf] = Field(default_factory=dict)
    runs: RunsConf = Field(default_factory=RunsConf)
    ingest: IngestConf = Field(default_factory=IngestConf)
    standardize: StandardizeConf = Field(default_factory=StandardizeConf)
    identity: IdentityConf = Field(default_factory=IdentityConf)
    tags: TagsConf = Field(default_factory=TagsConf)
    audiences: AudienceSettings = Field(default_factory=AudienceSettings)
    publish: PublishConf = Field(default_factory=PublishConf)
    realtime: RealtimeConf = Field(default_factory=RealtimeConf)

    def with_demo_data(self, folder: str) -> PipelineConf:
        """These settings with the sources that read the demo's default folder
        (``./demo_data/...``) reading ``folder`` instead (``demo.data_dir``, a test's folder)."""
        default = DemoConf.model_fields["data_dir"].default
        sources = {
            name: source.model_copy(update={"path": folder + source.path[len(default) :]})
            if source.path and source.path.startswith(default + "/")
            else source
            for name, source in self.sources.items()
        }
        return self.model_copy(update={"sources": sources})

    def sources_of(self, facts: str) -> tuple[str, ...]:
        """The names of the sources whose records are ``facts`` (contacts, orders, events)."""
        return tuple(name for name, source in self.sources.items() if source.facts == facts)

    def fact_columns(self, facts: str) -> dict[str, str]:
        """Typed columns of ``silver.<facts>`` that rules may use: field → Spark SQL type.

        Identifier and ``pii`` fields never reach silver, so they are not here; ``currency``
        is, where a source of these facts has amounts.
        """
        types = {"decimal": "decimal(18,2)", "integer": "bigint", "timestamp": "timestamp"}
        columns: dict[str, str] = {}
        for source in self.sources.values():
            if source.facts != facts:
                continue
            identifying = {ident.field for ident in source.identifiers}
            for column in source.columns.values():
                if not column.pii and column.field not in identifying:
                    columns[column.field] = types.get(
                        column.type, column.type.replace("enum", "string")
                    )
            if source.has_amounts():
                columns[CURRENCY_COLUMN] = "string"
        return columns

    def fact_schema(self, facts: str) -> str:
        """The DDL schema of ``silver.<facts>`` as standardize writes it from the declared
        sources (for checks that run before any data exists)."""
        typed = ", ".join(f"`{name}` {kind}" for name, kind in self.fact_columns(facts).items())
        return "source string, record_key string, event_time timestamp, " + (
            f"{typed}, batch_id string" if typed else "batch_id string"
        )

    def amount_currencies(self, facts: str) -> dict[str, str]:
        """Source → the currency its ``facts`` amounts are declared in (``*`` when per row)."""
        return {
            name: "*" if source.currency_field else source.currency
            for name, source in self.sources.items()
            if source.facts == facts and source.has_amounts()
        }
