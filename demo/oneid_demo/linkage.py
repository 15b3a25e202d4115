"""Ground truth about identifiers: which rows the identity pipeline can link to the rest of
their person, and how many phones / devices of each person really appear in the data."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from oneid_demo.phones import PhoneKind
from oneid_demo.population import Population
from oneid_demo.records import Draft, readable

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
    """Per source, whether each row is connected to the largest cluster of its person.

    Rows are connected when they share an identifier value (directly or through other rows of
    the same person); the largest cluster of rows holding an identifier (ties: the one holding
    the earliest row) is the person's main identity. Unreadable rows (records.UNREADABLE) and
    rows without any identifier are never linkable and help no other row link. Junk values
    (placeholder, invalid and store phones, all-zero and family devices) are not identifiers
    at all: the builders leave them out.
    """
    keys: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    offset = 0
    offsets: dict[str, int] = {}
    for source, draft in drafts.items():
        offsets[source] = offset
        ok = readable(draft.defect)
        for mask, ident, value in identifiers[source]:
            hit = np.flatnonzero(mask & ok)
            value = np.asarray(value, dtype=np.int64)[hit]
            if value.size and value.max() >= 2**_VALUE_BITS:
                raise ValueError(f"{ident.name} value too large for a linkage key")
            person = pop.gidx[draft.person[hit]]
            keys.append((person << _PERSON_SHIFT) | (int(ident) << _VALUE_BITS) | value)
            rows.append(hit + offset)
        offset += len(draft)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    label = components(offset, all_rows, np.unique(all_keys, return_inverse=True)[1])
    person = np.concatenate([d.person for d in drafts.values()])
    ok = np.bincount(all_rows, minlength=offset) > 0  # readable rows with an identifier
    main = main_components(person[ok], label[ok])
    flags = np.zeros(offset, dtype=bool)
    flags[ok] = label[ok] == main
    return {s: flags[offsets[s] : offsets[s] + len(d)] for s, d in drafts.items()}


def components(n_rows: int, edge_row: np.ndarray, edge_key: np.ndarray) -> np.ndarray:
    """Connected components of rows joined through shared keys (edges row - key): the label of
    a row is the smallest row index of its component."""
    label = np.arange(n_rows, dtype=np.int64)
    if edge_row.size == 0:
        return label
    by_key = np.argsort(edge_key, kind="stable")
    key_starts = np.flatnonzero(np.r_[True, np.diff(edge_key[by_key]) != 0])
    key_of_run = edge_key[by_key][key_starts]
    by_row = np.argsort(edge_row, kind="stable")
    row_starts = np.flatnonzero(np.r_[True, np.diff(edge_row[by_row]) != 0])
    row_of_run = edge_row[by_row][row_starts]
    key_label = np.zeros(edge_key.max() + 1, dtype=np.int64)
    while True:  # min-label propagation; converges within a person's (small) diameter
        key_label[key_of_run] = np.minimum.reduceat(label[edge_row[by_key]], key_starts)
        new = np.minimum.reduceat(key_label[edge_key[by_row]], row_starts)
        changed = new < label[row_of_run]
        if not changed.any():
            return label
        label[row_of_run[changed]] = new[changed]


def main_components(person: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per row, the label of its person's largest component (ties: the smallest label)."""
    if person.size == 0:
        return np.zeros(0, dtype=np.int64)
    labels, first_row, size = np.unique(label, return_index=True, return_counts=True)
    owner = person[first_row]
    best = np.lexsort((labels, -size, owner))  # per person: largest first, then smallest
    first = best[np.r_[True, owner[best][1:] != owner[best][:-1]]]
    main = np.full(person.max() + 1, -1, dtype=np.int64)
    main[owner[first]] = labels[first]
    return main[person]


def distinct_per_person(n: int, person: np.ndarray, value: np.ndarray) -> np.ndarray:
    """How many distinct values each of n chunk-local persons has."""
    pairs = np.unique((np.asarray(person, dtype=np.int64) << _PERSON_SHIFT) | value)
    return np.bincount(pairs >> _PERSON_SHIFT, minlength=n)
