"""The fixed time window of the demo data and how moments inside it are drawn.

Times are int64 seconds since 1970-01-01 in Asia/Shanghai wall-clock time (no time zone
arithmetic is ever needed: every source writes local time or local time with +08:00).
"""

from __future__ import annotations

import numpy as np

from oneid_demo import rates, text

DAY = text.DAY
START = text.seconds(rates.WINDOW_START)
END = text.seconds(rates.WINDOW_END)
_HOUR_P = np.array(rates.HOUR_WEIGHTS) / np.sum(rates.HOUR_WEIGHTS)
_PROMO_DAYS = np.array([text.days(d) for d in rates.PROMO_DAYS], dtype=np.int64)


def sample_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray | int) -> np.ndarray:
    """One moment per row in [lo, hi]: a uniform day, an evening-heavy hour, a uniform second."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), lo.shape)
    lo_day, hi_day = lo // DAY, hi // DAY
    day = lo_day + (rng.random(len(lo)) * (hi_day - lo_day + 1)).astype(np.int64)
    hour = rng.choice(24, size=len(lo), p=_HOUR_P)
    t = day * DAY + hour * 3600 + rng.integers(0, 3600, size=len(lo))
    return np.clip(t, lo, hi)


def with_promotions(rng: np.random.Generator, t: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Move a share of times onto a promotion day (618, 双11, ...) not before lo."""
    n = len(t)
    promo = _PROMO_DAYS[rng.integers(0, len(_PROMO_DAYS), size=n)] * DAY
    moved = promo + (t % DAY)
    use = (rng.random(n) < rates.PROMO_ORDER_SHARE) & (moved >= lo) & (moved <= END)
    return np.where(use, moved, t)
