"""Configuration loads, validates and fails with messages that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneid.conf import load_config
from oneid.errors import ConfigError
from tests.support import CONF_DIR

pytestmark = pytest.mark.unit


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
