"""Deliver triggers to the marketing-automation webhook: signed, idempotent, retried.

Each trigger is one ``POST`` of its JSON payload to ``realtime.webhook.url`` with

- ``Idempotency-Key: <trigger id>`` (sha256 of event id + rule id: the same trigger always
  carries the same key, also when a crash makes the stream send it again),
- ``X-OneID-Signature: sha256=<hex HMAC-SHA256 of the body>`` keyed by the secret in the
  environment variable ``realtime.webhook.secret_env``.

A 2xx answer is delivered; a connection error, timeout, 408, 429 or 5xx is retried with
exponential backoff up to ``attempts``; anything else (or the last failure) is a dead letter.

:class:`WebhookClient` sends a micro-batch's triggers concurrently from one asyncio event loop
(a thread of the driver) over ``parallel`` HTTP/1.1 keep-alive connections that outlive the
batch: no thread or TCP / TLS handshake per trigger, and a few tens of microseconds of Python
per POST (the thread-per-request ``httpx`` client managed ~700 POSTs/s on a loaded 2-core
machine). A connection the server closed while idle is reopened without using an attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from oneid.conf.realtime import WebhookConf
from oneid.errors import ConfigError, SecretMissingError

logger = logging.getLogger(__name__)

DEMO_SECRET = b"oneid-demo-webhook-secret--not-a-secret"
SIGNATURE_HEADER = "X-OneID-Signature"
KEY_HEADER = "Idempotency-Key"
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
MAX_HEADER_LINES = 100


@dataclass(frozen=True)
class Outcome:
    trigger_id: str
    delivered: bool
    attempts: int
    http_status: int | None
    error: str | None
    delivered_at_ms: int | None


class Secret:
    """The webhook signing key; ``repr`` never shows it."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._value, body, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    def __reduce__(self):  # never pickled into a Spark closure or plan
        raise TypeError("the webhook secret stays in the driver")


def load_secret(conf: WebhookConf) -> Secret:
    value = os.environ.get(conf.secret_env, "")
    if value:
        return Secret(value.encode("utf-8"))
    if conf.allow_demo_secret:
        logger.warning("%s is unset: signing with the published demo secret", conf.secret_env)
        return Secret(DEMO_SECRET)
    raise SecretMissingError(
        f"environment variable {conf.secret_env} (conf realtime.webhook.secret_env) is not set; "
        "it holds the webhook signing key"
    )


def deliver(
    conf: WebhookConf, secret: Secret, messages: Sequence[tuple[str, bytes]]
) -> list[Outcome]:
    """POST each ``(trigger id, body)`` with a client of its own (see :class:`WebhookClient`)."""
    if not messages:
        return []
    with WebhookClient(conf, secret) as client:
        return client.deliver(messages)


class _Stale(Exception):
    """A kept-alive connection turned out closed before any answer: reopen, same attempt."""


