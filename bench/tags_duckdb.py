"""DuckDB computing the RFM aggregates of conf/tags.yaml over the tags benchmark's Parquet files.

Same definitions as the registry: a paid order is ``status IN ('paid', 'partially_refunded')``,
its net amount ``paid_amount - coalesce(refund_amount, 0)``, its date the business-day date in
``time_zone``; an N-day window is the N business days ending on the as-of date; every OneID of
``profiles`` gets a row (counts and sums 0 without orders). Orders of records without a OneID
never count.

Run as a script it is its own process (``python bench/tags_duckdb.py DATA OUT AS_OF TZ``) and
prints one JSON line with its wall time and peak RSS (VmHWM), so the benchmark measures
DuckDB's memory apart from the Spark JVM's.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb

WINDOWS = (30, 90, 365)
RFM_COLUMNS = (
    "first_order_date",
    "last_order_date",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "amount_30d",
    "amount_90d",
    "amount_365d",
    "recency_days",
    "frequency",
    "monetary",
)


def rfm_sql(data: Path, out: Path, as_of: dt.date, time_zone: str) -> str:
    day = f"DATE '{as_of.isoformat()}'"
    counts, sums = [], []
    for days in WINDOWS:
        since = f"{day} - INTERVAL {days - 1} DAY"
        scope = f"is_paid AND event_date >= {since}"
        counts.append(f"count(*) FILTER (WHERE {scope}) AS orders_{days}d")
        sums.append(f"sum(net_amount) FILTER (WHERE {scope}) AS amount_{days}d")
    zero_counts = [f"coalesce(orders_{d}d, 0) AS orders_{d}d" for d in WINDOWS]
    zero_sums = [f"coalesce(amount_{d}d, 0)::DECIMAL(18,2) AS amount_{d}d" for d in WINDOWS]
    return f"""
COPY (
  WITH facts AS (
    SELECT r.oneid,
           CAST(timezone('{time_zone}', o.event_time) AS DATE) AS event_date,
           o.status IN ('paid', 'partially_refunded') AS is_paid,
           o.paid_amount - coalesce(o.refund_amount, 0) AS net_amount
    FROM read_parquet('{data}/orders/*.parquet') AS o
    JOIN read_parquet('{data}/record_oneid/*.parquet') AS r USING (source, record_key)
    WHERE o.event_time IS NOT NULL
  ),
  per_oneid AS (
    SELECT oneid,
           min(event_date) FILTER (WHERE is_paid) AS first_order_date,
           max(event_date) FILTER (WHERE is_paid) AS last_order_date,
           {", ".join(counts)},
           {", ".join(sums)}
    FROM facts
    WHERE event_date <= {day}
    GROUP BY oneid
  )
  SELECT p.oneid,
         first_order_date,
         last_order_date,
         {", ".join(zero_counts)},
         {", ".join(zero_sums)},
         CAST(datediff('day', last_order_date, {day}) AS INTEGER) AS recency_days,
         coalesce(orders_365d, 0) AS frequency,
         coalesce(amount_365d, 0)::DECIMAL(18,2) AS monetary
  FROM (SELECT DISTINCT oneid FROM read_parquet('{data}/profiles/*.parquet')) AS p
  LEFT JOIN per_oneid USING (oneid)
) TO '{out}' (FORMAT parquet)
"""


def compute_rfm(data: Path, out: Path, as_of: dt.date, time_zone: str, threads: int = 2) -> None:
    """Write one Parquet file ``out`` with a row per OneID and the RFM columns."""
    out.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {threads}")
        con.execute(rfm_sql(data, out, as_of, time_zone))
    finally:
        con.close()


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would count the forking parent's pages)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str]) -> int:
    data, out, as_of, time_zone = argv
    started = time.perf_counter()
    compute_rfm(Path(data), Path(out), dt.date.fromisoformat(as_of), time_zone)
    report = {"seconds": time.perf_counter() - started, "peak_rss_bytes": _peak_rss()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
