"""Configuration loads, validates and fails with messages that name file, key and expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oneid.audiences.job import compiled_rules
from oneid.conf import load_config
from oneid.errors import ConfigError
from tests.support import CONF_DIR


def _write(folder: Path, env: str, pipeline: str = "") -> Path:
    (folder / "pipeline.yaml").write_text(pipeline, encoding="utf-8")
    path = folder / "dev.yaml"
    path.write_text(env, encoding="utf-8")
    return path


def test_repo_environments_load():
    local = load_config("local", CONF_DIR)
    cluster = load_config("cluster", CONF_DIR)
    assert (local.env.mode, cluster.env.mode) == ("local", "cluster")
    assert local.env.secrets.allow_demo_key and not cluster.env.secrets.allow_demo_key
    assert local.pipeline == cluster.pipeline
    assert local.files[1].endswith("conf/pipeline.yaml")


def test_unknown_key_names_file_and_key(tmp_path):
    env = _write(tmp_path, "mode: local\nwarehouse: w\nspark:\n  shufle_partitions: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(env)
    assert f"{env}: spark.shufle_partitions: unknown key" in str(err.value)


def test_scratch_keys_are_validated(tmp_path):
    base = "mode: local\nwarehouse: w\n"
    assert load_config(_write(tmp_path, base)).env.sweep_after_hours == 48.0
    cases = {
        "scratch_root: hdfs:///tmp/x\n": "scratch_root: Value error, must be a local folder",
        "sweep_after_hours: 0\n": "sweep_after_hours: Input should be greater than 0",
    }
    for line, expected in cases.items():
        env = _write(tmp_path, base + line)
        with pytest.raises(ConfigError) as err:
            load_config(env)
        assert f"{env}: {expected}" in str(err.value)


def test_cluster_paths_are_uris_every_node_reaches(tmp_path):
    """A plain path in cluster mode: executors would write data files to their own disks while
    the driver commits the log to its own, and ingest's count check reads the driver's."""
    for line in ("warehouse: /data/oneid\n", "warehouse: hdfs:///w\ncheckpoint_root: ckpt\n"):
        env = _write(tmp_path, "mode: cluster\n" + line)
        with pytest.raises(ConfigError) as err:
            load_config(env)
        assert "is a path on the driver's disk; in cluster mode the executors" in str(err.value)
    for warehouse in ("hdfs:///oneid/w", "s3a://bucket/w", "file:///mnt/shared/w"):
        env = _write(tmp_path, f"mode: cluster\nwarehouse: {warehouse}\n")
        assert load_config(env).env.warehouse == warehouse
    assert load_config(_write(tmp_path, "mode: local\nwarehouse: w\n")).env.warehouse == "w"


def test_wrong_type_names_expectation(tmp_path):
    env = _write(tmp_path, "mode: local\nwarehouse: w\nspark:\n  shuffle_partitions: abc\n")
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    assert f"{env}: spark.shuffle_partitions:" in message
    assert "valid integer" in message and "'abc'" in message


def test_pipeline_errors_name_the_pipeline_file(tmp_path):
    env = _write(
        tmp_path, "mode: local\nwarehouse: w\n", "identity:\n  components:\n    engine: fast\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    assert f"{tmp_path / 'pipeline.yaml'}: identity.components.engine:" in message
    assert "'auto', 'graphframes' or 'native'" in message


def test_bad_mode_and_missing_required_key(tmp_path):
    env = _write(tmp_path, "mode: laptop\n")
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    assert "mode: Input should be 'local' or 'cluster'" in message
    assert "warehouse: Field required" in message


def test_yaml_syntax_error_names_line(tmp_path):
    env = _write(tmp_path, "mode: local\nwarehouse: [unclosed\n")
    with pytest.raises(ConfigError, match=r"dev\.yaml:\d+:\d+: not valid YAML"):
        load_config(env)


def test_conf_files_are_read_by_libyaml_and_read_as_the_python_loader_reads_them():
    """libyaml reads the shipped conf files (the suite loads them hundreds of times), into the
    very mappings the pure-Python safe loader gives."""
    import yaml

    from oneid.conf.yaml_file import SAFE_LOADER, read_yaml

    assert yaml.__with_libyaml__ and SAFE_LOADER is yaml.CSafeLoader
    for path in sorted(CONF_DIR.glob("*.yaml")):
        assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path


def test_overrides_apply_to_the_right_file_and_are_typed():
    cfg = load_config(
        "local",
        CONF_DIR,
        ["spark.shuffle_partitions=3", "identity.components.engine=native", "demo.people=10"],
    )
    assert cfg.env.spark.shuffle_partitions == 3
    assert cfg.pipeline.identity.components.engine == "native"
    assert cfg.pipeline.demo.people == 10


def test_bad_override_is_reported_as_coming_from_set():
    with pytest.raises(ConfigError) as err:
        load_config("local", CONF_DIR, ["spark.shuffle_partitions=-1"])
    assert "--set spark.shuffle_partitions: spark.shuffle_partitions:" in str(err.value)
    with pytest.raises(ConfigError, match="unknown section 'sparks'"):
        load_config("local", CONF_DIR, ["sparks.master=local"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("local", CONF_DIR, ["spark.master"])


def test_missing_environment_file():
    with pytest.raises(ConfigError, match="environment file not found"):
        load_config("staging", CONF_DIR)


def test_config_is_frozen():
    cfg = load_config("local", CONF_DIR)
    with pytest.raises(Exception, match="frozen"):
        cfg.env.spark.master = "yarn"  # type: ignore[misc]


def test_included_sections_merge_and_errors_name_the_included_file(tmp_path):
    (tmp_path / "tags.yaml").write_text(
        "tags:\n  definitions:\n    - {name: x, group: g, description: d, type: int}\n",
        encoding="utf-8",
    )
    env = _write(tmp_path, "mode: local\nwarehouse: w\n", "include: [tags.yaml]\n")
    with pytest.raises(ConfigError) as err:
        load_config(env)
    assert f"{tmp_path / 'tags.yaml'}: tags.definitions.0: Value error" in str(err.value)
    assert "exactly one of aggregate, expr, builder" in str(err.value)

    _write(tmp_path, "mode: local\nwarehouse: w\n", "include: [tags.yaml]\ntags: {}\n")
    with pytest.raises(ConfigError, match=r"tags\.yaml: tags: section already defined in"):
        load_config(env)


def test_repo_conf_files_are_all_read():
    cfg = load_config("local", CONF_DIR)
    assert [Path(f).name for f in cfg.files] == [
        "local.yaml",
        "pipeline.yaml",
        "tags.yaml",
        "realtime.yaml",
        "audiences.yaml",
    ]
    assert "win_back" in cfg.audiences.audiences
    assert cfg.pipeline.fact_columns("events")["event"] == "string"


def test_the_rate_table_is_read_from_the_pipeline_files_folder(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    env = _write(conf, "mode: local\nwarehouse: w\n", "tags: {currency: {rates: fx/rates.csv}}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env)
    assert cfg.pipeline.tags.currency.rates == str(conf / "fx" / "rates.csv")
    assert cfg.files[-1] == str(conf / "fx" / "rates.csv")  # one of the conf's files
    elsewhere = tmp_path / "rates.csv"
    cfg = load_config(env, overrides=[f"tags.currency.rates={elsewhere}"])
    assert cfg.pipeline.tags.currency.rates == str(elsewhere)  # an absolute path is kept


def test_names_across_files_are_checked(tmp_path):
    (tmp_path / "audiences.yaml").write_text(
        "audiences:\n  a: {rule: {tag: score, op: gt, value: 1}}\n", encoding="utf-8"
    )
    tags = (
        "tags:\n  definitions:\n"
        "    - {name: score, group: g, description: d, type: int, expr: '1'}\n"
    )
    publish = (
        "publish:\n  destinations:\n    crm: {kind: marketing_automation, audiences: [a, b], "
        "tags: [scor]}\n"
    )
    env = _write(
        tmp_path,
        "mode: local\nwarehouse: w\n",
        tags + "audiences: {rules: audiences.yaml, stats_by: [segment]}\n" + publish,
    )
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    pipeline = tmp_path / "pipeline.yaml"
    assert f"{pipeline}: audiences.stats_by: unknown tag 'segment'" in message
    assert f"{pipeline}: publish.destinations.crm.audiences: unknown audience 'b'" in message
    assert f"{pipeline}: publish.destinations.crm.tags: unknown tag 'scor'" in message

    (tmp_path / "audiences.yaml").write_text(
        "audiences:\n  a: {rule: {tag: score, op: contains, value: x}}\n", encoding="utf-8"
    )
    _write(tmp_path, "mode: local\nwarehouse: w\n", tags + "audiences: {rules: audiences.yaml}\n")
    cfg = load_config(env)  # rules are checked against the tags where the audiences stage runs
    with pytest.raises(ConfigError, match=r"audiences\.a\.rule: operator 'contains'"):
        compiled_rules(cfg)


def test_loading_conf_imports_no_stage():
    code = (
        "import sys; from oneid.conf import load_config; load_config('local', sys.argv[1]); "
        "print(*sorted({m.split('.')[1] for m in sys.modules if m.startswith('oneid.')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(CONF_DIR)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["conf", "errors", "jars"]


def test_source_range_and_zone_keys_are_checked(tmp_path):
    source = (
        "sources:\n  s:\n    format: csv\n    path: p\n    record_key: [k]\n"
        "    time_zone_aliases: {CST: Asia/Shanghai, IST: India}\n"
        "    columns:\n      k: {field: k, min: 1}\n"
        "      t: {field: t, type: timestamp, earliest: 2030-01-01, latest: 2020-01-01}\n"
        "      a: {field: a, type: decimal, max: -1}\n"
    )
    env = _write(tmp_path, "mode: local\nwarehouse: w\n", source)
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    assert "sources.s.time_zone_aliases: Value error, IST: 'India' is not an IANA zone" in message
    assert "sources.s.columns.k: Value error, ['min'] do not apply to a string column" in message
    assert "columns.t: Value error, lower bound 2030-01-01 is above upper bound 2020" in message
    assert "columns.a: Value error, lower bound 0 is above upper bound -1" in message


def test_the_demo_sources_read_the_demos_data_folder():
    """`oneid demo --set demo.data_dir=X` generates into X and ingests from X."""
    cfg = load_config("local", CONF_DIR, ["demo.data_dir=/data/demo-300"])
    own = cfg.pipeline.sources["orders"].model_copy(update={"path": "./demo_data_2024/orders"})
    pipeline = cfg.pipeline.model_copy(update={"sources": {**cfg.pipeline.sources, "own": own}})
    moved = pipeline.with_demo_data(cfg.pipeline.demo.data_dir).sources
    assert moved["orders"].path == "/data/demo-300/sources/orders"
    assert moved["crm_members"].path == "/data/demo-300/sources/crm_members"
    assert moved["own"].path == "./demo_data_2024/orders"  # not the demo's folder
    assert pipeline.with_demo_data("./demo_data").sources == pipeline.sources