class _Connection:
    """One HTTP/1.1 connection: a request at a time, the answer's body read and dropped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    async def post(self, request: bytes) -> tuple[int, bool]:
        """Send one request; (status, whether the connection can be used again). On a reused
        connection, a failure before the answer begins raises :class:`_Stale`."""
        try:
            self.writer.write(request)
            await self.writer.drain()
            status, keep, length, chunked = await self._head()
        except (OSError, asyncio.IncompleteReadError) as exc:
            if self.reused:
                raise _Stale() from exc
            raise
        while 100 <= status < 200:  # an interim answer: the real one follows
            status, keep, length, chunked = await self._head()
        if chunked:
            while size := int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16):
                await self.reader.readexactly(size + 2)
            while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif length is not None:
            await self.reader.readexactly(length)
        else:  # neither: the body ends with the connection
            await self.reader.read()
            keep = False
        self.reused = True  # the next request on it may find it closed by the server
        return status, keep

    async def _head(self) -> tuple[int, bool, int | None, bool]:
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("connection closed")
        self.reused = False  # an answer began: from now on a failure counts
        version, _, rest = line.decode("latin-1").partition(" ")
        status = int(rest[:3])
        http11 = version.strip() == "HTTP/1.1"
        keep = http11
        length, chunked = None, False
        for _ in range(MAX_HEADER_LINES):
            header = await self.reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                keep = value != "close" if http11 else value == "keep-alive"
        if status in (204, 304) or 100 <= status < 200:
            length, chunked = 0, False
        return status, keep, length, chunked

    def close(self) -> None:
        self.writer.close()


class WebhookClient:
    """Delivers micro-batches of triggers; ``with WebhookClient(conf, secret) as client:``.

    Its event loop runs in a daemon thread; :meth:`deliver` blocks the caller until every
    message of the batch is delivered or a dead letter. Idle connections stay open for the next
    batch."""

    def __init__(self, conf: WebhookConf, secret: Secret) -> None:
        parts = urlsplit(conf.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"realtime.webhook.url must be an http(s) URL, got {conf.url!r}")
        self.conf = conf
        self.secret = secret
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
        ).encode("latin-1")
        self._idle: list[_Connection] = []
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="oneid-webhook", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> WebhookClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(self, messages: Sequence[tuple[str, bytes]]) -> list[Outcome]:
        """POST each ``(trigger id, body)``, ``parallel`` at a time; outcomes in input order."""
        if not messages:
            return []
        return asyncio.run_coroutine_threadsafe(self._all(messages), self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for conn in self._idle:
            self._loop.call_soon_threadsafe(conn.close)
        self._idle.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _request(self, trigger_id: str, body: bytes) -> bytes:
        return b"".join(
            (
                self._head,
                f"Content-Length: {len(body)}\r\n{KEY_HEADER}: {trigger_id}\r\n"
                f"{SIGNATURE_HEADER}: {self.secret.sign(body)}\r\n\r\n".encode("latin-1"),
                body,
            )
        )

    async def _all(self, messages: Sequence[tuple[str, bytes]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        todo = iter(enumerate(messages))
        workers = min(self.conf.parallel, len(messages))
        await asyncio.gather(*(self._worker(todo, outcomes) for _ in range(workers)))
        return [o for o in outcomes if o is not None]

    async def _worker(
        self, todo: Iterator[tuple[int, tuple[str, bytes]]], outcomes: list[Outcome | None]
    ) -> None:
        conn = self._idle.pop() if self._idle else None
        try:
            for index, (trigger_id, body) in todo:
                outcome, conn = await self._one(conn, trigger_id, self._request(trigger_id, body))
                outcomes[index] = outcome
        finally:
            if conn is not None:
                self._idle.append(conn)

    async def _one(
        self, conn: _Connection | None, trigger_id: str, request: bytes
    ) -> tuple[Outcome, _Connection | None]:
        status: int | None = None
        error: str | None = None
        attempt = 0
        while attempt < self.conf.attempts:
            attempt += 1
            try:
                if conn is None:
                    conn = await asyncio.wait_for(self._open(), self.conf.timeout_seconds)
                status, keep = await asyncio.wait_for(conn.post(request), self.conf.timeout_seconds)
            except _Stale:
                conn.close()
                conn, attempt = None, attempt - 1
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                status, error = None, _describe(exc)
            else:
                if not keep:
                    conn.close()
                    conn = None
                if 200 <= status < 300:
                    delivered_at = int(time.time() * 1000)
                    return Outcome(trigger_id, True, attempt, status, None, delivered_at), conn
                error = f"HTTP {status}"
                if status not in RETRYABLE:
                    break
            if attempt < self.conf.attempts:
                await asyncio.sleep(self.conf.backoff_seconds * 2 ** (attempt - 1))
        logger.warning(
            "trigger %s not delivered after %d attempt(s): %s", trigger_id, attempt, error
        )
        return Outcome(trigger_id, False, attempt, status, error, None), conn

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=self._tls,
            server_hostname=self._host if self._tls else None,
            limit=1 << 16,
        )
        return _Connection(reader, writer)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (a dependency, as uvicorn's), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
