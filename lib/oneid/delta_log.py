"""What a Delta table's log says, read from its folder without a Spark job.

``DeltaTable.history`` builds a DataFrame and runs a job for each call (0.1-0.3 s each on a
small machine, and a stage asks several times per run); the latest version and what one commit
recorded are a folder listing and one small JSON file away. A commit file stays in the log for
``delta.logRetentionDuration`` (30 days by default) after a checkpoint covers it; older commits
read as None here.
"""

from __future__ import annotations

import json

from pyspark.sql import SparkSession

from oneid.control_files import ControlFiles


def latest_version(spark: SparkSession | None, path: str) -> int:
    """The latest commit version of the Delta table at ``path`` (-1: there is no table)."""
    versions = [
        int(entry[:-5])
        for entry in ControlFiles(spark, path).names(f"{path.rstrip('/')}/_delta_log")
        if entry.endswith(".json") and entry[:-5].isdigit()
    ]
    return max(versions, default=-1)


def commit_info(spark: SparkSession | None, path: str, version: int) -> dict | None:
    """The ``commitInfo`` action of commit ``version`` (operation, operationMetrics,
    userMetadata, ...), or None when the commit file is gone or recorded none."""
    text = ControlFiles(spark, path).read(f"{path.rstrip('/')}/_delta_log/{version:020d}.json")
    for line in (text or "").splitlines():
        if line.strip():
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"]
    return None
