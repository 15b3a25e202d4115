"""Deliver triggers to the marketing-automation webhook: signed, idempotent, retried.

Each trigger is one ``POST`` of its JSON payload to ``realtime.webhook.url`` with

- ``Idempotency-Key: <trigger id>`` (sha256 of event id + rule id: the same trigger always
  carries the same key, also when a crash makes the stream send it again),
- ``X-OneID-Signature: sha256=<hex HMAC-SHA256 of the body>`` keyed by the secret in the
  environment variable ``realtime.webhook.secret_env``.

A 2xx answer is delivered; a connection error, timeout, 408, 429 or 5xx is retried with
exponential backoff up to ``attempts``; anything else (or the last failure) is a dead letter.
A micro-batch's triggers share ``parallel`` kept-alive connections (no TCP or TLS handshake per
trigger).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from oneid.conf.realtime import WebhookConf
from oneid.errors import SecretMissingError

logger = logging.getLogger(__name__)

DEMO_SECRET = b"oneid-demo-webhook-secret--not-a-secret"
SIGNATURE_HEADER = "X-OneID-Signature"
KEY_HEADER = "Idempotency-Key"
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


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
    """POST each ``(trigger id, body)``; in parallel (``parallel``), each retried on its own."""
    if not messages:
        return []
    workers = min(conf.parallel, len(messages))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with (
        httpx.Client(timeout=conf.timeout_seconds, limits=limits) as client,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        return list(pool.map(lambda m: _deliver_one(client, conf, secret, *m), messages))


def _deliver_one(
    client: httpx.Client, conf: WebhookConf, secret: Secret, trigger_id: str, body: bytes
) -> Outcome:
    status: int | None = None
    error: str | None = None
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        KEY_HEADER: trigger_id,
        SIGNATURE_HEADER: secret.sign(body),
    }
    for attempt in range(1, conf.attempts + 1):
        try:
            status = client.post(conf.url, content=body, headers=headers).status_code
        except httpx.TransportError as exc:  # connection refused or reset, timeouts
            status, error = None, str(exc) or type(exc).__name__
        else:
            if 200 <= status < 300:
                return Outcome(trigger_id, True, attempt, status, None, int(time.time() * 1000))
            error = f"HTTP {status}"
            if status not in RETRYABLE:
                break
        if attempt < conf.attempts:
            time.sleep(conf.backoff_seconds * 2 ** (attempt - 1))
    logger.warning("trigger %s not delivered after %d attempt(s): %s", trigger_id, attempt, error)
    return Outcome(trigger_id, False, attempt, status, error, None)
