"""Where the data service's files and store are, from ``serve:`` in the environment conf."""

from __future__ import annotations

import os
from pathlib import Path

from oneid.conf import OneIdConfig
from oneid.control_files import local_path, require_local
from oneid.errors import ConfigError, SecretMissingError
from oneid.serve.store import ProfileStore


def from_env(value: str, key: str) -> str:
    """``env:NAME`` → the variable's value (a secret); anything else as written."""
    if not value.startswith("env:"):
        return value
    name = value[4:]
    if not os.environ.get(name):
        raise SecretMissingError(f"{key}: environment variable {name} is not set")
    return os.environ[name]


WRITTEN_BY_THE_API = "the API process writes it"


def sqlite_dir(cfg: OneIdConfig) -> Path:
    """``serve.sqlite_dir``, default ``<warehouse>/_serve`` for a local warehouse."""
    serve = cfg.env.serve
    if serve.sqlite_dir:
        return require_local("serve.sqlite_dir", serve.sqlite_dir, WRITTEN_BY_THE_API)
    warehouse = local_path(cfg.env.warehouse)
    if warehouse is None:
        raise ConfigError(
            f"serve.sqlite_dir: set a local folder (the warehouse {cfg.env.warehouse} is not local)"
        )
    return warehouse / "_serve"


def access_log_path(cfg: OneIdConfig) -> Path:
    """``serve.access_log``, default ``<sqlite_dir>/access.jsonl``."""
    if cfg.env.serve.access_log:
        return require_local("serve.access_log", cfg.env.serve.access_log, WRITTEN_BY_THE_API)
    return sqlite_dir(cfg) / "access.jsonl"


def open_store(cfg: OneIdConfig) -> ProfileStore:
    """The store ``serve.store`` names."""
    serve = cfg.env.serve
    if serve.store == "redis":
        from oneid.serve.redis_store import RedisStore

        url = from_env(serve.redis_url, "serve.redis_url")
        return RedisStore(url, serve.namespace, serve.keep_versions, serve.load_batch_rows)
    from oneid.serve.sqlite_store import SqliteStore

    return SqliteStore(sqlite_dir(cfg), serve.keep_versions, serve.load_batch_rows)
