"""Fast building of large string columns: numpy byte matrices for fixed-width values
(ids, timestamps, phones) and Arrow compute for joins and look-ups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oneid_demo import rates

DAY = 86_400
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
TOKEN = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)
Piece = pa.Array | str


def seconds(local: str) -> int:
    """Seconds since 1970-01-01 of a local wall-clock time like 2024-01-01T00:00:00."""
    return int(np.datetime64(local, "s").astype(np.int64))


def days(local_date: str) -> int:
    """Days since 1970-01-01 of a date like 2024-01-01."""
    return int(np.datetime64(local_date, "D").astype(np.int64))


def from_byte_matrix(matrix: np.ndarray) -> pa.StringArray:
    """One UTF-8 string per row of a uint8 matrix (all rows have the same byte width)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    n, width = matrix.shape
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(matrix))


def put_digits(matrix: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    """Write values zero-padded to width ASCII digits into matrix[:, col:col + width]."""
    values = np.asarray(values, dtype=np.int64)
    for k in range(width):
        matrix[:, col + k] = DIGITS[(values // 10 ** (width - 1 - k)) % 10]


def literal_matrix(n: int, template: str) -> np.ndarray:
    """An (n, bytes) matrix whose rows all hold template, to be filled in place."""
    row = np.frombuffer(template.encode(), dtype=np.uint8)
    return np.tile(row, (n, 1))


def prefixed_number(prefix: str, values: np.ndarray, width: int) -> pa.StringArray:
    """prefix + values zero-padded to width digits, e.g. ("M", 12345, 8) -> M00012345."""
    matrix = literal_matrix(len(values), prefix + "0" * width)
    put_digits(matrix, len(prefix.encode()), values, width)
    return from_byte_matrix(matrix)


def local_times(ts: np.ndarray, iso: bool = False) -> pa.StringArray:
    """Local seconds as "YYYY-MM-DD HH:MM:SS", or "YYYY-MM-DDTHH:MM:SS+08:00" when iso."""
    ts = np.asarray(ts, dtype=np.int64)
    day = ts // DAY
    sec = ts - day * DAY
    d64 = day.astype("datetime64[D]")
    month_start = d64.astype("datetime64[M]")
    year = d64.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    dom = (d64 - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    template = "0000-00-00T00:00:00" + rates.UTC_OFFSET if iso else "0000-00-00 00:00:00"
    matrix = literal_matrix(len(ts), template)
    put_digits(matrix, 0, year, 4)
    put_digits(matrix, 5, month, 2)
    put_digits(matrix, 8, dom, 2)
    put_digits(matrix, 11, sec // 3600, 2)
    put_digits(matrix, 14, sec // 60 % 60, 2)
    put_digits(matrix, 17, sec % 60, 2)
    return from_byte_matrix(matrix)


def dates(day: np.ndarray) -> pa.StringArray:
    """Days since 1970-01-01 as "YYYY-MM-DD"."""
    return pc.utf8_slice_codeunits(local_times(np.asarray(day, dtype=np.int64) * DAY), 0, 10)


def random_text(rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray) -> np.ndarray:
    """An (n, length) byte matrix of random characters from alphabet (16 or 64 symbols)."""
    if len(alphabet) not in (16, 64):
        raise ValueError("alphabet size must be 16 or 64")
    raw = np.frombuffer(rng.bytes(n * length), dtype=np.uint8).reshape(n, length)
    return alphabet[raw & (len(alphabet) - 1)]


def tokens(rng: np.random.Generator, n: int, prefix: str, length: int) -> pa.StringArray:
    """prefix + length random URL-safe characters (openids, unionids, external user ids)."""
    head = literal_matrix(n, prefix)
    return from_byte_matrix(np.hstack([head, random_text(rng, n, length, TOKEN)]))


def uuid_matrix(hex_bytes: np.ndarray) -> np.ndarray:
    """Insert the dashes of the 8-4-4-4-12 UUID layout into an (n, 32) hex byte matrix."""
    dash = np.full((len(hex_bytes), 1), ord("-"), dtype=np.uint8)
    h = hex_bytes
    return np.hstack(
        [h[:, :8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:]]
    )


def uuids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """Random lower-case version-4 UUID strings."""
    hex_bytes = random_text(rng, n, 32, HEX)
    hex_bytes[:, 12] = ord("4")
    hex_bytes[:, 16] = HEX[8 + rng.integers(0, 4, size=n)]
    return from_byte_matrix(uuid_matrix(hex_bytes))


def take(vocab: Sequence[str], idx: np.ndarray) -> pa.Array:
    """vocab[idx] as an Arrow string column; a negative index gives null."""
    idx = np.asarray(idx, dtype=np.int64)
    mask = idx < 0
    indices = pa.array(np.where(mask, 0, idx), mask=mask if mask.any() else None)
    return pa.array(list(vocab), pa.string()).take(indices)


def join(*pieces: Piece, sep: str = "") -> pa.Array:
    """Concatenate columns and literal strings row by row (null if any column is null)."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in pieces]
    return pc.binary_join_element_wise(*args, sep)


def where(mask: np.ndarray, a: Piece | None, b: Piece | None) -> pa.Array:
    """a where mask else b; a literal str or None is broadcast."""

    def arg(x: Piece | None) -> pa.Array | pa.Scalar:
        return x if isinstance(x, pa.Array) else pa.scalar(x, pa.string())

    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), arg(a), arg(b))


def numbers(values: np.ndarray) -> pa.Array:
    """Integers as their decimal strings."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def money(cents: np.ndarray) -> pa.Array:
    """Amounts in cents as "299.00" strings."""
    cents = np.asarray(cents, dtype=np.int64)
    return join(numbers(cents // 100), ".", prefixed_number("", cents % 100, 2))


def replace_rows(column: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """column with column[rows] (ascending) replaced by values."""
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(column, pa.array(mask), values.cast(column.type))
