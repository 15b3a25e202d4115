"""Containers for the rows of one source in one chunk: the draft (numeric facts, before any
text is built) and the part (rendered columns plus the ground truth of every row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import pyarrow as pa

from oneid_demo.phones import PhoneKind


class Defect(IntEnum):
    """Why a row is not a clean record (the truth table writes the lower-case name)."""

    NONE = 0
    MALFORMED_ROW = 1
    BAD_AMOUNT = 2
    BAD_TIMESTAMP = 3
    PLACEHOLDER_PHONE = 4
    PLACEHOLDER_DEVICE = 5
    TEST_ACCOUNT = 6
    STORE_PHONE = 7
    DUPLICATE_ROW = 8
    LATE_ROW = 9
    INVALID_PHONE = 10

    @property
    def label(self) -> str:
        return self.name.lower()


DEFECT_LABELS: tuple[str | None, ...] = (None, *(d.label for d in list(Defect)[1:]))
# Rows a reader cannot parse into a record: they never link nor help another row link.
UNREADABLE = (Defect.MALFORMED_ROW, Defect.BAD_AMOUNT, Defect.BAD_TIMESTAMP)


def readable(defect: np.ndarray) -> np.ndarray:
    """Rows a reader parses into a record (see UNREADABLE)."""
    return ~np.isin(defect, UNREADABLE)


@dataclass
class Draft:
    """Rows of one source before rendering; every array has one entry per row."""

    person: np.ndarray  # chunk-local person index
    time: np.ndarray  # intended local time (seconds), also the export order
    defect: np.ndarray  # Defect code
    phone_kind: np.ndarray  # PhoneKind code
    phone: np.ndarray  # number written in the phone cell (filled by the phone pass)
    orphan: np.ndarray  # chosen to share no identifier with the person's other records
    facts: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        person: np.ndarray,
        time: np.ndarray,
        is_test: np.ndarray,
        has_phone: np.ndarray | bool = False,
        orphan: np.ndarray | bool = False,
        **facts: np.ndarray,
    ) -> Draft:
        n = len(person)
        has_phone = np.broadcast_to(np.asarray(has_phone, dtype=bool), (n,))
        return cls(
            person=np.asarray(person, dtype=np.int64),
            time=np.asarray(time, dtype=np.int64),
            defect=np.where(is_test[person], Defect.TEST_ACCOUNT, Defect.NONE).astype(np.int8),
            phone_kind=np.where(has_phone, PhoneKind.REAL, PhoneKind.NONE).astype(np.int8),
            phone=np.zeros(n, dtype=np.int64),
            orphan=np.broadcast_to(np.asarray(orphan, dtype=bool), (n,)).copy(),
            facts=facts,
        )

    def __len__(self) -> int:
        return len(self.person)


@dataclass
class Part:
    """Rendered rows of one source (columns in file order) with their ground truth."""

    columns: dict[str, pa.Array]
    key: pa.Array
    gidx: np.ndarray  # global person index
    defect: np.ndarray
    linkable: np.ndarray
    time: np.ndarray

    def __len__(self) -> int:
        return len(self.gidx)

    def take(self, rows: np.ndarray) -> Part:
        idx = pa.array(np.asarray(rows, dtype=np.int64))
        return Part(
            columns={name: col.take(idx) for name, col in self.columns.items()},
            key=self.key.take(idx),
            gidx=self.gidx[rows],
            defect=self.defect[rows],
            linkable=self.linkable[rows],
            time=self.time[rows],
        )

    @staticmethod
    def concat(parts: list[Part]) -> Part:
        first = parts[0]
        return Part(
            columns={
                name: pa.concat_arrays([p.columns[name] for p in parts]) for name in first.columns
            },
            key=pa.concat_arrays([p.key for p in parts]),
            gidx=np.concatenate([p.gidx for p in parts]),
            defect=np.concatenate([p.defect for p in parts]),
            linkable=np.concatenate([p.linkable for p in parts]),
            time=np.concatenate([p.time for p in parts]),
        )
