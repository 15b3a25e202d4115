"""Synthetic silver facts and identity tables for the tags benchmark (numpy, seeded).

Writes plain Parquet (pyarrow) under ``<out>/``: ``orders``, ``events``, ``contacts`` shaped like
``silver.orders`` / ``silver.events`` / ``silver.contacts``, ``record_oneid`` ((source,
record_key) → oneid) and ``profiles`` (oneid). The tags benchmark copies them into Delta tables;
DuckDB reads the Parquet files themselves, so both engines see the same rows.

Shape: ~18 months of facts ending on ``END`` (UTC), orders per buyer skewed (most buyers 1-3
orders, a long tail up to ``MAX_ORDERS``), 85% of OneIDs buyers, ~1% of orders and ~10% of
events without a OneID (guest checkouts, anonymous devices), events ~3x orders, one contact per
OneID. Same seed, same files.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc)  # exclusive; as-of 2025-06-30 cuts 8 h
START_US = int(START.timestamp()) * 1_000_000
SPAN_US = int((END - START).total_seconds()) * 1_000_000
ORDERS_PER_ONEID = 5
BUYER_SHARE = 0.85
EVENTS_PER_ORDER = 3
MAX_ORDERS = 2000
UNATTRIBUTED_ORDERS = 0.01
ANONYMOUS_EVENTS = 0.10
CHUNK_ONEIDS = 50_000  # OneIDs per generated file (bounds memory at 10M orders)
ONEID_BASE = 1_000_000_000

ORDER_SOURCES = ["tmall_orders", "jd_orders", "douyin_shop", "pos_orders", "wx_mall"]
ORDER_CHANNELS = ["天猫", "京东", "抖音", "门店", "小程序"]
SOURCE_WEIGHTS = [0.32, 0.18, 0.12, 0.23, 0.15]
CATEGORIES = ["护肤", "彩妆", "香水", "个护", "美发", "身体护理", "男士", "母婴"]
STATUSES = ["paid", "partially_refunded", "refunded", "cancelled"]
STATUS_WEIGHTS = [0.84, 0.04, 0.06, 0.06]
EVENTS = ["app_open", "view_item", "search", "add_cart", "share", "purchase", "favorite"]
EVENT_WEIGHTS = [0.26, 0.36, 0.10, 0.12, 0.03, 0.05, 0.08]
PAGES = ["home", "item", "search", "cart", "checkout", "profile", "live"]
DEVICE_TYPES = ["idfa", "oaid", "android_id", "imei"]
CONTACT_SOURCES = ["crm_members", "wechat_users", "douyin_leads", "xhs_leads", "wecom_contacts"]
CONTACT_WEIGHTS = [0.40, 0.25, 0.15, 0.10, 0.10]
CAMPAIGNS = ["618大促", "双11预热", "新品试用", "会员日", None]
STORES = [f"S{n:03d}" for n in range(1, 61)]

DECIMAL = pa.decimal128(18, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Manifest:
    oneids: int
    buyers: int
    orders: int
    orders_unattributed: int
    events: int
    events_anonymous: int
    contacts: int
    record_oneid: int
    max_orders_per_oneid: int
    share_buyers_1_to_3_orders: float
    heaviest_oneids: list[int]
    non_buyer_oneids: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


def synthesise(out: Path, orders: int, seed: int = 20250630) -> Manifest:
    """Write the Parquet inputs for ~``orders`` orders into ``out`` (replaced); return counts."""
    shutil.rmtree(out, ignore_errors=True)
    for name in ("orders", "events", "contacts", "record_oneid", "profiles"):
        (out / name).mkdir(parents=True)
    n_oneids = max(1, orders // ORDERS_PER_ONEID)
    rng = np.random.default_rng(seed)
    buyer = rng.random(n_oneids) < BUYER_SHARE
    counts = np.zeros(n_oneids, dtype=np.int64)
    counts[buyer] = _order_counts(rng, int(buyer.sum()), orders)
    # app activity: 70% of OneIDs use the app, events skewed like orders
    app_user = rng.random(n_oneids) < 0.70
    target_events = round(orders * EVENTS_PER_ORDER * (1 - ANONYMOUS_EVENTS))
    event_counts = np.zeros(n_oneids, dtype=np.int64)
    event_counts[app_user] = _skewed_counts(rng, int(app_user.sum()), target_events, sigma=1.3)
    # each OneID is active from a first-seen time to a last-active time (µs since START)
    span = SPAN_US
    first = (rng.random(n_oneids) ** 1.3 * span).astype(np.int64)
    last = first + ((span - first) * (1 - rng.random(n_oneids) ** 2.5)).astype(np.int64)
    price_level = rng.lognormal(0.0, 0.5, n_oneids)
    fav_source = rng.choice(len(ORDER_SOURCES), n_oneids, p=SOURCE_WEIGHTS)
    fav_category = rng.integers(0, len(CATEGORIES), n_oneids)
    oneid_values = ONEID_BASE + rng.permutation(n_oneids).astype(np.int64) * 7 + 3

    totals = {"orders": 0, "unattributed": 0, "events": 0, "anonymous": 0, "record_oneid": 0}
    for chunk, lo in enumerate(range(0, n_oneids, CHUNK_ONEIDS)):
        ids = np.arange(lo, min(n_oneids, lo + CHUNK_ONEIDS))
        crng = np.random.default_rng([seed, chunk])
        people = {
            "oneid": oneid_values[ids],
            "orders": counts[ids],
            "events": event_counts[ids],
            "first": first[ids],
            "last": last[ids],
            "price": price_level[ids],
            "source": fav_source[ids],
            "category": fav_category[ids],
        }
        order_table, order_owner = _orders(crng, people, start_key=totals["orders"])
        event_table, event_owner = _events(crng, people, start_key=totals["events"])
        contact_table = _contacts(crng, people, start_key=lo)
        # guest checkouts and anonymous devices: facts whose record has no OneID
        order_owner = np.where(crng.random(len(order_owner)) < UNATTRIBUTED_ORDERS, -1, order_owner)
        owners = pa.concat_tables(
            [
                _owners(order_table, order_owner),
                _owners(event_table, event_owner),
                _owners(contact_table, people["oneid"]),
            ]
        )
        name = f"part-{chunk:05d}.parquet"
        pq.write_table(order_table, out / "orders" / name)
        pq.write_table(event_table, out / "events" / name)
        pq.write_table(contact_table, out / "contacts" / name)
        pq.write_table(owners, out / "record_oneid" / name)
        profiles = pa.table({"oneid": pa.array(np.sort(people["oneid"]), pa.int64())})
        pq.write_table(profiles, out / "profiles" / name)
        totals["orders"] += order_table.num_rows
        totals["unattributed"] += int((order_owner < 0).sum())
        totals["events"] += event_table.num_rows
        totals["anonymous"] += int((event_owner < 0).sum())
        totals["record_oneid"] += owners.num_rows

    buyers = counts[counts > 0]
    heaviest = oneid_values[np.argsort(-counts, kind="stable")[:5]]
    return Manifest(
        oneids=n_oneids,
        buyers=int(buyer.sum()),
        orders=totals["orders"],
        orders_unattributed=totals["unattributed"],
        events=totals["events"],
        events_anonymous=totals["anonymous"],
        contacts=n_oneids,
        record_oneid=totals["record_oneid"],
        max_orders_per_oneid=int(counts.max()),
        share_buyers_1_to_3_orders=round(float((buyers <= 3).mean()), 3),
        heaviest_oneids=[int(v) for v in heaviest],
        non_buyer_oneids=[int(v) for v in oneid_values[counts == 0][:5]],
    )


def _order_counts(rng: np.random.Generator, buyers: int, orders: int) -> np.ndarray:
    """Orders per buyer: 1 + a lognormal tail, scaled so the total is ~``orders``."""
    return _skewed_counts(rng, buyers, orders, sigma=1.5, minimum=1)


def _skewed_counts(
    rng: np.random.Generator, n: int, total: int, sigma: float, minimum: int = 1
) -> np.ndarray:
    raw = rng.lognormal(0.0, sigma, n)
    low, high = 0.0, float(total)
    for _ in range(60):  # bisection on the scale: sum(minimum + floor(scale * raw)) ~ total
        scale = (low + high) / 2
        got = np.minimum(minimum + np.floor(scale * raw), MAX_ORDERS).sum()
        low, high = (scale, high) if got < total else (low, scale)
    return np.minimum(minimum + np.floor(low * raw), MAX_ORDERS).astype(np.int64)


def _times(rng: np.random.Generator, people: dict, owner: np.ndarray) -> np.ndarray:
    start, stop = people["first"][owner], people["last"][owner]
    offset = (rng.random(len(owner)) * (stop - start)).astype(np.int64)
    return START_US + start + offset


def _orders(rng: np.random.Generator, people: dict, start_key: int) -> tuple[pa.Table, np.ndarray]:
    owner = np.repeat(np.arange(len(people["oneid"])), people["orders"])
    n = len(owner)
    micros = _times(rng, people, owner).astype(np.int64)
    order = np.argsort(micros, kind="stable")
    owner, micros = owner[order], micros[order]
    source = np.where(
        rng.random(n) < 0.7,
        people["source"][owner],
        rng.choice(len(ORDER_SOURCES), n, p=SOURCE_WEIGHTS),
    )
    cents = np.maximum(
        100, (rng.lognormal(np.log(22_000), 0.8, n) * people["price"][owner]).astype(np.int64)
    )
    status = rng.choice(len(STATUSES), n, p=STATUS_WEIGHTS)
    refund = np.where(
        status == 2,
        cents,
        np.where(status == 1, (cents * rng.uniform(0.1, 0.9, n)).astype(np.int64), 0),
    )
    has_refund = (status == 1) | (status == 2)
    keys = np.arange(start_key, start_key + n)
    order_id = _prefixed("OD", keys, 10)
    store = np.where(source == 3, rng.integers(0, len(STORES), n), -1)
    table = pa.table(
        {
            "source": _pick(ORDER_SOURCES, source),
            "record_key": order_id,
            "event_time": pa.array(micros, pa.int64()).cast(TIMESTAMP),
            "order_id": order_id,
            "paid_amount": _decimal(cents),
            "currency": _pick(["CNY"], np.zeros(n, dtype=np.int64)),
            "categories": _categories(rng, people["category"][owner]),
            "channel": _pick(ORDER_CHANNELS, source),
            "status": _pick(STATUSES, status),
            "refund_amount": _decimal(refund, valid=has_refund),
            "store_id": _pick(STORES, store),
            "batch_id": _batch_ids(micros),
        }
    )
    return table, people["oneid"][owner]


def _events(rng: np.random.Generator, people: dict, start_key: int) -> tuple[pa.Table, np.ndarray]:
    owner = np.repeat(np.arange(len(people["oneid"])), people["events"])
    known = len(owner)
    anonymous = round(known * ANONYMOUS_EVENTS / (1 - ANONYMOUS_EVENTS))
    span = SPAN_US
    micros = np.concatenate(
        [
            _times(rng, people, owner).astype(np.int64),
            (START_US + rng.random(anonymous) * span).astype(np.int64),
        ]
    )
    oneid = np.concatenate([people["oneid"][owner], np.full(anonymous, -1, dtype=np.int64)])
    order = np.argsort(micros, kind="stable")
    micros, oneid = micros[order], oneid[order]
    n = len(micros)
    event = rng.choice(len(EVENTS), n, p=EVENT_WEIGHTS)
    category = np.where(event == 0, -1, rng.integers(0, len(CATEGORIES), n))
    table = pa.table(
        {
            "source": _pick(["app_events"], np.zeros(n, dtype=np.int64)),
            "record_key": _prefixed("EV", np.arange(start_key, start_key + n), 11),
            "event_time": pa.array(micros, pa.int64()).cast(TIMESTAMP),
            "device_type": _pick(DEVICE_TYPES, rng.integers(0, len(DEVICE_TYPES), n)),
            "event": _pick(EVENTS, event),
            "page": _pick(PAGES, rng.integers(0, len(PAGES), n)),
            "category": _pick(CATEGORIES, category),
            "batch_id": _batch_ids(micros),
        }
    )
    return table, oneid


def _contacts(rng: np.random.Generator, people: dict, start_key: int) -> pa.Table:
    n = len(people["oneid"])
    source = rng.choice(len(CONTACT_SOURCES), n, p=CONTACT_WEIGHTS)
    # first touch up to 60 days before the first fact, never before START - 2 years
    before = (rng.random(n) * 60 * 86_400 * 1_000_000).astype(np.int64)
    micros = (START_US + people["first"] - before).astype(np.int64)
    crm = source == 0
    channel = np.where(crm, np.where(rng.random(n) < 0.6, 0, 1), -1)
    campaign = np.where(
        (source == 2) | (source == 3), rng.integers(0, len(CAMPAIGNS) - 1, n), len(CAMPAIGNS) - 1
    )
    return pa.table(
        {
            "source": _pick(CONTACT_SOURCES, source),
            "record_key": _prefixed("CT", np.arange(start_key, start_key + n), 10),
            "event_time": pa.array(micros, pa.int64()).cast(TIMESTAMP),
            "gender": _pick(["男", "女", "未知"], rng.choice(3, n, p=[0.2, 0.7, 0.1])),
            "register_channel": _pick(["门店", "线上"], channel),
            "register_store": _pick(STORES, np.where(crm, rng.integers(0, len(STORES), n), -1)),
            "campaign": _pick(CAMPAIGNS, campaign),
            "batch_id": _batch_ids(micros),
        }
    )


def _owners(facts: pa.Table, oneid: np.ndarray) -> pa.Table:
    keep = oneid >= 0
    return pa.table(
        {
            "source": facts["source"].filter(pa.array(keep)),
            "record_key": facts["record_key"].filter(pa.array(keep)),
            "oneid": pa.array(oneid[keep], pa.int64()),
        }
    )


def _pick(values: list, index: np.ndarray) -> pa.Array:
    """``values[index]`` as a string array; index -1 (or a None value) is NULL."""
    dictionary = pa.array(values, pa.string())
    indices = pa.array(index, pa.int32(), mask=index < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def _prefixed(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = np.char.zfill(numbers.astype(str), width)
    return pa.array(np.char.add(prefix, digits), pa.string())


def _decimal(cents: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """decimal(18,2) from integer cents, built from its 16-byte little-endian storage."""
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    bitmap = None
    null_count = 0
    if valid is not None:
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
        null_count = int((~valid).sum())
    data = pa.py_buffer(words.tobytes())
    return pa.Array.from_buffers(DECIMAL, len(cents), [bitmap, data], null_count=null_count)


def _categories(rng: np.random.Generator, favourite: np.ndarray) -> pa.Array:
    """One or two categories joined by "|" (e.g. 护肤|彩妆), the OneID's favourite most often."""
    n = len(favourite)
    k = len(CATEGORIES)
    first = np.where(rng.random(n) < 0.6, favourite, rng.integers(0, k, n))
    second = (first + rng.integers(1, k, n)) % k  # never the first one
    two = rng.random(n) < 0.3
    labels = CATEGORIES + [f"{a}|{b}" for a in CATEGORIES for b in CATEGORIES]
    index = np.where(two, k + first * k + second, first)
    return _pick(labels, index)


def _batch_ids(micros: np.ndarray) -> pa.Array:
    """Daily ingest batches: ``b<yyyymmdd>`` of the fact's UTC day."""
    day = (micros // 86_400_000_000).astype(np.int64)
    first_day = int(day.min())
    labels = [
        "b" + (dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).strftime("%Y%m%d")
        for d in range(first_day, int(day.max()) + 1)
    ]
    return _pick(labels, day - first_day)
