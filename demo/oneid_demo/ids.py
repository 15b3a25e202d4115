"""Unique, random-looking business ids derived from person numbers (no global state needed).

`scramble` is a bijection of [0, modulus), so distinct inputs always give distinct ids, in
every chunk, without remembering what was issued before.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import text

_MULTIPLIER = 7_919_333  # odd and not a multiple of 5: invertible modulo any power of ten
MAX_PEOPLE = 10_000_000  # person numbers must fit member ids (8 digits) and linkage keys

# salts keep the id families apart (a person's member number is not its phone suffix)
SALT_PHONE = 11
SALT_MEMBER = 23
SALT_ORDER = 37
SALT_DOUYIN = 41
SALT_XHS = 53
SALT_EMAIL = 67


def scramble(k: np.ndarray, modulus: int, seed: int, salt: int) -> np.ndarray:
    """Map 0 <= k < modulus (modulus <= 10**12) one-to-one onto [0, modulus)."""
    k = np.asarray(k, dtype=np.int64)
    if k.size and (k.min() < 0 or k.max() >= modulus):
        raise ValueError(f"scramble input out of range [0, {modulus})")
    offset = (seed * 1_000_003 + salt * 7_777_777) % modulus
    return (k * _MULTIPLIER + offset) % modulus


def person_ids(gidx: np.ndarray, width: int) -> pa.StringArray:
    """P0000001-style ids of 0-based global person indexes."""
    return text.prefixed_number("P", np.asarray(gidx) + 1, width)


def household_ids(leader_gidx: np.ndarray, width: int) -> pa.StringArray:
    """H0000001-style ids named after the household's first person."""
    return text.prefixed_number("H", np.asarray(leader_gidx) + 1, width)


def member_ids(member_no: np.ndarray) -> pa.StringArray:
    """M00012345-style CRM member ids."""
    return text.prefixed_number("M", member_no, 8)


def order_ids(order_no: np.ndarray, seed: int) -> pa.StringArray:
    """SO + 12 digits, unique per order number."""
    return text.prefixed_number("SO", scramble(order_no, 10**12, seed, SALT_ORDER), 12)


def douyin_lead_ids(rng: np.random.Generator, lead_no: np.ndarray, seed: int) -> pa.Array:
    """19-digit numeric lead ids as Douyin exports them: 7 + 12 unique digits + 6 random."""
    unique = text.prefixed_number("7", scramble(lead_no, 10**12, seed, SALT_DOUYIN), 12)
    tail = text.prefixed_number("", rng.integers(0, 10**6, size=len(lead_no)), 6)
    return text.join(unique, tail)


def xhs_lead_ids(lead_no: np.ndarray, seed: int) -> pa.StringArray:
    """XHS + 10 unique digits."""
    return text.prefixed_number("XHS", scramble(lead_no, 10**10, seed, SALT_XHS), 10)
