"""The console script and job files: help, clear one-line errors, README examples that run."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys

import pytest
import yaml

from oneid.cli import main
from oneid.conf import load_config
from oneid.conf.pipeline import SourceConf
from oneid.ingest.job import ingest
from oneid.stages import registered_stages
from oneid.tables import read_table
from tests.support import CONF_DIR, REPO, config_for


def test_help_lists_every_job(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "demo", "ingest", "standardize"):
        assert command in out


def test_conf_error_is_one_line_and_exit_code_2(capsys):
    code = main(
        [
            "ingest",
            "--batch-id",
            "b1",
            "--conf-dir",
            str(REPO / "conf"),
            "--set",
            "spark.shuffle_partitions=abc",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("oneid: error: invalid configuration")
    assert "--set spark.shuffle_partitions: spark.shuffle_partitions:" in err
    assert "Traceback" not in err


def test_audience_rules_are_checked_by_the_commands_that_use_them(tmp_path, capsys):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "audiences.yaml").write_text(
        "audiences:\n  a: {rule: {tag: scor, op: gt, value: 1}}\n", encoding="utf-8"
    )
    (conf / "pipeline.yaml").write_text(
        "tags:\n  definitions:\n"
        "    - {name: score, group: g, description: d, type: int, expr: '1'}\n"
        f"demo: {{data_dir: {tmp_path / 'demo_data'}}}\n"
        "audiences: {rules: audiences.yaml}\n",
        encoding="utf-8",
    )
    (conf / "local.yaml").write_text("mode: local\nwarehouse: w\n", encoding="utf-8")
    common = ["--conf-dir", str(conf)]

    assert main(["tag-dictionary", *common]) == 0  # does not use audiences: no check
    capsys.readouterr()
    for argv in (["audiences", "--as-of", "2025-06-30", "--explain", "a"], ["demo"]):
        assert main([*argv, *common]) == 2
        err = capsys.readouterr().err
        assert err.startswith("oneid: error: invalid audience rules")
        assert "audiences.a.rule: unknown tag 'scor' (did you mean 'score'?)" in err
    assert not (tmp_path / "demo_data").exists()  # the demo stopped before generating data


def test_job_file_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "ingest.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "--batch-id" in result.stdout


def test_demo_args_are_the_parsed_arguments_of_each_stage():
    cfg = load_config("local", CONF_DIR, ["demo.as_of=[2025-06-29, 2025-06-30]"])
    dates = {}
    for stage in registered_stages():
        parser = argparse.ArgumentParser()
        stage.add_arguments(parser)
        options = {action.dest for action in parser._actions} - {"help"}
        for args in stage.demo_args(cfg):
            assert set(vars(args)) == options, stage.name  # a new option needs its demo value
            dates |= {k: v for k, v in vars(args).items() if k in {"as_of", "date_from", "date_to"}}
    assert {k: type(v) for k, v in dates.items() if v is not None} == {
        "as_of": dt.date,
        "date_from": dt.date,
        "date_to": dt.date,
    }


def test_generate_command_writes_demo_data(tmp_path, capsys):
    code = main(
        [
            "generate",
            "--conf-dir",
            str(REPO / "conf"),
            "--people",
            "50",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    assert code == 0
    assert (tmp_path / "d" / "manifest.json").is_file()
    assert '"crm_members"' in capsys.readouterr().out


def test_generate_without_the_generator_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "oneid_demo", None)  # as on a cluster: the wheel lacks it
    for command in ("generate", "demo"):
        code = main([command, "--conf-dir", str(REPO / "conf"), "--set", f"warehouse={tmp_path}"])
        assert code == 2
        assert capsys.readouterr().err == (
            "oneid: error: the demo data generator (oneid_demo) is not installed: run "
            "`make install`, or `pip install -e demo/` in a checkout of the repository\n"
        )


def test_readme_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


def test_readme_source_example_is_valid_and_ingests(spark, tmp_path):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own source", 1)[1]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    [(name, source)] = example["sources"].items()
    SourceConf.model_validate(source)
    folder = tmp_path / "pos"
    folder.mkdir()
    header = ",".join(source["columns"])
    (folder / "day1.csv").write_bytes(
        (header + "\nR1,M00000001,13812345678,99.50,2025-07-01 12:00:00,王五\n").encode("gbk")
    )
    source["path"] = str(folder)
    cfg = config_for(tmp_path, {"sources": {name: source}})
    [report] = ingest(spark, cfg, "2025-07-01")
    assert (report.accepted, report.quarantined) == (1, 0)
    row = read_table(spark, cfg, f"bronze.{name}").first()
    assert (row.receipt_no, row.paid_amount, row.cashier) == ("R1", "99.50", "王五")


def test_py4j_retry_notices_on_the_root_logger_are_dropped_and_its_errors_kept(monkeypatch, caplog):
    """Through the CLI's logging set-up and the root logger, as py4j's ``logging.info`` goes."""
    import logging

    from oneid import cli

    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    monkeypatch.setattr(logging.getLogger("py4j"), "level", logging.getLogger("py4j").level)
    cli._configure_logging(0)
    cli._configure_logging(0)  # set up again (a second command in one process): one filter
    assert [type(f) for f in root.filters] == [cli.Py4jRootNotices]

    gateway = f"/venv/lib{cli.PY4J_SOURCE}java_gateway.py"
    records = [
        (logging.INFO, gateway),  # a retry that then succeeded: dropped
        (logging.ERROR, gateway),  # a retry that failed: kept
        (logging.INFO, "/repo/lib/oneid/tables.py"),  # anyone else's INFO: kept
    ]
    with caplog.at_level(logging.INFO):
        for level, path in records:
            message = "Exception while sending command."
            root.handle(logging.LogRecord("root", level, path, 1056, message, (), None))
    assert [(r.levelno, r.pathname) for r in caplog.records] == records[1:]
