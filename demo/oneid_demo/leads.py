"""Lead forms from ads: Douyin (douyin_leads, UTF-8) and Xiaohongshu (xhs_leads, GBK with
Chinese headers). A lead is a phone, a nickname and the campaign that collected it; an orphan
lead holds an old phone of the person that appears nowhere else."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import ids, phones, text, timeline, vocab
from oneid_demo.linkage import Identifier, phone_identifier
from oneid_demo.population import (
    Context,
    Population,
    draw_nicknames,
    nicknames,
    ordinals,
    orphan_rows,
)
from oneid_demo.records import Draft

DOUYIN = "douyin_leads"
XHS = "xhs_leads"
MAX_LEADS_PER_PERSON = 16  # lead numbers are person * 16 + k
_CAMPAIGNS = {DOUYIN: vocab.DOUYIN_CAMPAIGNS, XHS: vocab.XHS_CAMPAIGNS}


def _draw(rng: np.random.Generator, pop: Population, source: str, counts: np.ndarray) -> Draft:
    person, ordinal = ordinals(counts)
    n = len(person)
    time = timeline.sample_times(rng, pop.first_seen[person], timeline.END)
    return Draft.create(
        person,
        time,
        pop.is_test,
        has_phone=True,
        orphan=orphan_rows(rng, pop, person, np.ones(n, dtype=bool), source),
        lead_no=pop.gidx[person] * MAX_LEADS_PER_PERSON + ordinal,
        campaign=rng.integers(0, len(_CAMPAIGNS[source]), size=n),
        nickname=draw_nicknames(rng, n),
    )


def draw_douyin(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """1-2 Douyin leads per person who left one."""
    return _draw(rng, pop, DOUYIN, pop.n_douyin)


def draw_xhs(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """One Xiaohongshu lead per person who left one."""
    return _draw(rng, pop, XHS, pop.n_xhs)


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    return [phone_identifier(draft)]


def render_douyin(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of douyin_leads and the record key (lead_id)."""
    lead_id = ids.douyin_lead_ids(rng, draft.facts["lead_no"], ctx.seed)
    columns = {
        "lead_id": lead_id,
        "phone": phones.phone_cells(rng, DOUYIN, draft.phone, draft.phone_kind),
        "nickname": nicknames(draft.facts["nickname"]),
        "campaign": text.take(vocab.DOUYIN_CAMPAIGNS, draft.facts["campaign"]),
        "created_at": text.local_times(draft.time),
    }
    return columns, lead_id


def render_xhs(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of xhs_leads (GBK-safe values) and the record key (线索ID)."""
    lead_id = ids.xhs_lead_ids(draft.facts["lead_no"], ctx.seed)
    columns = {
        "线索ID": lead_id,
        "手机号": phones.phone_cells(rng, XHS, draft.phone, draft.phone_kind),
        "昵称": nicknames(draft.facts["nickname"], gbk_safe=True),
        "活动名称": text.take(vocab.XHS_CAMPAIGNS, draft.facts["campaign"]),
        "提交时间": text.local_times(draft.time),
    }
    return columns, lead_id
