"""The session factory gives Delta Lake, GraphFrames (when its jars resolve) and sane settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import Row

from oneid.session import graphframes_available, remove_checkpoint_dir, warehouse_root

pytestmark = pytest.mark.unit


def test_settings_for_local_tests(spark, cfg):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    checkpoint = spark.sparkContext.getCheckpointDir()
    assert checkpoint is not None and "/_checkpoints/tests" in checkpoint
    assert checkpoint.startswith("file:" + warehouse_root(cfg))


def test_delta_write_read_and_time_travel(spark, cfg):
    path = f"{warehouse_root(cfg)}/scratch/delta_roundtrip"
    first = spark.createDataFrame(
        [Row(oneid=1, at=dt.datetime(2025, 1, 1, 8)), Row(oneid=2, at=dt.datetime(2025, 1, 2))]
    )
    first.write.format("delta").mode("overwrite").save(path)
    spark.createDataFrame([Row(oneid=3, at=dt.datetime(2025, 1, 3))]).write.format("delta").mode(
        "append"
    ).save(path)
    expected = spark.createDataFrame(
        [
            Row(oneid=1, at=dt.datetime(2025, 1, 1, 8)),
            Row(oneid=2, at=dt.datetime(2025, 1, 2)),
            Row(oneid=3, at=dt.datetime(2025, 1, 3)),
        ]
    )
    assert_df_equality(spark.read.format("delta").load(path), expected, ignore_row_order=True)
    version_zero = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert_df_equality(version_zero, first, ignore_row_order=True)
    assert (Path(path) / "_delta_log" / "00000000000000000001.json").is_file()


def test_graphframes_connected_components(spark):
    if not graphframes_available(spark):
        pytest.skip("GraphFrames jars not resolvable here (jars.graphframes); native engine used")
    from graphframes import GraphFrame

    vertices = spark.createDataFrame([(i,) for i in range(1, 7)], ["id"])
    edges = spark.createDataFrame([(1, 2), (2, 3), (4, 5)], ["src", "dst"])
    components = GraphFrame(vertices, edges).connectedComponents(
        algorithm="two_phase", checkpointInterval=2, broadcastThreshold=-1
    )
    expected = spark.createDataFrame(
        [(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 6)], ["id", "component"]
    )
    assert_df_equality(components, expected, ignore_row_order=True, ignore_nullable=True)


def test_remove_checkpoint_dir(spark):
    checkpoint = spark.sparkContext.getCheckpointDir()
    df = spark.range(10).checkpoint(eager=True)
    assert df.count() == 10
    local = Path(checkpoint.removeprefix("file:"))
    assert local.is_dir()
    remove_checkpoint_dir(spark)
    assert not local.exists()
