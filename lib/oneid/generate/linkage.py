"""Ground truth about identifiers: which rows can be linked to another row of their person,
and how many phones / devices of each person really appear in the data."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from oneid.generate.phones import PhoneKind
from oneid.generate.population import Population
from oneid.generate.records import Defect, Draft

_VALUE_BITS = 35  # identifier values (phones < 2**35) ...
_TYPE_BITS = 4  # ... under a type code ...
_PERSON_SHIFT = _VALUE_BITS + _TYPE_BITS  # ... under the person (< 2**24): fits an int64


class Ident(IntEnum):
    """Identifier types that can link records (openids and external user ids are one per
    row and never link on their own)."""

    MEMBER = 1
    PHONE = 2
    EMAIL = 3
    DEVICE = 4
    UNIONID = 5


Identifier = tuple[np.ndarray, Ident, np.ndarray]  # (row mask, type, int value per row)


def phone_identifier(draft: Draft) -> Identifier:
    """The phone of a row counts only when it is one of the person's real numbers."""
    return draft.phone_kind == PhoneKind.REAL, Ident.PHONE, draft.phone


def linkable_rows(
    drafts: dict[str, Draft], identifiers: dict[str, list[Identifier]], pop: Population
) -> dict[str, np.ndarray]:
    """Per source, whether each row shares an identifier with another row of its person.

    Malformed rows are unreadable: they neither link nor help another row link. Junk values
    (placeholder, invalid and store phones, all-zero devices) are not identifiers at all.
    """
    keys: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    offset = 0
    offsets: dict[str, int] = {}
    for source, draft in drafts.items():
        offsets[source] = offset
        readable = draft.defect != Defect.MALFORMED_ROW
        for mask, ident, value in identifiers[source]:
            hit = np.flatnonzero(mask & readable)
            value = np.asarray(value, dtype=np.int64)[hit]
            if value.size and value.max() >= 2**_VALUE_BITS:
                raise ValueError(f"{ident.name} value too large for a linkage key")
            person = pop.gidx[draft.person[hit]]
            keys.append((person << _PERSON_SHIFT) | (int(ident) << _VALUE_BITS) | value)
            rows.append(hit + offset)
        offset += len(draft)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(all_keys, return_inverse=True, return_counts=True)
    shared = counts[inverse] >= 2
    flags = np.bincount(all_rows[shared], minlength=offset) > 0
    return {s: flags[offsets[s] : offsets[s] + len(d)] for s, d in drafts.items()}


def distinct_per_person(n: int, person: np.ndarray, value: np.ndarray) -> np.ndarray:
    """How many distinct values each of n chunk-local persons has."""
    pairs = np.unique((np.asarray(person, dtype=np.int64) << _PERSON_SHIFT) | value)
    return np.bincount(pairs >> _PERSON_SHIFT, minlength=n)
