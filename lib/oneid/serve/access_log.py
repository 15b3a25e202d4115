"""The access log: one JSON line per look-up and profile read — which key asked about which
OneID, when (PIPL asks for it). Raw values are never in it, only the identifier type."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path


class AccessLog:
    """Appends rows to a JSON-lines file (line-buffered; safe across threads)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._out = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (kept open)
        self._lock = threading.Lock()

    def write(self, key: str, action: str, store_version: str | None, **fields: object) -> None:
        row = {
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "key": key,
            "action": action,
            "store_version": store_version,
            **fields,
        }
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self._out.write(line)

    def close(self) -> None:
        self._out.close()
