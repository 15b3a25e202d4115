"""Typed, frozen configuration objects (environment part).

An environment file (``conf/local.yaml``, ``conf/cluster.yaml``) says *where* and *how* the
pipeline runs; the pipeline file it names (``conf/pipeline.yaml``) says *what* it does. Both are
validated here; unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from oneid.conf.audiences import AudiencesConf
from oneid.conf.pipeline import PipelineConf
from oneid.jars import (
    DELTA_JARS,
    GRAPHFRAMES_JARS,
    KAFKA_BROKER_JARS,
    MAVEN_CENTRAL,
    SPARK_KAFKA_JARS,
    parse_coordinate,
)


class StrictModel(BaseModel):
    """Base for every conf object: frozen, and unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConf(StrictModel):
    """Spark settings the session factory applies.

    ``master`` and ``driver_memory`` are only used in local mode; on a cluster they come from
    spark-submit and the library never sets them.
    """

    master: str = "local[*]"
    app_name: str = "oneid"
    """The Spark application's name before the job's (``oneid-identity``, ``oneid-demo``)."""
    shuffle_partitions: PositiveInt = 8
    driver_memory: str = "4g"
    ui: bool = False
    extra: dict[str, str] = Field(default_factory=dict)


class JarsConf(StrictModel):
    """Where the pinned JVM jars come from.

    Resolution order per jar: each folder in ``folders`` (offline installs), then the cache,
    then each Maven repository in ``repositories`` (a corporate mirror goes first here).
    """

    repositories: tuple[str, ...] = (MAVEN_CENTRAL,)
    folders: tuple[str, ...] = ()
    cache_dir: str = "~/.cache/oneid/jars"
    offline: bool = False
    timeout_seconds: float = 60.0
    delta: tuple[str, ...] = DELTA_JARS
    graphframes: tuple[str, ...] = GRAPHFRAMES_JARS
    kafka: tuple[str, ...] = SPARK_KAFKA_JARS
    """Spark's Kafka source/sink (local sessions always load them; ``()`` leaves them out)."""
    kafka_broker: tuple[str, ...] = KAFKA_BROKER_JARS
    """The embedded development broker's classpath (``oneid broker``, tests, the demo)."""

    @field_validator("delta", "graphframes", "kafka", "kafka_broker")
    @classmethod
    def _coordinates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            parse_coordinate(item)
        return value


class SecretsConf(StrictModel):
    """Secrets are *named* here and read from the environment, never stored in files."""

    hmac_key_env: str = "ONEID_HMAC_KEY"
    hmac_key_version: PositiveInt = 1
    allow_demo_key: bool = False


class ApiKeyConf(StrictModel):
    """One API key of the data service, known only by its SHA-256 (``oneid serve-key`` makes
    one). The key itself is never in a file."""

    name: str
    """Who holds the key (written to the access log), e.g. ``ma_platform``."""
    sha256: str
    """Hex SHA-256 of the key, or ``env:NAME`` to read that hex digest from the environment."""
    scopes: tuple[Literal["lookup", "profile:read"], ...] = ("lookup",)
    rate_per_second: PositiveFloat = 100.0
    """Sustained requests per second (a token bucket per key and API process)."""
    burst: PositiveInt = 200
    """Requests a key may send at once before the rate applies."""

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if value.startswith("env:"):
            return value
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower()):
            raise ValueError("expected the key's hex SHA-256 (64 hex digits) or env:NAME")
        return value.lower()


