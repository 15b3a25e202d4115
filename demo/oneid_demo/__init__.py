"""Deterministic demo data: a brand's messy customer sources plus the ground truth.

Pure Python (numpy + pyarrow, no Spark). `generate_demo(out_dir)` writes

- ``sources/<source>/part-NNNNN.<csv|jsonl|parquet>`` for crm_members, orders, app_events,
  wechat_users, douyin_leads, xhs_leads and wecom_contacts (layout.py has the columns),
- ``truth/records.parquet`` (one row per written source row: person, defect, linkable),
- ``truth/people.parquet`` and ``manifest.json``.

Sizes, shares and defect rates are named constants in rates.py. A truth row is `linkable`
when it is connected to the largest cluster of its person's readable rows through shared
identifier values (member id, real phone, own device, unionid); junk values (placeholder /
invalid / store phones, all-zero and shared family devices) never link, and unreadable rows
(malformed_row, bad_amount, bad_timestamp) are never linkable. Apart from rows cut off by
junk values, the unlinkable rows are explicit orphans (rates.ORPHAN_RATES): all together
about 1.5 % of the rows.

Late rows are orders / events of the window's last LATE_WINDOW_DAYS that are written at the
end of the next part file (an extra part after the last chunk); their timestamps stay inside
the window.
"""

from oneid_demo.demo import generate_demo
from oneid_demo.rates import GENERATOR_VERSION

__all__ = ["GENERATOR_VERSION", "generate_demo"]
