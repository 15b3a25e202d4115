"""The people behind the records: one chunk of persons with everything drawn per person."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from oneid_demo import ids, phones, rates, text, timeline, vocab

# Device slots of a person: 0-2 own devices, 3 the household's family device (on the
# household's first person), 4 the anonymous device of an orphan event.
OWN_DEVICES = 3
FAMILY_DEVICE_SLOT = 3
ORPHAN_DEVICE_SLOT = 4
DEVICE_SLOTS = 5


def probs(weights: tuple[float, ...] | list[float]) -> np.ndarray:
    """Weights scaled to probabilities (for Generator.choice)."""
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


@dataclass(frozen=True)
class Context:
    """What every chunk of one dataset shares."""

    seed: int
    people: int
    n_test: int
    id_width: int
    store_phones: np.ndarray
    store_of_phone: np.ndarray
    test_phones: np.ndarray
    reserved_phones: np.ndarray

    @classmethod
    def create(cls, seed: int, people: int) -> Context:
        if not 1 <= people <= ids.MAX_PEOPLE:
            raise ValueError(f"people must be between 1 and {ids.MAX_PEOPLE}, got {people}")
        n_test = min(rates.TEST_ACCOUNTS_MAX, max(1, people // rates.PEOPLE_PER_TEST_ACCOUNT))
        special = phones.special_phones(seed, len(vocab.STORES), rates.STORE_PHONES, n_test)
        reserved = np.concatenate(
            [phones.JUNK_PHONES, special["store_phones"], special["test_phones"]]
        )
        return cls(
            seed=seed,
            people=people,
            n_test=min(n_test, people),
            id_width=max(7, len(str(people))),
            reserved_phones=reserved.astype(np.int64),
            **special,
        )


@dataclass
class Population:
    """Per-person facts of one chunk (arrays of length n, index = chunk-local person)."""

    gidx: np.ndarray  # 0-based global person index
    is_test: np.ndarray
    leader: np.ndarray  # chunk-local index of the household's first person (self if alone)
    family: np.ndarray  # lives in a household of 2-4 sharing a device
    phone_login: np.ndarray  # a non-member using only the family device, logged in by phone
    gender: np.ndarray  # index of vocab.GENDERS
    surname: np.ndarray
    given: np.ndarray  # (n, 2) indexes into the gender's given-name list, -1 = none
    birthday: np.ndarray  # days since 1970, -1 = not given
    phones: np.ndarray  # (n, 4) the person's own numbers (the 4th only in orphan rows)
    wanted_phones: np.ndarray  # 1..3
    member: np.ndarray
    member_no: np.ndarray  # -1 unless member
    test_member_nos: np.ndarray  # (n_test_in_chunk, TEST_MEMBER_IDS)
    first_seen: np.ndarray  # local seconds
    n_orders: np.ndarray
    n_events: np.ndarray
    n_devices: np.ndarray  # own devices (app users: 1..3; phone_login users: 0)
    device_hex: np.ndarray  # (n, DEVICE_SLOTS, 32) hex bytes of the devices
    device_ios: np.ndarray  # (n, DEVICE_SLOTS) device reports an IDFA (else an OAID)
    login_share: np.ndarray
    wechat: np.ndarray
    n_appids: np.ndarray
    unionid: np.ndarray  # (n, 27) token bytes
    wecom: np.ndarray
    n_douyin: np.ndarray
    n_xhs: np.ndarray
    email_style: np.ndarray  # -1 = no email
    email_domain: np.ndarray
    email_case: np.ndarray  # 0 lower, 1 Title.Case, 2 upper-case domain
    email_padded: np.ndarray
    nickname: np.ndarray  # (n, 3) head, core, tail indexes
    n_records: np.ndarray  # records of all sources (before duplicates)

    def __len__(self) -> int:
        return len(self.gidx)


def draw_population(ctx: Context, rng: np.random.Generator, start: int, n: int) -> Population:
    """Draw persons start .. start + n - 1 (the first ctx.n_test persons are test accounts)."""
    gidx = np.arange(start, start + n, dtype=np.int64)
    is_test = gidx < ctx.n_test
    test_rows = np.flatnonzero(is_test)

    gender = rng.choice(3, size=n, p=probs(rates.GENDER_WEIGHTS))
    surname = rng.choice(len(vocab.SURNAMES), size=n, p=probs([s[2] for s in vocab.SURNAMES]))
    given = rng.integers(0, len(vocab.GIVEN_FEMALE), size=(n, 2))
    given[rng.random(n) < 0.35, 1] = -1  # a third of given names have one character
    lo_birth, hi_birth = (text.days(d) for d in rates.BIRTH_DATE_RANGE)
    birthday = rng.integers(lo_birth, hi_birth + 1, size=n)
    birthday[rng.random(n) >= rates.BIRTHDAY_SHARE] = -1

    person_phone = phones.person_phones(rng, gidx, ctx.seed, ctx.reserved_phones)
    person_phone[test_rows, 0] = ctx.test_phones[gidx[test_rows]]
    wanted = rng.choice(3, size=n, p=probs(rates.PHONE_COUNT_WEIGHTS)) + 1
    wanted[test_rows] = 1

    member = (rng.random(n) < rates.MEMBER_SHARE) | is_test
    member_no = np.where(member, ids.scramble(gidx, 10**8, ctx.seed, ids.SALT_MEMBER), -1)
    test_k = ctx.people + gidx[test_rows, None] * rates.TEST_MEMBER_IDS
    test_member_nos = ids.scramble(
        test_k + np.arange(rates.TEST_MEMBER_IDS), 10**8, ctx.seed, ids.SALT_MEMBER
    )
    member_no[test_rows] = test_member_nos[:, 0]

    first_seen = timeline.sample_times(
        rng,
        np.full(n, timeline.START),
        timeline.END - rates.FIRST_SEEN_MARGIN_DAYS * timeline.DAY,
    )

    buyer = rng.random(n) < np.where(member, rates.BUYER_SHARE_MEMBER, rates.BUYER_SHARE_GUEST)
    n_orders = np.where(buyer, rng.choice(8, size=n, p=probs(rates.ORDER_COUNT_WEIGHTS)) + 1, 0)
    leader, family = _households(rng, n, is_test)
    app = member & ((rng.random(n) < rates.APP_SHARE_MEMBER) | family)
    lo_events, hi_events = rates.EVENT_COUNT_RANGE
    n_events = np.where(app, rng.integers(lo_events, hi_events + 1, size=n), 0)
    n_devices = np.where(app, rng.choice(3, size=n, p=probs(rates.DEVICE_COUNT_WEIGHTS)) + 1, 0)
    n_devices = np.where(family, np.minimum(n_devices, 2), n_devices)
    device_hex = text.random_text(rng, n * DEVICE_SLOTS, 32, text.HEX).reshape(n, DEVICE_SLOTS, 32)
    device_ios = rng.random((n, DEVICE_SLOTS)) < rates.IOS_SHARE
    login_share = rng.uniform(*rates.LOGIN_SHARE_RANGE, size=n)

    wechat = rng.random(n) < rates.WECHAT_SHARE
    n_appids = np.where(wechat, 1 + (rng.random(n) < rates.SECOND_APPID_SHARE), 0)
    unionid = text.random_text(rng, n, 27, text.TOKEN)
    wecom = wechat & (rng.random(n) < rates.WECOM_SHARE_WECHAT)
    douyin = rng.random(n) < rates.DOUYIN_SHARE
    n_douyin = np.where(douyin, 1 + (rng.random(n) < rates.SECOND_DOUYIN_LEAD_SHARE), 0)
    n_xhs = (rng.random(n) < rates.XHS_SHARE).astype(np.int64)

    domains = list(rates.EMAIL_DOMAIN_WEIGHTS)
    email_style = np.where(rng.random(n) < rates.EMAIL_SHARE, rng.integers(0, 4, size=n), -1)
    email_domain = rng.choice(
        len(domains), size=n, p=probs(list(rates.EMAIL_DOMAIN_WEIGHTS.values()))
    )
    email_domain = np.where(email_style == 0, domains.index("qq.com"), email_domain)
    email_case = np.where(
        rng.random(n) < rates.EMAIL_MIXED_CASE_SHARE, rng.integers(1, 3, size=n), 0
    )
    email_padded = rng.random(n) < rates.EMAIL_WHITESPACE_SHARE
    nickname = draw_nicknames(rng, n)

    # everybody shows up somewhere: the otherwise invisible left a Douyin lead and bought once
    seen = member | (n_orders > 0) | (n_events > 0) | wechat | wecom | (n_douyin > 0) | (n_xhs > 0)
    n_douyin = np.where(seen, n_douyin, 1)
    n_orders = np.where(seen, n_orders, 1)

    phone_login = family & ~member & (rng.random(n) < rates.PHONE_LOGIN_HOUSEHOLD_SHARE)[leader]
    n_events = np.where(phone_login, rng.integers(lo_events, hi_events + 1, size=n), n_events)

    if test_rows.size:
        t = len(test_rows)
        n_orders[test_rows] = rng.integers(*rates.TEST_ORDER_RANGE, size=t, endpoint=True)
        n_events[test_rows] = rng.integers(*rates.TEST_EVENT_RANGE, size=t, endpoint=True)
        n_devices[test_rows] = rates.TEST_DEVICES
        login_share[test_rows] = 0.95
        wechat[test_rows] = True
        n_appids[test_rows] = len(vocab.WECHAT_APPS)
        wecom[test_rows] = True
        n_douyin[test_rows] = rng.integers(*rates.TEST_LEAD_RANGE, size=t, endpoint=True)
        n_xhs[test_rows] = rng.integers(*rates.TEST_LEAD_RANGE, size=t, endpoint=True)
        email_style[test_rows] = -1
        first_seen[test_rows] = timeline.START

    return Population(
        gidx=gidx,
        is_test=is_test,
        leader=leader,
        family=family,
        phone_login=phone_login,
        gender=gender,
        surname=surname,
        given=given,
        birthday=birthday,
        phones=person_phone,
        wanted_phones=wanted,
        member=member,
        member_no=member_no,
        test_member_nos=test_member_nos,
        first_seen=first_seen,
        n_orders=n_orders,
        n_events=n_events,
        n_devices=n_devices,
        device_hex=device_hex,
        device_ios=device_ios,
        login_share=login_share,
        wechat=wechat,
        n_appids=n_appids,
        unionid=unionid,
        wecom=wecom,
        n_douyin=n_douyin,
        n_xhs=n_xhs,
        email_style=email_style,
        email_domain=email_domain,
        email_case=email_case,
        email_padded=email_padded,
        nickname=nickname,
        n_records=(
            np.where(member & ~is_test, 1, 0)
            + np.where(is_test, rates.TEST_MEMBER_IDS, 0)
            + n_orders
            + n_events
            + n_appids
            + wecom
            + n_douyin
            + n_xhs
        ),
    )


def _households(
    rng: np.random.Generator, n: int, is_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Group ~HOUSEHOLD_PEOPLE_SHARE of the (non-test) persons into households of 2-4."""
    leader = np.arange(n, dtype=np.int64)
    family = np.zeros(n, dtype=bool)
    candidates = rng.permutation(np.flatnonzero(~is_test))
    target = round(rates.HOUSEHOLD_PEOPLE_SHARE * len(candidates))
    sizes = rng.choice([2, 3, 4], size=target // 2 + 1, p=probs(rates.HOUSEHOLD_SIZE_WEIGHTS))
    sizes = sizes[np.cumsum(sizes) <= target]
    if sizes.size == 0:
        return leader, family
    members = candidates[: sizes.sum()]
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    leader[members] = members[first]
    family[members] = True
    return leader, family


def given_names(pop: Population, rows: np.ndarray | None = None) -> tuple[pa.Array, pa.Array]:
    """(full name, given-name pinyin) of persons (test accounts get a 测试 name)."""
    rows = np.arange(len(pop)) if rows is None else rows
    gender, given = pop.gender[rows], pop.given[rows]
    male = gender == 0
    chars = [
        text.where(
            male,
            text.take([g[0] for g in vocab.GIVEN_MALE], given[:, k]),
            text.take([g[0] for g in vocab.GIVEN_FEMALE], given[:, k]),
        ).fill_null("")
        for k in range(2)
    ]
    sounds = [
        text.where(
            male,
            text.take([g[1] for g in vocab.GIVEN_MALE], given[:, k]),
            text.take([g[1] for g in vocab.GIVEN_FEMALE], given[:, k]),
        ).fill_null("")
        for k in range(2)
    ]
    names = text.join(text.take([s[0] for s in vocab.SURNAMES], pop.surname[rows]), *chars)
    test = pop.is_test[rows]
    if test.any():
        test_names = text.join(
            text.take(vocab.TEST_ACCOUNT_NAMES, pop.gidx[rows] % len(vocab.TEST_ACCOUNT_NAMES)),
            text.numbers(pop.gidx[rows] + 1),
        )
        names = text.where(test, test_names, names)
    return names, text.join(*sounds)


def nicknames(idx: np.ndarray, gbk_safe: bool = False) -> pa.Array:
    """Nicknames from (rows, 3) head/core/tail indexes; gbk_safe drops the emoji tails."""
    tails = vocab.NICK_TAILS_GBK if gbk_safe else vocab.NICK_TAILS_UTF8
    return text.join(
        text.take(vocab.NICK_HEADS, idx[:, 0]),
        text.take(vocab.NICK_CORES, idx[:, 1]),
        text.take(tails, idx[:, 2] % len(tails)),
    )


def draw_nicknames(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) random head/core/tail indexes for nicknames."""
    return np.column_stack(
        [
            rng.integers(0, len(vocab.NICK_HEADS), size=n),
            rng.integers(0, len(vocab.NICK_CORES), size=n),
            rng.integers(0, len(vocab.NICK_TAILS_UTF8), size=n),
        ]
    )


def member_numbers(rng: np.random.Generator, pop: Population, person: np.ndarray) -> np.ndarray:
    """The member number a row of each person uses (a test account uses any of its ids)."""
    number = pop.member_no[person].copy()
    test = np.flatnonzero(pop.is_test[person])
    pick = rng.integers(0, pop.test_member_nos.shape[1] or 1, size=len(test))
    number[test] = pop.test_member_nos[person[test], pick]
    return number


def orphan_rows(
    rng: np.random.Generator,
    pop: Population,
    person: np.ndarray,
    candidate: np.ndarray,
    source: str,
    extra_records: np.ndarray | int = 0,
) -> np.ndarray:
    """Rows chosen as orphans: candidates at the source's ORPHAN_RATES, at most one per person,
    only of (non-test) persons with more than ORPHAN_MIN_RECORDS records.

    extra_records: records a source adds beyond pop.n_records (per row).
    """
    n_records = pop.n_records[person] + extra_records
    eligible = candidate & ~pop.is_test[person] & (n_records > rates.ORPHAN_MIN_RECORDS)
    hit = np.flatnonzero(eligible & (rng.random(len(person)) < rates.ORPHAN_RATES[source]))
    _, first = np.unique(person[hit], return_index=True)
    orphan = np.zeros(len(person), dtype=bool)
    orphan[hit[first]] = True
    return orphan


def first_of_groups(rng: np.random.Generator, key: np.ndarray, among: np.ndarray) -> np.ndarray:
    """One random row per distinct key among the rows where `among` holds (a mask)."""
    rows = np.flatnonzero(among)
    rows = rows[rng.permutation(len(rows))]
    _, first = np.unique(key[rows], return_index=True)
    chosen = np.zeros(len(key), dtype=bool)
    chosen[rows[first]] = True
    return chosen


def ordinals(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person, k-th row of that person) for counts[p] rows per person p."""
    person = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return person, np.arange(len(person), dtype=np.int64) - np.repeat(starts, counts)
