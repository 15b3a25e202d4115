"""App behaviour events (app_events): JSON lines keyed by device, with the member id when the
user is logged in. Household members also send events from one shared family device."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid.generate import ids, rates, text, timeline, vocab
from oneid.generate.linkage import Ident, Identifier
from oneid.generate.population import Context, Population, member_numbers, ordinals, probs
from oneid.generate.records import Defect, Draft

SOURCE = "app_events"
ZERO_DEVICE = "00000000-0000-0000-0000-000000000000"  # all-zero IDFA / OAID (tracking limited)
_EVENT_NAMES = tuple(e[0] for e in vocab.EVENTS)
_UPPER_CASE = np.arange(256, dtype=np.uint8)
_UPPER_CASE[ord("a") : ord("z") + 1] -= 32
_PAGES = tuple(page for e in vocab.EVENTS for page in e[2])  # 2 pages per event


def _device_slots(rng: np.random.Generator, n_devices: np.ndarray) -> np.ndarray:
    """Which own device (0..n_devices-1) sends each event, favouring the first one."""
    slot = np.zeros(len(n_devices), dtype=np.int64)
    for count in (2, 3):
        rows = np.flatnonzero(n_devices == count)
        slot[rows] = rng.choice(count, size=len(rows), p=probs(rates.DEVICE_SLOT_WEIGHTS[:count]))
    return slot


def draw(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """5-40 events per app user (test accounts: hundreds, mostly logged in)."""
    person, _ = ordinals(pop.n_events)
    n = len(person)
    owner = person.copy()
    slot = _device_slots(rng, pop.n_devices[person])
    leader = pop.leader[person]
    shared = (leader != person) & (rng.random(n) < rates.SHARED_DEVICE_EVENT_SHARE)
    owner[shared] = leader[shared]  # the family device is the household leader's first device
    slot[shared] = 0
    time = timeline.sample_times(rng, pop.first_seen[person], timeline.END)
    logged_in = pop.member[person] & (rng.random(n) < pop.login_share[person])
    member_no = np.where(logged_in, member_numbers(rng, pop, person), -1)
    event = rng.choice(len(vocab.EVENTS), size=n, p=probs([e[1] for e in vocab.EVENTS]))
    page = event * 2 + rng.integers(0, 2, size=n)
    with_category = rng.random(n) < np.array([e[3] for e in vocab.EVENTS])[event]
    category = rng.choice(len(vocab.CATEGORIES), size=n, p=probs(vocab.CATEGORY_WEIGHTS))
    return Draft.create(
        person,
        time,
        pop.is_test,
        owner=owner,
        slot=slot,
        member_no=member_no,
        event=event,
        page=page,
        category=np.where(with_category, category, -1),
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    member_no = draft.facts["member_no"]
    return [
        (draft.defect != Defect.PLACEHOLDER_DEVICE, Ident.DEVICE, device_numbers(draft, pop)),
        (member_no >= 0, Ident.MEMBER, member_no),
    ]


def device_numbers(draft: Draft, pop: Population) -> np.ndarray:
    """A number per (owner, device) pair: the identity of the device of each row."""
    return pop.gidx[draft.facts["owner"]] * 4 + draft.facts["slot"]


def render(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of app_events and the record key (event_id)."""
    owner, slot = draft.facts["owner"], draft.facts["slot"]
    ios = pop.device_ios[owner, slot]
    hex_bytes = pop.device_hex[owner, slot]
    hex_bytes[ios] = _UPPER_CASE[hex_bytes[ios]]  # IDFAs are upper-case, OAIDs lower-case
    hex_bytes[draft.defect == Defect.PLACEHOLDER_DEVICE] = ord("0")
    event_id = text.uuids(rng, len(draft))
    member_no = draft.facts["member_no"]
    columns = {
        "event_id": event_id,
        "device_id": text.from_byte_matrix(text.uuid_matrix(hex_bytes)),
        "device_type": text.take(("oaid", "idfa"), ios.astype(np.int64)),
        "user_id": text.where(member_no >= 0, ids.member_ids(np.maximum(member_no, 0)), None),
        "event": text.take(_EVENT_NAMES, draft.facts["event"]),
        "ts": text.local_times(draft.time, iso=True),
        "page": text.take(_PAGES, draft.facts["page"]),
        "category": text.take(vocab.CATEGORIES, draft.facts["category"]),
    }
    return columns, event_id
