"""Chinese mobile numbers: who owns which, how they are typed, and the junk ones."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pyarrow as pa

from oneid_demo import ids, rates, text

# Allocated mainland mobile prefixes (phonenumbers accepts all of them as CN mobiles).
MOBILE_PREFIXES = np.array(
    [
        130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 145, 147, 150, 151, 152, 153, 155, 156,
        157, 158, 159, 166, 170, 171, 172, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184,
        185, 186, 187, 188, 189, 191, 193, 195, 196, 197, 198, 199,
    ],
    dtype=np.int64,
)  # fmt: skip
PLACEHOLDER_PHONE = 13800138000  # the number everybody types when a phone is mandatory
JUNK_PHONES = (PLACEHOLDER_PHONE, 13888888888)  # never a person's number (pipeline junk list)
PERSON_PHONES = 4  # numbers per person: up to 3 in use, the 4th only in orphan rows
ORPHAN_PHONE_SLOT = 3
TEST_PHONE_BASE = 13900000000  # test accounts use 13900000000, 13900000001, ...
STORE_PHONE_PREFIXES = (135, 186, 159)
CLASH_PREFIX = 187  # person phones that would equal a reserved number move to this prefix
SUFFIX = 10**8

# (name, pattern): d = ASCII digit, f = full-width digit, anything else is literal
PHONE_FORMATS = (
    ("plain", "ddddddddddd"),
    ("plus86", "+86ddddddddddd"),
    ("plus86_spaced", "+86 ddd dddd dddd"),
    ("cc_dashed", "86-ddd-dddd-dddd"),
    ("intl_0086", "0086 ddddddddddd"),
    ("dashed", "ddd-dddd-dddd"),
    ("spaced", "ddd dddd dddd"),
    ("fullwidth", "fffffffffff"),
    ("padded", "  ddddddddddd "),
)


class PhoneKind(IntEnum):
    """What the phone cell of a row holds."""

    NONE = 0  # no phone in this row
    REAL = 1  # one of the person's own numbers
    PLACEHOLDER = 2  # 13800138000 typed instead of the real number
    INVALID = 3  # a mistyped number that cannot be valid
    STORE = 4  # a store's own mobile typed into somebody else's order


def special_phones(seed: int, stores: int, n_store_phones: int, n_test: int) -> dict:
    """The shared numbers of one dataset: store mobiles (with their store) and test phones."""
    rng = np.random.default_rng([seed, 7_000_001])
    prefixes = np.array(STORE_PHONE_PREFIXES[:n_store_phones], dtype=np.int64)
    store_phones = prefixes * SUFFIX + rng.integers(10**7, SUFFIX, size=n_store_phones)
    return {
        "store_phones": store_phones,
        "store_of_phone": rng.choice(stores, size=n_store_phones, replace=False),
        "test_phones": TEST_PHONE_BASE + np.arange(n_test, dtype=np.int64),
    }


def person_phones(
    rng: np.random.Generator, gidx: np.ndarray, seed: int, reserved: np.ndarray
) -> np.ndarray:
    """PERSON_PHONES distinct numbers per person; unique across all people of the dataset."""
    slots = gidx[:, None] * PERSON_PHONES + np.arange(PERSON_PHONES, dtype=np.int64)
    suffix = ids.scramble(slots, SUFFIX, seed, ids.SALT_PHONE)
    prefix = MOBILE_PREFIXES[rng.integers(0, len(MOBILE_PREFIXES), size=slots.shape)]
    phones = prefix * SUFFIX + suffix
    clash = np.isin(phones, reserved)
    phones[clash] = CLASH_PREFIX * SUFFIX + suffix[clash]
    return phones


def invalid_phones(rng: np.random.Generator, real: np.ndarray) -> np.ndarray:
    """Mistyped versions of real numbers: a digit lost, a 12x prefix, or a digit too many."""
    variant = rng.integers(0, 3, size=len(real))
    digit = rng.integers(0, 10, size=len(real))
    return np.select(
        [variant == 0, variant == 1],
        [real // 10, (120 + digit) * SUFFIX + real % SUFFIX],
        real * 10 + digit,
    )


def _pattern_matrix(numbers: np.ndarray, pattern: str) -> np.ndarray:
    """Byte matrix of 11-digit numbers laid out by a PHONE_FORMATS pattern."""
    cols: list[np.ndarray] = []
    position = 0
    for ch in pattern:
        if ch in "df":
            digit = (numbers // 10 ** (10 - position)) % 10
            position += 1
            if ch == "d":
                cols.append(text.DIGITS[digit])
            else:  # U+FF10 + digit in UTF-8: EF BC 90+digit
                n = len(numbers)
                cols += [np.full(n, 0xEF, np.uint8), np.full(n, 0xBC, np.uint8)]
                cols.append((0x90 + digit).astype(np.uint8))
        else:
            for byte in ch.encode():
                cols.append(np.full(len(numbers), byte, dtype=np.uint8))
    return np.column_stack(cols)


def format_phones(numbers: np.ndarray, kind: np.ndarray, fmt: np.ndarray) -> pa.Array:
    """The phone cell of each row: formatted by fmt (an index of PHONE_FORMATS); invalid
    numbers are written as plain digits, rows of kind NONE get null."""
    numbers = np.asarray(numbers, dtype=np.int64)
    fmt = np.where(kind == PhoneKind.INVALID, -1, fmt)
    fmt = np.where(kind == PhoneKind.NONE, -2, fmt)
    order = np.argsort(fmt, kind="stable")
    pieces: list[pa.Array] = []
    for code in np.unique(fmt):
        rows = numbers[order[fmt[order] == code]]
        if code == -2:
            pieces.append(pa.nulls(len(rows), pa.string()))
        elif code == -1:
            pieces.append(text.numbers(rows))
        else:
            pieces.append(text.from_byte_matrix(_pattern_matrix(rows, PHONE_FORMATS[code][1])))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    if not pieces:
        return pa.array([], pa.string())
    return pa.concat_arrays(pieces).take(pa.array(inverse))


def _ranks(sorted_key: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    m = len(sorted_key)
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    return np.arange(m) - np.repeat(starts, np.diff(np.r_[starts, m]))


def assign_slots(
    rng: np.random.Generator,
    person: np.ndarray,
    anchor: np.ndarray,
    readable: np.ndarray,
    wanted: np.ndarray,
    second_min: int,
    third_min: int,
) -> np.ndarray:
    """Which of its phones (0, 1, 2) each phone-bearing row of a person shows.

    person: chunk-local person per row; anchor: the row is readable and carries the member id;
    readable: the row can be parsed; wanted: phones per person (1..3). A person uses its 2nd
    phone when it wants one, has at least second_min readable phone rows and two anchor rows
    (the 3rd: third_min rows, three anchors). Anchor k (in random order) shows phone k, so every
    phone in use sits next to the member id; of the other rows (in random order) the first
    shows phone 1 and the second phone 2 when in use, so each extra phone sits in two rows.
    """
    m = len(person)
    slots = np.zeros(m, dtype=np.int8)
    if m == 0:
        return slots
    n_anchor = np.bincount(person[anchor], minlength=len(wanted))
    n_readable = np.bincount(person[readable], minlength=len(wanted))
    used = (
        1
        + ((wanted >= 2) & (n_readable >= second_min) & (n_anchor >= 2))
        + ((wanted >= 3) & (n_readable >= third_min) & (n_anchor >= 3))
    )
    order = np.lexsort((rng.random(m), ~anchor, person))
    rank = _ranks(person[order])
    head = rank < used[person[order]]  # anchors only, as used <= n_anchor
    slots[order[head]] = rank[head]
    rest = np.ones(m, dtype=bool)
    rest[order[head]] = False
    rows = np.flatnonzero(rest)
    order = rows[np.lexsort((rng.random(len(rows)), person[rows]))]
    rank = _ranks(person[order])
    use = used[person[order]]
    slots[order[(rank == 0) & (use >= 2)]] = 1
    slots[order[(rank == 1) & (use >= 3)]] = 2
    return slots


def phone_cells(
    rng: np.random.Generator, source: str, number: np.ndarray, kind: np.ndarray
) -> pa.Array:
    """The phone column of a source, each row typed in a format drawn from the source's mix."""
    weights = np.asarray(rates.PHONE_FORMAT_WEIGHTS[source], dtype=float)
    fmt = rng.choice(len(PHONE_FORMATS), size=len(number), p=weights / weights.sum())
    return format_phones(number, kind, fmt)
