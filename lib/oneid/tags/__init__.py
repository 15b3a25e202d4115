"""Tag tables: RFM, value, preference and behaviour tags per OneID, one ``dt`` partition per day.

What later stages use: :func:`tag_tables` (table → tag columns) and :func:`day_tags` (one
day's tags, joined across the tables).
"""

from oneid.tags.tables import day_tags, tag_tables

__all__ = ["day_tags", "tag_tables"]
