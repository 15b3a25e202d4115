"""WeCom (企业微信) external contacts of the store staff (wecom_contacts): JSON lines.

Every contact is a WeChat user of the brand's appids; the unionid links the contact to them
(an orphan contact lacks it). Staff sometimes type the customer's phone into the remark, in
whatever format comes to mind; the pipeline does not read identifiers from remarks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import phones, rates, text, timeline, vocab
from oneid_demo.linkage import Ident, Identifier
from oneid_demo.population import Context, Population, orphan_rows, probs
from oneid_demo.records import Draft
from oneid_demo.wechat import unionids

SOURCE = "wecom_contacts"
_STAFF = tuple(
    f"{store.lower()}_ba{k:02d}"
    for store in vocab.STORES
    for k in range(1, vocab.STAFF_PER_STORE + 1)
)
REMARK_PHONE, REMARK_NAME, REMARK_EMPTY = 0, 1, 2


def draw(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """One contact per WeCom person."""
    person = np.flatnonzero(pop.wecom)
    n = len(person)
    test = pop.is_test[person]
    orphan = orphan_rows(rng, pop, person, np.ones(n, dtype=bool), SOURCE)
    remark = rng.choice(3, size=n, p=probs(rates.WECOM_REMARK_WEIGHTS))
    remark[test] = REMARK_PHONE
    time = timeline.sample_times(rng, pop.first_seen[person], timeline.END)
    return Draft.create(
        person,
        time,
        pop.is_test,
        has_phone=remark == REMARK_PHONE,
        orphan=orphan,
        has_unionid=~orphan,
        remark=remark,
        staff=rng.integers(0, len(_STAFF), size=n),
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    return [(draft.facts["has_unionid"], Ident.UNIONID, pop.gidx[draft.person])]


def render(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of wecom_contacts and the record key (external_userid)."""
    n = len(draft)
    person = draft.person
    external_userid = text.tokens(rng, n, "wm", 30)
    honorific = text.join(
        text.take([s[0] for s in vocab.SURNAMES], pop.surname[person]),
        text.take(vocab.HONORIFICS, pop.gender[person]),
    )
    phone = phones.phone_cells(rng, SOURCE, draft.phone, draft.phone_kind)
    style = rng.integers(0, 3, size=n)
    with_phone = text.where(
        style == 0,
        phone,
        text.where(style == 1, text.join(honorific, " ", phone), text.join("VIP", phone)),
    )
    note = text.take(vocab.WECOM_REMARKS, rng.integers(0, len(vocab.WECOM_REMARKS), size=n))
    name_only = text.where(rng.random(n) < 0.6, honorific, note)
    remark = draft.facts["remark"]
    columns = {
        "external_userid": external_userid,
        "unionid": text.where(draft.facts["has_unionid"], unionids(pop, person), None),
        "staff_id": text.take(_STAFF, draft.facts["staff"]),
        "add_time": text.local_times(draft.time, iso=True),
        "remark": text.where(
            remark == REMARK_PHONE, with_phone, text.where(remark == REMARK_NAME, name_only, "")
        ),
    }
    return columns, external_userid
