"""What audience rules need to know about a column's Spark SQL type string.

Tag and event-property types arrive as Spark type strings (``bigint``, ``decimal(18,2)``,
``array<string>``, ``map<string,bigint>``). Rules only care about the *kind* of a type: which
operators apply and which YAML values fit. Arrays keep their element type and maps their key
type, for ``contains``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["number", "string", "boolean", "date", "timestamp", "array", "map", "other"]
SCALAR_KINDS = frozenset({"number", "string", "boolean", "date", "timestamp"})

_BASE_KINDS: dict[str, Kind] = {
    **dict.fromkeys(
        ("tinyint", "byte", "smallint", "short", "int", "integer", "bigint", "long"), "number"
    ),
    **dict.fromkeys(("float", "real", "double", "decimal", "dec", "numeric"), "number"),
    "string": "string",
    "boolean": "boolean",
    "date": "date",
    **dict.fromkeys(("timestamp", "timestamp_ltz", "timestamp_ntz"), "timestamp"),
}
_PARAMETRISED = re.compile(r"^(decimal|dec|numeric|varchar|char)\(\s*\d+\s*(,\s*\d+\s*)?\)$")


@dataclass(frozen=True)
class ColumnType:
    """A parsed type string: its kind, and the element (array) or key (map) type."""

    text: str
    kind: Kind
    inner: ColumnType | None = None

    @property
    def is_scalar(self) -> bool:
        return self.kind in SCALAR_KINDS


def parse_column_type(text: str) -> ColumnType:
    """Parse a Spark SQL type string; unknown or nested-struct types get kind ``other``."""
    clean = re.sub(r"\s+", "", text.strip().lower())
    if clean.startswith("array<") and clean.endswith(">"):
        return ColumnType(clean, "array", parse_column_type(clean[6:-1]))
    if clean.startswith("map<") and clean.endswith(">"):
        key, _ = _split_top_level(clean[4:-1])
        return ColumnType(clean, "map", parse_column_type(key))
    match = _PARAMETRISED.match(clean)
    if match:
        return ColumnType(clean, "string" if "char" in match.group(1) else "number")
    return ColumnType(clean, _BASE_KINDS.get(clean, "other"))


def _split_top_level(text: str) -> tuple[str, str]:
    """``string,array<int>`` → (``string``, ``array<int>``): split at the first top-level comma."""
    depth = 0
    for i, char in enumerate(text):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            return text[:i], text[i + 1 :]
    return text, ""
