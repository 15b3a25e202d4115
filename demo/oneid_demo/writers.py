"""Writing part files (CSV / JSON lines / Parquet) and the ground-truth tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from oneid_demo import defects, ids, layout, text
from oneid_demo.layout import SourceSpec
from oneid_demo.records import DEFECT_LABELS, Defect, Part

logger = logging.getLogger(__name__)

LINES_PER_WRITE = 250_000  # bounds the text held in memory (and Arrow's 2 GiB offsets)
BOM = b"\xef\xbb\xbf"
TRUTH_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("record_key", pa.string()),  # intended key, also for malformed rows
        ("file", pa.string()),  # relative to the output directory
        ("line_no", pa.int64()),  # 1-based data row (CSV header not counted)
        ("person_id", pa.string()),  # the real person (the buyer, for store_phone rows)
        ("defect", pa.string()),  # null or a records.Defect label
        ("linkable", pa.bool_()),  # connected to the person's largest cluster (linkage.py)
    ]
)
PEOPLE_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("kind", pa.string()),  # person | test_account
        ("household_id", pa.string()),  # H + number of the household's first person
        ("n_phones", pa.int32()),  # distinct own phone numbers that appear in the data
        ("n_devices", pa.int32()),  # distinct devices in app_events (incl. a shared family one)
        ("phone_login", pa.bool_()),  # a non-member in the app on the family device, by phone
    ]
)


def csv_lines(columns: dict[str, pa.Array]) -> pa.Array:
    """One unquoted CSV line per row (values never hold commas, quotes or newlines)."""
    return text.join(*(col.fill_null("") for col in columns.values()), sep=",")


def json_lines(columns: dict[str, pa.Array]) -> pa.Array:
    """One JSON object per row, keys in column order, nulls as null (values need no escaping)."""
    pieces: list[text.Piece] = []
    literal = "{"
    for i, (name, col) in enumerate(columns.items()):
        literal += ("," if i else "") + f'"{name}":'
        if col.null_count == 0:
            pieces += [literal + '"', col]
            literal = '"'
        else:
            pieces += [literal, text.join('"', col, '"').fill_null("null")]
            literal = ""
    return text.join(*pieces, literal + "}")


def _payload(lines: pa.Array) -> bytes:
    """The lines joined by (and ending with) newlines, straight from the Arrow buffers."""
    lines = text.join(lines, "", sep="\n")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def write_part(
    out_dir: Path, spec: SourceSpec, path: str, part: Part, rng: np.random.Generator
) -> None:
    """Write one part file of a source (malformed rows get their broken text here)."""
    target = out_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.fmt == "parquet":
        pq.write_table(pa.table(part.columns), target, compression="snappy")
        return
    render = json_lines if spec.fmt == "jsonl" else csv_lines
    malformed = np.flatnonzero(part.defect == Defect.MALFORMED_ROW)
    with target.open("wb") as out:
        if spec.bom:
            out.write(BOM)
        if spec.fmt == "csv":
            out.write((",".join(spec.columns) + "\n").encode(spec.encoding))
        for start in range(0, len(part), LINES_PER_WRITE):
            stop = min(start + LINES_PER_WRITE, len(part))
            lines = render({k: c.slice(start, stop - start) for k, c in part.columns.items()})
            broken = malformed[(malformed >= start) & (malformed < stop)] - start
            if broken.size:
                replacement = defects.malformed_lines(spec, rng, lines, broken)
                lines = text.replace_rows(lines, broken, replacement)
            payload = _payload(lines)
            if spec.encoding != "utf-8":
                payload = payload.decode("utf-8").encode(spec.encoding)
            out.write(payload)


class TruthWriter:
    """Streams truth/records.parquet and truth/people.parquet, one part at a time."""

    def __init__(self, out_dir: Path, id_width: int) -> None:
        (out_dir / layout.TRUTH_DIR).mkdir(parents=True, exist_ok=True)
        self.id_width = id_width
        self.records = pq.ParquetWriter(out_dir / layout.TRUTH_RECORDS, TRUTH_SCHEMA)
        self.people = pq.ParquetWriter(out_dir / layout.TRUTH_PEOPLE, PEOPLE_SCHEMA)

    def add_part(self, source: str, path: str, part: Part) -> None:
        n = len(part)
        zeros = np.zeros(n, dtype=np.int64)
        table = pa.table(
            [
                text.take([source], zeros),
                part.key,
                text.take([path], zeros),
                pa.array(np.arange(1, n + 1, dtype=np.int64)),
                ids.person_ids(part.gidx, self.id_width),
                text.take(DEFECT_LABELS[1:], part.defect.astype(np.int64) - 1),
                pa.array(part.linkable, pa.bool_()),
            ],
            schema=TRUTH_SCHEMA,
        )
        self.records.write_table(table)

    def add_people(self, table: pa.Table) -> None:
        self.people.write_table(table.cast(PEOPLE_SCHEMA))

    def close(self) -> None:
        self.records.close()
        self.people.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
