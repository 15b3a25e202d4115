"""Deterministic demo data: a brand's messy customer sources plus the ground truth.

Pure Python (numpy + pyarrow, no Spark). `generate_demo(out_dir)` writes

- ``sources/<source>/part-NNNNN.<csv|jsonl|parquet>`` for crm_members, orders, app_events,
  wechat_users, douyin_leads, xhs_leads and wecom_contacts (layout.py has the columns),
- ``truth/records.parquet`` (one row per written source row: person, defect, linkable),
- ``truth/people.parquet`` and ``manifest.json``.

Sizes, shares and defect rates are named constants in rates.py. A truth row is `linkable`
when it shares an identifier (member id, real phone, device, unionid) with another readable
row of the same person; junk values (placeholder / invalid / store phones, all-zero devices)
and malformed rows never link. Late rows are orders / events of the window's last
LATE_WINDOW_DAYS that are written at the end of the next part file (an extra part after the
last chunk); their timestamps stay inside the window.
"""

from oneid.generate.demo import generate_demo
from oneid.generate.rates import GENERATOR_VERSION

__all__ = ["GENERATOR_VERSION", "generate_demo"]
