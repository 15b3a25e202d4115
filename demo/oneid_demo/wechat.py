"""WeChat followers / mini-program users (wechat_users): one row per (appid, openid).

The same person has a different openid in every appid; the unionid (mostly present) is the
same across appids; mini programs hold the phone the user authorised. Every user authorised a
phone in one mini-program row that also holds the unionid, so the user's rows link to each
other and to the person's phone records; a lone official-account follower with records
elsewhere also shows up in a mini program.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import phones, rates, text, timeline, vocab
from oneid_demo.linkage import Ident, Identifier, phone_identifier
from oneid_demo.population import Context, Population, first_of_groups, nicknames, orphan_rows
from oneid_demo.records import Draft

SOURCE = "wechat_users"
_APPIDS = tuple(app[0] for app in vocab.WECHAT_APPS)
_APP_TYPES = tuple(app[1] for app in vocab.WECHAT_APPS)
_MINI = np.array([t == "mini_program" for t in _APP_TYPES])
_OPENID_LENGTH = 28


def draw(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """1-2 appids per WeChat user, drawn without replacement by appid popularity (a lone
    official-account follower with records elsewhere also gets the next mini program)."""
    users = np.flatnonzero(pop.wechat)
    weights = np.asarray(rates.APPID_WEIGHTS)
    priority = rng.random((len(users), len(_APPIDS))) ** (1 / weights)
    ranked = np.argsort(-priority, axis=1)
    n_appids = pop.n_appids[users]
    elsewhere = pop.n_records[users] > n_appids + pop.wecom[users]
    n_appids = n_appids + (elsewhere & (n_appids == 1) & ~_MINI[ranked[:, 0]])
    chosen = np.arange(len(_APPIDS)) < n_appids[:, None]
    added = np.repeat(n_appids - pop.n_appids[users], n_appids)
    person = np.repeat(users, n_appids)
    appid = ranked[chosen]
    n = len(person)
    test = pop.is_test[person]
    mini = _MINI[appid]
    authorising = first_of_groups(rng, person, mini)
    has_unionid = (rng.random(n) < rates.UNIONID_SHARE) | ~mini | authorising | test
    phone_share = np.where(has_unionid, rates.WECHAT_PHONE_SHARE, 1.0)
    has_phone = mini & ((rng.random(n) < phone_share) | authorising | test)
    orphan = orphan_rows(rng, pop, person, ~authorising, SOURCE, added)
    time = timeline.sample_times(rng, pop.first_seen[person], timeline.END)
    return Draft.create(
        person,
        time,
        pop.is_test,
        has_phone=has_phone & ~orphan,
        orphan=orphan,
        appid=appid,
        has_unionid=has_unionid & ~orphan,
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    return [
        (draft.facts["has_unionid"], Ident.UNIONID, pop.gidx[draft.person]),
        phone_identifier(draft),
    ]


def unionids(pop: Population, person: np.ndarray) -> pa.StringArray:
    """The person's WeChat unionid (the same in every appid and in WeCom)."""
    head = text.literal_matrix(len(person), "o")
    return text.from_byte_matrix(np.hstack([head, pop.unionid[person]]))


def render(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of wechat_users and the record key ("appid:openid")."""
    appid = draft.facts["appid"]
    n = len(draft)
    prefix = np.stack([np.frombuffer(app[2].encode(), dtype=np.uint8) for app in vocab.WECHAT_APPS])
    openid_tail = text.random_text(rng, n, _OPENID_LENGTH - prefix.shape[1], text.TOKEN)
    openid = text.from_byte_matrix(np.hstack([prefix[appid], openid_tail]))
    appids = text.take(_APPIDS, appid)
    columns = {
        "appid": appids,
        "openid": openid,
        "unionid": text.where(draft.facts["has_unionid"], unionids(pop, draft.person), None),
        "phone": phones.phone_cells(rng, SOURCE, draft.phone, draft.phone_kind),
        "nickname": nicknames(pop.nickname[draft.person]),
        "app_type": text.take(_APP_TYPES, appid),
        "subscribed_at": text.local_times(draft.time),
    }
    return columns, text.join(appids, ":", openid)
