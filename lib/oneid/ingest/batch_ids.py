"""Batch ids: what a valid one looks like, and that a new one sorts as it is counted.

Standardize keeps a record's row from the batch whose id sorts last as text: the latest batch
wins. Dates (``2025-06-30``) and zero-padded numbers (``b009``) sort as they are counted;
``b9`` and ``b10`` do not (as text ``b10`` comes first), so a record updated in ``b10`` would
keep ``b9``'s row. Ingest refuses such a new id before it takes a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from oneid.errors import ConfigError

BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_DIGITS = re.compile(r"(\d+)")


def check_batch_id(batch_id: str, earlier: Iterable[str]) -> None:
    """Raise :class:`ConfigError` when ``batch_id`` is not a valid id, or sorts on the other side
    of an ``earlier`` batch id as text than as counted (its numbers compared as numbers)."""
    if not BATCH_ID.match(batch_id):
        raise ConfigError(f"--batch-id {batch_id!r}: use letters, digits and _.:- (max 64)")
    for other in sorted(set(earlier) - {batch_id}):
        as_text = batch_id > other
        if as_text != (_counted(batch_id) > _counted(other)):
            side, counted = ("after", "before") if as_text else ("before", "after")
            raise ConfigError(
                f"--batch-id {batch_id}: it sorts {side} the earlier batch {other} as text but "
                f"{counted} it as counted, and standardize keeps a record's row from the batch "
                "whose id sorts last as text (the latest batch wins). Zero-pad the numbers of "
                "your batch ids (b009, b010) or use dates (2025-06-30)"
            )


def _counted(batch_id: str) -> tuple:
    """The id with each run of digits as a number (text and numbers alternate, text first)."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(batch_id)))
