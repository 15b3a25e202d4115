"""The realistic mess: junk phones, broken values and rows, duplicates and late arrivals.

Each row carries at most one defect. Draft-level passes pick the rows (before any text is
built); part-level passes write the broken values and decide the export order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import phones, rates, text, timeline, vocab
from oneid_demo.layout import SourceSpec
from oneid_demo.phones import PhoneKind
from oneid_demo.population import Context, Population
from oneid_demo.records import Defect, Draft, Part, readable

BAD_LOCAL_TIMES = ("2024-13-45 25:61:00", "0000-00-00 00:00:00")
BAD_ISO_TIMES = ("2024-13-45T25:61:00+08:00", "0000-00-00T00:00:00+08:00")
BAD_AMOUNTS = ("abc", "N/A", "#VALUE!")
_PHONE_DEFECTS = {
    "placeholder_phone": (Defect.PLACEHOLDER_PHONE, PhoneKind.PLACEHOLDER),
    "invalid_phone": (Defect.INVALID_PHONE, PhoneKind.INVALID),
}


def _pick(rng: np.random.Generator, eligible: np.ndarray, shares: dict[str, float]) -> dict:
    """Disjoint random subsets of the eligible rows, one per named share."""
    u = rng.random(len(eligible))
    picked, low = {}, 0.0
    for label, share in shares.items():
        picked[label] = eligible & (u >= low) & (u < low + share)
        low += share
    return picked


def apply_phone_defects(ctx: Context, rng: np.random.Generator, drafts: dict[str, Draft]) -> None:
    """Placeholder / invalid phones in CRM, orders, leads (and WeCom remarks); store mobiles
    in guest orders (the order then becomes a store order of that store)."""
    for source, draft in drafts.items():
        clean = (draft.phone_kind == PhoneKind.REAL) & (draft.defect == Defect.NONE)
        for label, hit in _pick(rng, clean, rates.PHONE_DEFECT_RATES.get(source, {})).items():
            defect, kind = _PHONE_DEFECTS[label]
            draft.defect[hit] = defect
            draft.phone_kind[hit] = kind
        if source == "orders":
            clean = (draft.phone_kind == PhoneKind.REAL) & (draft.defect == Defect.NONE)
            hit = np.flatnonzero(clean & draft.facts["guest"])
            hit = hit[rng.random(len(hit)) < rates.STORE_PHONE_RATE]
            which = rng.integers(0, len(ctx.store_phones), size=len(hit))
            draft.defect[hit] = Defect.STORE_PHONE
            draft.phone_kind[hit] = PhoneKind.STORE
            draft.phone[hit] = ctx.store_phones[which]
            draft.facts["store"][hit] = ctx.store_of_phone[which]
            draft.facts["channel"][hit] = vocab.ORDER_CHANNELS.index(vocab.STORE_CHANNEL)


def apply_row_defects(rng: np.random.Generator, drafts: dict[str, Draft]) -> None:
    """Malformed rows, bad timestamps / amounts and all-zero devices among the clean rows."""
    for source, draft in drafts.items():
        clean = draft.defect == Defect.NONE
        for label, hit in _pick(rng, clean, rates.ROW_DEFECT_RATES.get(source, {})).items():
            draft.defect[hit] = Defect[label.upper()]


def assign_phone_numbers(
    rng: np.random.Generator, drafts: dict[str, Draft], pop: Population
) -> None:
    """Fill the phone cell of every phone-bearing row (after the defect passes): junk numbers
    for junk kinds, the person's spare number for orphans, else one of the phones the person
    uses (phones.assign_slots; test accounts use their one phone)."""
    chosen, anchor, parsed = {}, [], []
    for source, draft in drafts.items():
        real = draft.phone_kind == PhoneKind.REAL
        draft.phone[real] = pop.phones[draft.person[real], 0]
        spare = real & draft.orphan
        draft.phone[spare] = pop.phones[draft.person[spare], phones.ORPHAN_PHONE_SLOT]
        placeholder = draft.phone_kind == PhoneKind.PLACEHOLDER
        draft.phone[placeholder] = phones.PLACEHOLDER_PHONE
        invalid = np.flatnonzero(draft.phone_kind == PhoneKind.INVALID)
        draft.phone[invalid] = phones.invalid_phones(rng, pop.phones[draft.person[invalid], 0])
        rows = np.flatnonzero(real & ~draft.orphan & (draft.defect != Defect.TEST_ACCOUNT))
        chosen[source] = rows
        ok = readable(draft.defect[rows])
        member_no = draft.facts.get("member_no")
        parsed.append(ok)
        anchor.append(ok & (member_no[rows] >= 0) if member_no is not None else ok & False)
    person = np.concatenate([drafts[s].person[rows] for s, rows in chosen.items()])
    slots = phones.assign_slots(
        rng,
        person,
        np.concatenate(anchor),
        np.concatenate(parsed),
        pop.wanted_phones,
        rates.SECOND_PHONE_MIN_RECORDS,
        rates.THIRD_PHONE_MIN_RECORDS,
    )
    start = 0
    for source, rows in chosen.items():
        slot = slots[start : start + len(rows)]
        drafts[source].phone[rows] = pop.phones[drafts[source].person[rows], slot]
        start += len(rows)


def apply_value_defects(spec: SourceSpec, rng: np.random.Generator, part: Part) -> Part:
    """Write the unparseable time of bad_timestamp rows and the bad amount of bad_amount rows."""
    columns = dict(part.columns)
    bad_time = np.flatnonzero(part.defect == Defect.BAD_TIMESTAMP)
    if bad_time.size:
        choices = BAD_ISO_TIMES if spec.iso_time else BAD_LOCAL_TIMES
        values = text.take(choices, rng.integers(0, len(choices), size=bad_time.size))
        columns[spec.time_column] = text.replace_rows(columns[spec.time_column], bad_time, values)
    bad_amount = np.flatnonzero(part.defect == Defect.BAD_AMOUNT)
    if bad_amount.size and spec.amount_column:
        values = text.take(BAD_AMOUNTS, rng.integers(0, len(BAD_AMOUNTS), size=bad_amount.size))
        column = columns[spec.amount_column]
        columns[spec.amount_column] = text.replace_rows(column, bad_amount, values)
    return Part(columns, part.key, part.gidx, part.defect, part.linkable, part.time)


def arrange(spec: SourceSpec, rng: np.random.Generator, part: Part) -> tuple[Part, Part]:
    """Export order of one part: by time; a few recent rows held back for the next part
    (late rows, when the source has them); a few clean rows exported twice."""
    by_time = np.argsort(part.time, kind="stable")
    late = np.zeros(len(part), dtype=bool)
    if spec.late_rows:
        recent = part.time[by_time] > timeline.END - rates.LATE_WINDOW_DAYS * timeline.DAY
        late = recent & (part.defect[by_time] == Defect.NONE)
        late &= rng.random(len(part)) < rates.LATE_SHARE_OF_RECENT
    kept = by_time[~late]

    n = len(kept)
    clean = np.flatnonzero(part.defect[kept] == Defect.NONE)
    copies = clean[rng.random(len(clean)) < rates.DUPLICATE_ROW_RATE]
    gap = rng.uniform(0.5, rates.DUPLICATE_MAX_GAP, len(copies))
    order = np.argsort(np.concatenate([np.arange(n, dtype=float), copies + gap]), kind="stable")
    arranged = part.take(kept[np.concatenate([np.arange(n), copies])[order]])
    arranged.defect[order >= n] = Defect.DUPLICATE_ROW
    held = part.take(by_time[late])
    held.defect[:] = Defect.LATE_ROW
    return arranged, held


def break_csv_line(line: str, free_field: int, variant: int, cut: float) -> str:
    """A CSV line with the wrong number of fields: cut short before its last separator
    (variant 0) or with a stray comma inside its free-text field (variant 1)."""
    commas = [i for i, ch in enumerate(line) if ch == ","]
    if variant == 1:
        start = commas[free_field - 1] + 1 if free_field else 0
        return line[: start + 1] + "," + line[start + 1 :]
    low, high = commas[0] + 1, commas[-1]
    return line[: low + int(cut * (high - low))]


def break_json_line(line: str, cut: float) -> str:
    """A JSON line cut off before its closing brace."""
    return line[: 1 + int(cut * (len(line) - 2))]


def malformed_lines(
    spec: SourceSpec, rng: np.random.Generator, lines: pa.Array, rows: np.ndarray
) -> pa.Array:
    """The broken text of the given (malformed) rows."""
    variants = rng.integers(0, 2, size=len(rows))
    cuts = rng.uniform(0.2, 0.9, size=len(rows))
    originals = lines.take(pa.array(rows)).to_pylist()
    if spec.fmt == "jsonl":
        broken = [break_json_line(line, cut) for line, cut in zip(originals, cuts, strict=True)]
    else:
        free = spec.columns.index(spec.free_text_column) if spec.free_text_column else 0
        broken = [
            break_csv_line(line, free, int(v), cut)
            for line, v, cut in zip(originals, variants, cuts, strict=True)
        ]
    return pa.array(broken, pa.string())
