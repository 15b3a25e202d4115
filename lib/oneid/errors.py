"""Errors a user can act on. Each message says what went wrong and which knob to turn."""

from __future__ import annotations

from collections.abc import Callable


class OneIdError(Exception):
    """Base class: the CLI prints these as one clear line, without a stack trace."""


class ConfigError(OneIdError):
    """Configuration is missing, malformed or invalid (names file, key and expectation)."""


class JarResolutionError(OneIdError):
    """A pinned JVM jar could not be found in the jar folders, the cache or the repositories."""


class JavaNotFoundError(OneIdError):
    """No usable Java runtime for the pinned Spark version."""


class SecretMissingError(OneIdError):
    """A secret named in conf is not set in the environment."""


class DataContractError(OneIdError):
    """Input data breaks the contract (e.g. rows read != accepted + quarantined)."""


class LimitExceededError(OneIdError):
    """The data would outgrow a fixed bound of OneID's tables (e.g. the node id space)."""


class GateFailedError(OneIdError):
    """A quality gate failed; nothing downstream was published."""

    def __init__(self, message: str, record_after_rollback: Callable[[], None] | None = None):
        super().__init__(message)
        self.record_after_rollback = record_after_rollback
        """Writes why the run failed, once :func:`oneid.atomic.atomic_run` has rolled it back."""


class StageBusyError(OneIdError):
    """Another live run holds the lease of the stage (or ingest source) this run would write."""


class LeaseLostError(OneIdError):
    """The run's lease was taken over before it could commit (it expired unrenewed): another
    run may have rolled its writes back, so it does not record them as committed."""
