"""CRM member export (crm_members): one row per member id, Chinese headers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oneid_demo import ids, phones, rates, text, timeline, vocab
from oneid_demo.linkage import Ident, Identifier, phone_identifier
from oneid_demo.population import Context, Population, given_names, probs
from oneid_demo.records import Draft

SOURCE = "crm_members"
_DOMAINS = tuple(rates.EMAIL_DOMAIN_WEIGHTS)
_SHOUTED_DOMAINS = tuple(d.split(".")[0].upper() + "." + d.split(".", 1)[1] for d in _DOMAINS)


def draw(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """Members (test accounts registered several member ids with their one phone)."""
    test = np.flatnonzero(pop.is_test)
    members = np.flatnonzero(pop.member & ~pop.is_test)
    person = np.concatenate([np.repeat(test, rates.TEST_MEMBER_IDS), members])
    member_no = np.concatenate([pop.test_member_nos.ravel(), pop.member_no[members]])
    n = len(person)
    registered = pop.first_seen[person].copy()
    n_test = len(test) * rates.TEST_MEMBER_IDS
    registered[:n_test] = timeline.sample_times(rng, np.full(n_test, timeline.START), timeline.END)
    later = timeline.sample_times(rng, registered, timeline.END)
    updated = np.where(rng.random(n) < 0.6, later, registered)
    channel = rng.choice(len(vocab.CRM_CHANNELS), size=n, p=probs(vocab.CRM_CHANNEL_WEIGHTS))
    in_store = channel == vocab.CRM_CHANNELS.index(vocab.STORE_CHANNEL)
    store = np.where(in_store, rng.integers(0, len(vocab.STORES), size=n), -1)
    return Draft.create(
        person,
        registered,
        pop.is_test,
        has_phone=True,
        member_no=member_no,
        channel=channel,
        store=store,
        updated=updated,
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    has_email = pop.email_style[draft.person] >= 0
    return [
        (np.ones(len(draft), dtype=bool), Ident.MEMBER, draft.facts["member_no"]),
        phone_identifier(draft),
        (has_email, Ident.EMAIL, pop.gidx[draft.person]),
    ]


def _emails(ctx: Context, pop: Population, rows: np.ndarray, given_pinyin: pa.Array) -> pa.Array:
    """Unique emails in four local-part styles, some in mixed case or with stray spaces."""
    style = pop.email_style[rows]
    number = text.numbers(ids.scramble(pop.gidx[rows], 10**8, ctx.seed, ids.SALT_EMAIL))
    qq = text.numbers(ids.scramble(pop.gidx[rows], 10**8, ctx.seed, ids.SALT_EMAIL) + 10**7)
    surname = text.take([s[1] for s in vocab.SURNAMES], pop.surname[rows])
    local = pc.choose(
        pa.array(np.maximum(style, 0), pa.int8()),
        qq,
        text.join(surname, ".", given_pinyin, number),
        text.join(given_pinyin, surname, number),
        text.join(surname, "_", given_pinyin, number),
    )
    case = pop.email_case[rows]
    local = text.where(case > 0, pc.utf8_title(local), local)
    domain = text.where(
        case == 2,
        text.take(_SHOUTED_DOMAINS, pop.email_domain[rows]),
        text.take(_DOMAINS, pop.email_domain[rows]),
    )
    email = text.join(local, "@", domain)
    email = text.where(pop.email_padded[rows], text.join("  ", email, " "), email)
    return text.where(style >= 0, email, None)


def render(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of crm_members and the record key (会员编号)."""
    rows = draft.person
    member_id = ids.member_ids(draft.facts["member_no"])
    names, given_pinyin = given_names(pop, rows)
    birthday = pop.birthday[rows]
    columns = {
        "会员编号": member_id,
        "手机号": phones.phone_cells(rng, SOURCE, draft.phone, draft.phone_kind),
        "邮箱": _emails(ctx, pop, rows, given_pinyin),
        "姓名": names,
        "性别": text.take(vocab.GENDERS, pop.gender[rows]),
        "生日": text.where(birthday >= 0, text.dates(np.maximum(birthday, 0)), None),
        "注册门店": text.take(vocab.STORES, draft.facts["store"]),
        "注册渠道": text.take(vocab.CRM_CHANNELS, draft.facts["channel"]),
        "注册时间": text.local_times(draft.time),
        "更新时间": text.local_times(draft.facts["updated"]),
    }
    return columns, member_id
