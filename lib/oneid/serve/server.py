"""Run the API with uvicorn: the app built from conf, once per worker process."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI

from oneid.conf import OneIdConfig, load_config
from oneid.serve.access_log import AccessLog
from oneid.serve.answers import Answers
from oneid.serve.api import create_app
from oneid.serve.auth import KeyRing
from oneid.serve.settings import access_log_path, open_store
from oneid.standardize.hashing import load_key
from oneid.standardize.records import junk_values

logger = logging.getLogger(__name__)
CONF_ENV = "ONEID_SERVE_CONF"
"""How ``oneid serve --workers N`` hands each worker its conf: ``env|conf_dir|set1\\x1fset2``."""


def build_app(cfg: OneIdConfig) -> FastAPI:
    """The API for ``cfg``: its store, its HMAC key, its keys and access log."""
    answers = Answers(
        open_store(cfg),
        load_key(cfg.env.secrets),
        cfg.env.serve,
        AccessLog(access_log_path(cfg)),
        junk_values(cfg),
    )
    return create_app(answers, KeyRing(cfg.env.serve.api_keys))


def _frozen(app: FastAPI) -> FastAPI:
    """In a server process, what start-up built lives as long as the process: keep it out of
    the garbage collector's full passes, which otherwise pause requests (the p99)."""
    gc.collect()
    gc.freeze()
    return app


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker process (``--workers`` > 1)."""
    env, conf_dir, overrides = os.environ[CONF_ENV].split("|", 2)
    sets = [item for item in overrides.split("\x1f") if item]
    return _frozen(build_app(load_config(env, conf_dir or None, sets)))


def serve(cfg: OneIdConfig, host: str, port: int, reference: tuple[str, str, list[str]]) -> None:
    """Serve until interrupted (``reference``: env, conf dir, --set values for workers)."""
    import uvicorn

    workers = cfg.env.serve.workers
    logger.info(
        "oneid serve: http://%s:%d (store %s, %d worker(s))",
        host,
        port,
        cfg.env.serve.store,
        workers,
    )
    if workers == 1:
        app = _frozen(build_app(cfg))
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
        return
    env, conf_dir, sets = reference
    os.environ[CONF_ENV] = f"{env}|{conf_dir}|" + "\x1f".join(sets)
    uvicorn.run(
        "oneid.serve.server:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


@contextlib.contextmanager
def running(app: FastAPI, host: str, port: int) -> Iterator[str]:
    """The app served by uvicorn in a thread for the block (the demo, tests); yields its URL
    (``port`` 0: a free port)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
