"""App behaviour events (app_events): JSON lines keyed by device, with the member id when the
user is logged in (or the phone number, for a non-member who logged in with an SMS code).

Members use the app, and every device a member uses sees at least one of their logged-in
events, so anonymous events link through the device. Household members who are members also
send events from one shared family device (logging in there too); in a share of households
(rates.PHONE_LOGIN_HOUSEHOLD_SHARE) the non-members use that device as well, logged in by
phone. The pipeline must not link anyone through such a device (max_member_ids cuts it when
two member ids use it, the shared-device rule otherwise), so it is no identifier here. An
orphan event comes from an anonymous device seen once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import ids, phones, rates, text, timeline, vocab
from oneid_demo.linkage import Ident, Identifier, phone_identifier
from oneid_demo.population import (
    FAMILY_DEVICE_SLOT,
    ORPHAN_DEVICE_SLOT,
    Context,
    Population,
    first_of_groups,
    member_numbers,
    ordinals,
    orphan_rows,
    probs,
)
from oneid_demo.records import Defect, Draft, readable

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
    by_phone = pop.phone_login[person]  # these users have no device of their own
    shared = pop.family[person] & ((rng.random(n) < rates.SHARED_DEVICE_EVENT_SHARE) | by_phone)
    owner[shared] = pop.leader[person[shared]]  # the family device sits on the first person
    slot[shared] = FAMILY_DEVICE_SLOT
    time = timeline.sample_times(rng, pop.first_seen[person], timeline.END)
    login_share = np.where(shared, rates.SHARED_DEVICE_LOGIN_SHARE, pop.login_share[person])
    logged_in = rng.random(n) < login_share
    device = pop.gidx[owner] * 8 + slot
    forced = first_of_groups(rng, (device << 32) | person, np.ones(n, dtype=bool))
    logged_in |= forced  # every (user, device) pair has a logged-in event
    orphan = orphan_rows(rng, pop, person, ~forced, SOURCE)
    owner[orphan] = person[orphan]
    slot[orphan] = ORPHAN_DEVICE_SLOT
    logged_in &= (pop.member[person] | by_phone) & ~orphan
    member_no = np.where(logged_in & ~by_phone, member_numbers(rng, pop, person), -1)
    event = rng.choice(len(vocab.EVENTS), size=n, p=probs([e[1] for e in vocab.EVENTS]))
    page = event * 2 + rng.integers(0, 2, size=n)
    with_category = rng.random(n) < np.array([e[3] for e in vocab.EVENTS])[event]
    category = rng.choice(len(vocab.CATEGORIES), size=n, p=probs(vocab.CATEGORY_WEIGHTS))
    return Draft.create(
        person,
        time,
        pop.is_test,
        has_phone=logged_in & by_phone,
        orphan=orphan,
        owner=owner,
        slot=slot,
        member_no=member_no,
        event=event,
        page=page,
        category=np.where(with_category, category, -1),
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    """Member ids, login phones, and devices that are not all-zero nor used by several people."""
    member_no = draft.facts["member_no"]
    device = device_numbers(draft, pop)
    usable = (draft.defect != Defect.PLACEHOLDER_DEVICE) & readable(draft.defect)
    return [
        (usable & ~np.isin(device, shared_devices(draft, pop, usable)), Ident.DEVICE, device),
        (member_no >= 0, Ident.MEMBER, member_no),
        phone_identifier(draft),
    ]


def device_numbers(draft: Draft, pop: Population) -> np.ndarray:
    """A number per (owner, device slot) pair: the identity of the device of each row."""
    return pop.gidx[draft.facts["owner"]] * 8 + draft.facts["slot"]


def shared_devices(draft: Draft, pop: Population, usable: np.ndarray) -> np.ndarray:
    """Devices seen with more than one person in the usable rows (family devices)."""
    pairs = np.unique((device_numbers(draft, pop)[usable] << 32) | draft.person[usable])
    devices, counts = np.unique(pairs >> 32, return_counts=True)
    return devices[counts > 1]


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
        "phone": phones.phone_cells(rng, SOURCE, draft.phone, draft.phone_kind),
        "event": text.take(_EVENT_NAMES, draft.facts["event"]),
        "ts": text.local_times(draft.time, iso=True),
        "page": text.take(_PAGES, draft.facts["page"]),
        "category": text.take(vocab.CATEGORIES, draft.facts["category"]),
    }
    return columns, event_id