class ServeConf(StrictModel):
    """The data service: the online store ``oneid serve-sync`` loads and ``oneid serve`` reads
    (``docs/serving.md``)."""

    store: Literal["sqlite", "redis"] = "sqlite"
    """``sqlite``: embedded, one file per loaded version (laptops, ``make demo``);
    ``redis``: a Redis server (production)."""
    sqlite_dir: str | None = None
    """Folder of the SQLite store; default ``<warehouse>/_serve`` (a local warehouse only)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis to load and read, or ``env:NAME`` to read the URL (with its password) from the
    environment."""
    namespace: str = Field("oneid", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of every Redis key, so one Redis can hold several warehouses' stores."""
    keep_versions: int = Field(2, ge=2)
    """Loaded versions kept (the serving one and the one before, for readers still on it)."""
    load_batch_rows: PositiveInt = 5000
    """Rows written to the store per round trip / transaction during a load."""
    host: str = "127.0.0.1"
    port: int = Field(8350, ge=1, le=65535)
    workers: PositiveInt = 1
    """uvicorn worker processes of ``oneid serve`` (rate limits are per process)."""
    batch_limit: PositiveInt = 100
    """Most identifiers one batch look-up may carry."""
    page_size: PositiveInt = 50
    """Identifiers and audiences per page of a profile (a request may ask for up to
    ``max_page_size``)."""
    max_page_size: PositiveInt = 500
    access_log: str | None = None
    """JSON-lines file with one row per look-up and profile read (key name, OneID, time);
    default ``<sqlite_dir>/access.jsonl``."""
    api_keys: tuple[ApiKeyConf, ...] = ()
    """Who may call the API; with none, every request is refused (401)."""


class KafkaConf(StrictModel):
    """Where the event bus is. Locally the project's own broker (``oneid broker``) on loopback;
    on a cluster the brand's brokers, with SASL credentials read from environment variables."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username_env: str | None = None
    sasl_password_env: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    """Further Kafka client settings (``fetch.max.bytes`` ...), without the ``kafka.`` prefix."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        if not value.strip() or any(":" not in part for part in value.split(",")):
            raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value


class EnvConf(StrictModel):
    """One environment: local development or a cluster."""

    mode: Literal["local", "cluster"]
    warehouse: str
    checkpoint_root: str | None = None
    scratch_root: str | None = None
    """Local folder for Spark's scratch files (``spark.local.dir``) in local mode, one private
    sub-folder per run; default ``<system temp>/oneid-<user>``. Unused in cluster mode."""
    sweep_after_hours: PositiveFloat = 48.0
    """Run folders (checkpoints, scratch) made on another host or without an owner marker are
    removed once older than this; on the same host, as soon as their process is gone."""

    spark: SparkConf = Field(default_factory=SparkConf)
    jars: JarsConf = Field(default_factory=JarsConf)
    secrets: SecretsConf = Field(default_factory=SecretsConf)
    serve: ServeConf = Field(default_factory=ServeConf)

    kafka: KafkaConf = Field(default_factory=KafkaConf)

    @property
    def sweep_after_seconds(self) -> float:
        return self.sweep_after_hours * 3600

    @model_validator(mode="after")
    def _cluster_paths_are_uris(self) -> EnvConf:
        if self.mode == "cluster":
            for key in ("warehouse", "checkpoint_root"):
                value = getattr(self, key)
                if value is not None and not re.match(r"^[A-Za-z][\w+.-]*://", value):
                    raise ValueError(
                        f"{key}: {value} is a path on the driver's disk; in cluster mode the "
                        "executors write there too: give a URI every node reaches (hdfs://, "
                        "s3a://, abfss://, or file:///path for a folder mounted at the same "
                        "path on every node)"
                    )
        return self

    @field_validator("scratch_root")
    @classmethod
    def _local_folder(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(
                "must be a local folder (Spark's local dir is on the driver's disk), "
                f"not a URI: {value}"
            )
        return value


class OneIdConfig(StrictModel):
    """Everything a job needs: the environment, the pipeline, and where they were read from."""

    env_name: str
    env: EnvConf
    pipeline: PipelineConf
    audiences: AudiencesConf = Field(default_factory=AudiencesConf)
    """The audience rules (``pipeline.audiences.rules``), shape-checked; the audiences stage
    checks them against the tag registry when it compiles them."""
    files: tuple[str, ...]
