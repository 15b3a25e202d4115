"""The tables the audiences stage writes (columns: ``docs/tables.md``), named once.

The publish stage reads ``audience.changes`` by this name, not through the audiences job.
"""

MEMBERSHIP = "audience.membership"
CHANGES = "audience.changes"
STATS = "audience.stats"
STATS_SCHEMA = "audience_id string, version int, metric string, key string, value bigint"
