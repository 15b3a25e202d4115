"""E-commerce and store orders (orders): Parquet with every value a string, as exported."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from oneid_demo import ids, phones, rates, text, timeline, vocab
from oneid_demo.linkage import Ident, Identifier, phone_identifier
from oneid_demo.population import (
    Context,
    Population,
    member_numbers,
    ordinals,
    orphan_rows,
    probs,
)
from oneid_demo.records import Draft

SOURCE = "orders"
MAX_ORDERS_PER_PERSON = 1024  # order numbers are person * 1024 + k
_CATEGORY_SETS = tuple(
    "|".join(c for i, c in enumerate(vocab.CATEGORIES) if mask >> i & 1)
    for mask in range(2 ** len(vocab.CATEGORIES))
)  # indexed by a bit mask of categories, always in vocab order


def draw(ctx: Context, rng: np.random.Generator, pop: Population) -> Draft:
    """1-8 orders per buyer (test accounts: dozens of 0.01 orders); an orphan is a guest order
    typed with an old phone of the buyer that appears nowhere else."""
    person, ordinal = ordinals(pop.n_orders)
    n = len(person)
    test = pop.is_test[person]
    member_order = pop.member[person] & ((rng.random(n) < rates.MEMBER_ORDER_SHARE) | test)
    member_no = np.where(member_order, member_numbers(rng, pop, person), -1)
    has_phone = ~member_order | (rng.random(n) < rates.MEMBER_ORDER_PHONE_SHARE) | test
    orphan = orphan_rows(rng, pop, person, ~member_order, SOURCE)
    lo = pop.first_seen[person]
    time = timeline.with_promotions(rng, timeline.sample_times(rng, lo, timeline.END), lo)
    channel = rng.choice(len(vocab.ORDER_CHANNELS), size=n, p=probs(vocab.ORDER_CHANNEL_WEIGHTS))
    in_store = channel == vocab.ORDER_CHANNELS.index(vocab.STORE_CHANNEL)
    store = np.where(in_store, rng.integers(0, len(vocab.STORES), size=n), -1)
    status = np.where(
        test,
        rng.choice(4, size=n, p=probs(vocab.TEST_ORDER_STATUS_WEIGHTS)),
        rng.choice(4, size=n, p=probs(vocab.ORDER_STATUS_WEIGHTS)),
    )
    yuan = np.maximum(np.rint(np.exp(rng.normal(5.5, 0.7, size=n))), 9).astype(np.int64)
    cents = yuan * 100 + rng.choice([0, 0, 0, 50, 90], size=n)
    cents = np.where(test, 1, cents)
    partial = np.rint(cents * rng.uniform(0.1, 0.6, size=n)).astype(np.int64)
    refund = np.select([status == 1, status == 2], [cents, partial], 0)
    n_categories = rng.choice(3, size=n, p=probs(vocab.ORDER_CATEGORY_COUNT_WEIGHTS)) + 1
    priority = rng.random((n, len(vocab.CATEGORIES))) ** (1 / np.asarray(vocab.CATEGORY_WEIGHTS))
    rank = np.argsort(np.argsort(-priority, axis=1), axis=1)
    category_mask = ((rank < n_categories[:, None]) << np.arange(len(vocab.CATEGORIES))).sum(1)
    return Draft.create(
        person,
        time,
        pop.is_test,
        has_phone=has_phone,
        orphan=orphan,
        member_no=member_no,
        guest=~member_order,
        channel=channel,
        store=store,
        status=status,
        cents=cents,
        refund=refund,
        categories=category_mask,
        order_no=pop.gidx[person] * MAX_ORDERS_PER_PERSON + ordinal,
    )


def identifiers(draft: Draft, pop: Population) -> list[Identifier]:
    member_no = draft.facts["member_no"]
    return [(member_no >= 0, Ident.MEMBER, member_no), phone_identifier(draft)]


def render(
    ctx: Context, rng: np.random.Generator, pop: Population, draft: Draft
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns of orders and the record key (order_id)."""
    facts = draft.facts
    order_id = ids.order_ids(facts["order_no"], ctx.seed)
    member_no = facts["member_no"]
    columns = {
        "order_id": order_id,
        "member_id": text.where(member_no >= 0, ids.member_ids(np.maximum(member_no, 0)), None),
        "phone": phones.phone_cells(rng, SOURCE, draft.phone, draft.phone_kind),
        "paid_amount": text.money(facts["cents"]),
        "currency": text.take(["CNY"], np.zeros(len(draft), dtype=np.int64)),
        "categories": text.take(_CATEGORY_SETS, facts["categories"]),
        "order_time": text.local_times(draft.time),
        "channel": text.take(vocab.ORDER_CHANNELS, facts["channel"]),
        "status": text.take(vocab.ORDER_STATUSES, facts["status"]),
        "refund_amount": text.money(facts["refund"]),
        "store_id": text.take(vocab.STORES, facts["store"]),
    }
    return columns, order_id
