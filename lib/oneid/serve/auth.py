"""API keys: known by their SHA-256 only, each with scopes and a rate limit per process."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field

from oneid.conf.models import ApiKeyConf
from oneid.serve.settings import from_env

KEY_PREFIX = "oid_"


def new_key() -> tuple[str, str]:
    """A fresh API key and its SHA-256 (hex): give the key to its holder, put the digest in
    conf."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, digest(key)


def digest(key: str) -> str:
    # keys are 256-bit random tokens, so a fast hash cannot be brute-forced
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class _Bucket:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved."""

    rate: float
    burst: float
    tokens: float
    stamp: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> float:
        """0 when a request may go, else the seconds until it may."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]


class KeyRing:
    """The configured keys, by digest."""

    def __init__(self, keys: tuple[ApiKeyConf, ...]):
        self._callers: dict[str, Caller] = {}
        self._buckets: dict[str, _Bucket] = {}
        for index, conf in enumerate(keys):
            hexdigest = from_env(conf.sha256, f"serve.api_keys[{index}].sha256").lower()
            self._callers[hexdigest] = Caller(conf.name, frozenset(conf.scopes))
            self._buckets[conf.name] = _Bucket(conf.rate_per_second, conf.burst, conf.burst)

    def caller(self, key: str | None) -> Caller | None:
        """The caller a presented key belongs to (None: unknown or missing)."""
        if not key:
            return None
        return self._callers.get(digest(key))

    def wait(self, caller: Caller) -> float:
        """0 when the caller is within its rate, else seconds to wait (HTTP 429)."""
        return self._buckets[caller.name].take()
