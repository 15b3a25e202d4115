"""generate_demo: the whole dataset, chunk by chunk, with its ground truth and manifest."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa

from oneid_demo import (
    app_events,
    crm,
    defects,
    ids,
    layout,
    leads,
    linkage,
    orders,
    population,
    rates,
    text,
    wechat,
    wecom,
)
from oneid_demo.layout import SourceSpec
from oneid_demo.phones import PhoneKind
from oneid_demo.population import Context, Population
from oneid_demo.records import DEFECT_LABELS, Defect, Draft, Part
from oneid_demo.writers import TruthWriter, write_part

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceBuilder:
    """How one source is drawn, linked and rendered."""

    draw: Callable[[Context, np.random.Generator, Population], Draft]
    identifiers: Callable[[Draft, Population], list[linkage.Identifier]]
    render: Callable[..., tuple[dict[str, pa.Array], pa.Array]]

    @classmethod
    def of(cls, module: ModuleType) -> SourceBuilder:
        return cls(module.draw, module.identifiers, module.render)


BUILDERS: dict[str, SourceBuilder] = {
    "crm_members": SourceBuilder.of(crm),
    "orders": SourceBuilder.of(orders),
    "app_events": SourceBuilder.of(app_events),
    "wechat_users": SourceBuilder.of(wechat),
    "douyin_leads": SourceBuilder(leads.draw_douyin, leads.identifiers, leads.render_douyin),
    "xhs_leads": SourceBuilder(leads.draw_xhs, leads.identifiers, leads.render_xhs),
    "wecom_contacts": SourceBuilder.of(wecom),
}


class _Tally:
    """Rows, defects and unlinkable rows per source, and rows per file, for the manifest."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.unlinkable: Counter[str] = Counter()
        self.defects: dict[str, Counter[str]] = {spec.name: Counter() for spec in layout.SOURCES}
        self.files: list[dict] = []

    def add(self, spec: SourceSpec, path: str, part: Part) -> None:
        self.rows[spec.name] += len(part)
        self.unlinkable[spec.name] += int((~part.linkable).sum())
        codes, counts = np.unique(part.defect, return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            if code != Defect.NONE:
                self.defects[spec.name][DEFECT_LABELS[code]] += int(count)
        self.files.append({"path": path, "source": spec.name, "rows": len(part)})


def _clear_previous(out_dir: Path) -> None:
    """Remove the files an earlier run wrote here, so no stale part survives."""
    for spec in layout.SOURCES:
        for old in sorted((out_dir / layout.SOURCES_DIR / spec.name).glob(f"part-*.{spec.fmt}")):
            old.unlink()
    for name in (layout.TRUTH_RECORDS, layout.TRUTH_PEOPLE, layout.MANIFEST):
        (out_dir / name).unlink(missing_ok=True)


def _people_table(ctx: Context, pop: Population, drafts: dict[str, Draft]) -> pa.Table:
    """truth/people rows of one chunk: kind, household, the phones / devices really used and
    whether the person logs in to the app by phone on a shared device."""
    n = len(pop)
    people, numbers = [], []
    for draft in drafts.values():
        real = draft.phone_kind == PhoneKind.REAL
        people.append(draft.person[real])
        numbers.append(draft.phone[real])
    n_phones = linkage.distinct_per_person(n, np.concatenate(people), np.concatenate(numbers))
    events = drafts["app_events"]
    device = events.defect != Defect.PLACEHOLDER_DEVICE
    n_devices = linkage.distinct_per_person(
        n, events.person[device], app_events.device_numbers(events, pop)[device]
    )
    return pa.table(
        {
            "person_id": ids.person_ids(pop.gidx, ctx.id_width),
            "kind": text.take(("person", "test_account"), pop.is_test.astype(np.int64)),
            "household_id": ids.household_ids(pop.gidx[pop.leader], ctx.id_width),
            "n_phones": pa.array(n_phones.astype(np.int32)),
            "n_devices": pa.array(n_devices.astype(np.int32)),
            "phone_login": pa.array(pop.phone_login),
        }
    )


def _chunk_parts(
    ctx: Context, rng: np.random.Generator, start: int, n: int, truth: TruthWriter
) -> dict[str, Part]:
    """Draw one chunk of people and all their records; return the rendered part per source."""
    pop = population.draw_population(ctx, rng, start, n)
    drafts = {name: builder.draw(ctx, rng, pop) for name, builder in BUILDERS.items()}
    defects.apply_phone_defects(ctx, rng, drafts)
    defects.apply_row_defects(rng, drafts)
    defects.assign_phone_numbers(rng, drafts, pop)
    identifiers = {name: BUILDERS[name].identifiers(d, pop) for name, d in drafts.items()}
    linkable = linkage.linkable_rows(drafts, identifiers, pop)
    truth.add_people(_people_table(ctx, pop, drafts))
    parts = {}
    for spec in layout.SOURCES:
        draft = drafts[spec.name]
        columns, key = BUILDERS[spec.name].render(ctx, rng, pop, draft)
        part = Part(
            columns, key, pop.gidx[draft.person], draft.defect, linkable[spec.name], draft.time
        )
        parts[spec.name] = defects.apply_value_defects(spec, rng, part)
    return parts


def generate_demo(
    out_dir: Path, people: int = 5000, seed: int = 42, chunk_people: int = 200_000
) -> dict:
    """Write source files + ground truth under out_dir; return the manifest dict (also written
    to out_dir/manifest.json).

    Deterministic: the same (people, seed, chunk_people) gives byte-identical files. People are
    processed chunk_people at a time; each chunk writes part file number <chunk> of every
    source, and late rows of the last chunk go to one extra part.
    """
    if chunk_people < 1:
        raise ValueError("chunk_people must be positive")
    out_dir = Path(out_dir)
    ctx = Context.create(seed, people)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    n_chunks = math.ceil(people / chunk_people)
    tally = _Tally()
    held: dict[str, Part] = {}
    began = time.perf_counter()
    with TruthWriter(out_dir, ctx.id_width) as truth:

        def emit(spec: SourceSpec, index: int, part: Part, rng: np.random.Generator) -> None:
            path = spec.part_path(index)
            write_part(out_dir, spec, path, part, rng)
            truth.add_part(spec.name, path, part)
            tally.add(spec, path, part)

        for chunk in range(n_chunks):
            rng = np.random.default_rng([seed, chunk])
            start = chunk * chunk_people
            size = min(chunk_people, people - start)
            parts = _chunk_parts(ctx, rng, start, size, truth)
            for spec in layout.SOURCES:
                part, late = defects.arrange(spec, rng, parts[spec.name])
                if spec.name in held:
                    part = Part.concat([part, held.pop(spec.name)])
                if len(late):
                    held[spec.name] = late
                emit(spec, chunk, part, rng)
            logger.info(
                "chunk %d/%d: %d people, %d rows so far, %.1f s",
                chunk + 1,
                n_chunks,
                start + size,
                sum(tally.rows.values()),
                time.perf_counter() - began,
            )
        rng = np.random.default_rng([seed, n_chunks])
        for spec in layout.SOURCES:
            if spec.name in held:
                emit(spec, n_chunks, held.pop(spec.name), rng)

    manifest = _manifest(ctx, chunk_people, tally)
    (out_dir / layout.MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    elapsed = time.perf_counter() - began
    logger.info(
        "generated %d people, %d rows in %.1f s (%.0f people/s) under %s",
        people,
        sum(tally.rows.values()),
        elapsed,
        people / elapsed if elapsed else float("inf"),
        out_dir,
    )
    return manifest


def _manifest(ctx: Context, chunk_people: int, tally: _Tally) -> dict:
    names = [spec.name for spec in layout.SOURCES]
    return {
        "generator": "oneid_demo",
        "version": rates.GENERATOR_VERSION,
        "seed": ctx.seed,
        "people": ctx.people,
        "chunk_people": chunk_people,
        "test_accounts": ctx.n_test,
        "time_window": {
            "start": rates.WINDOW_START.replace("T", " "),
            "end": rates.WINDOW_END.replace("T", " "),
            "timezone": rates.TIMEZONE,
        },
        "rows": {name: tally.rows[name] for name in names},
        "defects": {
            name: {
                label: tally.defects[name][label]
                for label in DEFECT_LABELS[1:]
                if tally.defects[name][label]
            }
            for name in names
        },
        "unlinkable": {name: tally.unlinkable[name] for name in names},
        "files": sorted(tally.files, key=lambda f: f["path"]),
        "truth": {
            "records": layout.TRUTH_RECORDS,
            "people": layout.TRUTH_PEOPLE,
            "record_rows": sum(tally.rows.values()),
        },
    }
