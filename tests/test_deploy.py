"""What a cluster needs: the package, submit script, spark-operator manifests, image and DAG."""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.util
import itertools
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import oneid
from oneid.conf import load_config
from oneid.jars import (
    DELTA_JARS,
    DELTA_VERSION,
    SPARK_KAFKA_JARS,
    SPARK_VERSION,
    parse_coordinate,
)
from oneid.java import SUPPORTED_JAVA
from oneid.stages import registered_stages
from tests.support import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
APP_DIR = "/opt/oneid"
DELTA_JAR_FILES = [parse_coordinate(c).filename for c in DELTA_JARS]
PACKAGE_JAR_FILES = DELTA_JAR_FILES + [parse_coordinate(c).filename for c in SPARK_KAFKA_JARS]
"""dist/jars: Delta Lake, and Spark's Kafka connector for `oneid realtime`."""
DAG_FILE = DEPLOY / "airflow" / "oneid_daily.py"


@pytest.fixture(scope="module")
def dist() -> Path:
    subprocess.run(["make", "-s", "package"], cwd=REPO, check=True, capture_output=True)
    return REPO / "dist"


def _pins() -> dict[str, str]:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    pins = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', text))
    pins["oneid"] = re.search(r'^version = "([^"]+)"', text, re.M).group(1)
    return pins


def _daily_steps() -> list[tuple[str, list[str]]]:
    data = yaml.safe_load((DEPLOY / "daily.yaml").read_text(encoding="utf-8"))
    return [(step["stage"], [str(a) for a in step.get("args", [])]) for step in data["steps"]]


def _manifests() -> dict[str, dict]:
    paths = [*sorted((K8S / "jobs").glob("*.yaml")), K8S / "scheduled-daily.yaml"]
    return {str(p.relative_to(K8S)): yaml.safe_load(p.read_text(encoding="utf-8")) for p in paths}


def _app_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    return spec["template"] if manifest["kind"] == "ScheduledSparkApplication" else spec


def _image_copies() -> dict[str, str]:
    """Dockerfile ``COPY src... dest``: image path -> repository path."""
    copies = {}
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            *sources, dest = line.split()[1:]
            for source in sources:  # a folder's contents go into dest; a file into dest/
                is_file = dest.endswith("/") and not source.endswith("/")
                target = dest + Path(source).name if is_file else dest
                copies[target.rstrip("/")] = source.rstrip("/")
    return copies


def _repo_file(image_path: str) -> Path | None:
    """The repository file an image path comes from (via the Dockerfile's COPY lines)."""
    for target, source in sorted(_image_copies().items(), key=lambda kv: -len(kv[0])):
        if image_path == target or image_path.startswith(target + "/"):
            return REPO / (source + image_path[len(target) :])
    return None


# --- make package ------------------------------------------------------------------------------


@pytest.mark.slow  # `make package` (a wheel and the jars)
def test_make_package_holds_the_package_jars_jobs_and_conf(dist):
    version = oneid.__version__
    wheel = dist / f"oneid-{version}-py3-none-any.whl"
    py_zip = dist / f"oneid-{version}-py.zip"
    package = {
        f"oneid/{p.relative_to(REPO / 'lib' / 'oneid').as_posix()}"
        for p in (REPO / "lib" / "oneid").rglob("*")
        if p.suffix in {".py", ".properties", ".java"} or p.name == "py.typed"
    }
    with zipfile.ZipFile(py_zip) as archive:
        assert set(archive.namelist()) == package
    with zipfile.ZipFile(wheel) as archive:
        assert package <= set(archive.namelist())
        metadata = archive.read(f"oneid-{version}.dist-info/METADATA").decode()
    assert f"Requires-Dist: pyspark=={SPARK_VERSION}" in metadata
    assert sorted(p.name for p in (dist / "jars").iterdir()) == sorted(PACKAGE_JAR_FILES)

    with tarfile.open(dist / f"oneid-{version}-deploy.tar.gz") as bundle:
        names = set(bundle.getnames())
    prefix = f"oneid-{version}/"
    expected = {
        *(f"conf/{p.name}" for p in (REPO / "conf").glob("*.yaml")),
        *(f"jobs/{stage.name}.py" for stage in registered_stages()),
        "deploy/submit.sh",
        "deploy/daily.py",
        "deploy/daily.yaml",
        f"dist/{wheel.name}",
        f"dist/{py_zip.name}",
        *(f"dist/jars/{name}" for name in PACKAGE_JAR_FILES),
    }
    assert {prefix + name for name in expected} <= names


@pytest.mark.slow  # `make package` (a wheel and the jars)
def test_cluster_package_holds_only_the_runtime_package(dist):
    """The demo data generator (demo/, package oneid_demo) is a development tool: not shipped."""
    version = oneid.__version__
    with zipfile.ZipFile(dist / f"oneid-{version}-py3-none-any.whl") as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    with zipfile.ZipFile(dist / f"oneid-{version}-py.zip") as archive:
        tops |= {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"oneid", f"oneid-{version}.dist-info"}
    assert (REPO / "demo" / "oneid_demo" / "__init__.py").is_file()


def test_oneid_jars_prints_the_resolved_delta_jars():
    result = subprocess.run(
        [sys.executable, "-m", "oneid", "jars", "-qq", "--env", "cluster"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = [Path(p) for p in result.stdout.strip().split(",")]
    assert [p.name for p in paths[: len(DELTA_JAR_FILES)]] == DELTA_JAR_FILES
    assert all(p.is_file() for p in paths)


@pytest.mark.slow  # `make package` (a wheel and the jars)
def test_submit_script_builds_the_spark_submit_command(dist):
    result = subprocess.run(
        [
            str(DEPLOY / "submit.sh"),
            "identity",
            "--master",
            "spark://127.0.0.1:7077",
            "--env",
            "cluster",
            "--executor-memory",
            "1g",
            "--dry-run",
            "--",
            "--run-id",
            "r1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    argv = shlex.split(result.stdout)
    assert Path(argv[0]).name == "spark-submit"
    jars = argv[argv.index("--jars") + 1].split(",")
    assert [Path(j).name for j in jars[: len(DELTA_JAR_FILES)]] == DELTA_JAR_FILES
    assert argv[argv.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert argv[argv.index("--py-files") + 1] == str(dist / f"oneid-{oneid.__version__}-py.zip")
    job = argv.index(str(REPO / "jobs" / "identity.py"))
    assert argv[job - 2 : job] == ["--executor-memory", "1g"]  # spark-submit options go before
    assert argv[job + 1 :] == [
        "--env",
        "cluster",
        "--conf-dir",
        str(REPO / "conf"),
        "--run-id",
        "r1",
    ]


@pytest.mark.parametrize("mode", [["--deploy-mode", "cluster"], ["--deploy-mode=cluster"]])
def test_submit_script_refuses_cluster_deploy_mode(mode):
    """The driver reads --conf-dir and ONEID_HMAC_KEY on the submitting host."""
    result = subprocess.run(
        [str(DEPLOY / "submit.sh"), "ingest", *mode, "--dry-run"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("submit.sh: error: --deploy-mode cluster is not supported")


def test_submit_script_names_the_jobs_it_knows():
    result = subprocess.run(
        [str(DEPLOY / "submit.sh"), "nope", "--dry-run"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("submit.sh: error: no job file jobs/nope.py (jobs: ")
    listed = result.stderr.split("(jobs: ", 1)[1].rstrip(")\n").split()
    assert listed == sorted(path.stem for path in (REPO / "jobs").glob("*.py"))
    assert {"ingest", "identity", "tags", "audiences", "publish"} <= set(listed)


# --- the daily chain ---------------------------------------------------------------------------


def test_daily_chain_runs_every_stage_in_data_flow_order_with_valid_arguments():
    steps = _daily_steps()
    stages = {stage.name: stage for stage in registered_stages()}
    names = [name for name, _ in steps]
    assert names == [
        "ingest",
        "standardize",
        "identity",
        "tags",
        "audiences",
        "publish",
        "serve-sync",
    ]
    assert set(stages) <= set(names)  # a new stage must join the chain
    assert [n for n in names if n in stages] == [n for n in stages if n in names]
    for name, templates in steps:
        parser = argparse.ArgumentParser(prog=name, exit_on_error=False)
        stages[name].add_arguments(parser)
        parser.parse_args([arg.format(as_of="2025-07-01") for arg in templates])


def test_daily_runner_defaults_to_yesterday_in_its_time_zone():
    runner = runpy.run_path(str(DEPLOY / "daily.py"))
    now = dt.datetime(2025, 7, 1, 17, 0, tzinfo=dt.timezone.utc)  # 01:00 on 2 July in Shanghai
    assert runner["yesterday"]("Asia/Shanghai", now) == "2025-07-01"
    assert runner["yesterday"]("UTC", now) == "2025-06-30"


def test_daily_runner_refuses_a_chain_with_unknown_stages(tmp_path):
    steps = tmp_path / "steps.yaml"
    steps.write_text(
        "steps:\n  - {stage: ingest, args: [--batch-id, '{as_of}']}\n  - {stage: nope}\n"
    )
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "daily.py"), "--as-of", "2025-07-01", "--steps", str(steps)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("daily: error: nope not stage(s) of this build of oneid")
    assert "nothing was run" in result.stderr


@pytest.mark.slow
def test_daily_runner_stops_the_chain_at_the_first_failing_stage(tmp_path):
    env = {
        "mode": "local",
        "pipeline": str(REPO / "conf" / "pipeline.yaml"),
        "warehouse": str(tmp_path / "warehouse"),  # empty: standardize has no bronze to read
        "spark": {"master": "local[1]", "shuffle_partitions": 1, "driver_memory": "1g"},
        "secrets": {"allow_demo_key": True},
    }
    (tmp_path / "env.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    steps = tmp_path / "steps.yaml"
    steps.write_text(
        "steps:\n  - {stage: standardize}\n  - {stage: identity, args: [--run-id, x]}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "daily.py"),
            "--as-of",
            "2025-07-01",
            "--steps",
            str(steps),
            "--",
            "--env",
            str(tmp_path / "env.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "daily: as-of 2025-07-01: standardize -> identity" in result.stderr
    assert "oneid: error: no bronze table found" in result.stderr
    assert result.stderr.rstrip().endswith(
        "daily: standardize failed (exit 2); later steps not run"
    )
    assert not (tmp_path / "warehouse" / "identity").exists()


# --- Kubernetes manifests ----------------------------------------------------------------------


def test_manifests_are_rendered_from_the_one_template():
    result = subprocess.run(
        [sys.executable, str(K8S / "render.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.stem for p in (K8S / "jobs").glob("*.yaml")) == sorted(
        name for name, _ in _daily_steps()
    )


def test_manifests_run_existing_job_files_with_the_pinned_jars_and_conf():
    cluster = load_config("cluster", REPO / "conf")
    for name, manifest in _manifests().items():
        spec = _app_spec(manifest)
        assert manifest["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
        main_file = spec["mainApplicationFile"]
        assert main_file.startswith(f"local://{APP_DIR}/"), name
        source = _repo_file(main_file.removeprefix("local://"))
        assert source is not None, f"{name}: {main_file} is not copied into the image"
        if name.startswith("jobs/"):
            stage = Path(name).stem
            assert source == REPO / "jobs" / f"{stage}.py"
        assert source.is_file(), f"{name}: {source} does not exist"
        assert spec["deps"]["jars"] == [f"local://{APP_DIR}/jars/{f}" for f in DELTA_JAR_FILES]
        assert _image_copies()[f"{APP_DIR}/jars"] == "dist/jars"
        args = spec["arguments"]
        assert args[args.index("--env") + 1] == cluster.env_name == "cluster"
        conf_dir = args[args.index("--conf-dir") + 1]
        mounts = {m["mountPath"]: m["name"] for m in spec["driver"]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[mounts[conf_dir]]["configMap"]["name"] == "oneid-conf", name


def test_conf_configmap_holds_the_cluster_conf_files(tmp_path):
    result = subprocess.run(
        [sys.executable, str(K8S / "render.py"), "--configmap"],
        capture_output=True,
        text=True,
        check=True,
    )
    configmap = yaml.safe_load(result.stdout)
    assert configmap["metadata"]["name"] == "oneid-conf"
    for name, text in configmap["data"].items():
        assert text == (REPO / "conf" / name).read_text(encoding="utf-8")
    # mounted over the image's conf folder: the map's files alone make the cluster conf
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    cfg = load_config("cluster", tmp_path)
    assert sorted(Path(f).name for f in cfg.files) == sorted(configmap["data"])
    assert {"tags.yaml", "realtime.yaml", "audiences.yaml"} <= set(configmap["data"])


def test_the_configmap_carries_the_currency_rate_table(tmp_path, monkeypatch):
    """A rate table named from the conf folder goes in the map; the mounted map finds it."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    tags = conf / "tags.yaml"
    text = tags.read_text(encoding="utf-8")
    assert "currency: {reporting: CNY}" in text
    tags.write_text(
        text.replace("{reporting: CNY}", "{reporting: CNY, rates: rates.csv}"), encoding="utf-8"
    )
    render = _render_module()
    with pytest.raises(SystemExit, match=r"named but missing: \[.*rates\.csv"):
        render.configmap(conf)
    (conf / "rates.csv").write_text("date,currency,rate\n2025-01-01,USD,7.2\n", encoding="utf-8")
    data = render.configmap(conf)["data"]
    assert data["rates.csv"].startswith("date,currency,rate")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for name, body in data.items():
        (mounted / name).write_text(body, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a job's working directory is not the conf folder
    cfg = load_config("cluster", mounted)
    assert cfg.pipeline.tags.currency.rates == str(mounted / "rates.csv")
    assert str(mounted / "rates.csv") in cfg.files


def test_hmac_key_is_a_secret_reference_for_the_driver_only():
    key_env = load_config("cluster", REPO / "conf").env.secrets.hmac_key_env
    for name, manifest in _manifests().items():
        spec = _app_spec(manifest)
        env = {e["name"]: e for e in spec["driver"]["env"]}
        assert env[key_env] == {
            "name": key_env,
            "valueFrom": {"secretKeyRef": {"name": "oneid-hmac", "key": "hmac-key"}},
        }, name
        assert "env" not in spec["executor"], name


def test_only_the_store_loaders_get_the_redis_url_secret():
    redis_env = load_config("cluster", REPO / "conf").env.serve.redis_url.removeprefix("env:")
    loaders = {"jobs/serve-sync.yaml", "scheduled-daily.yaml"}
    for name, manifest in _manifests().items():
        env = {e["name"]: e for e in _app_spec(manifest)["driver"]["env"]}
        if name in loaders:
            assert env[redis_env]["valueFrom"] == {
                "secretKeyRef": {"name": "oneid-redis", "key": "url"}
            }, name
        else:
            assert redis_env not in env, name


def test_the_exports_writers_mount_one_shared_folder_where_publish_writes():
    """publish writes part files from the executors and checks them from the driver: both mount
    the exports claim at the folder the manifest's --set gives publish.exports_dir."""
    writers = {"jobs/publish.yaml", "scheduled-daily.yaml"}
    for name, manifest in _manifests().items():
        spec = _app_spec(manifest)
        args = spec["arguments"]
        settings = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        if name not in writers:
            assert (settings, claims) == ([], {}), name
            continue
        cfg = load_config("cluster", REPO / "conf", settings)
        folder = cfg.pipeline.publish.exports_dir
        assert folder and folder.startswith("/"), name
        for role in ("driver", "executor"):
            mounts = {m["mountPath"]: m["name"] for m in spec[role]["volumeMounts"]}
            assert claims[mounts[folder]] == "oneid-exports", (name, role)
            # the image runs as user 185 (spark): the volume must be writable by its group
            assert spec[role]["podSecurityContext"] == {"fsGroup": 185}, (name, role)


def test_every_pod_gets_the_hadoop_client_conf():
    """conf/cluster.yaml's hdfs:/// paths take the name node from fs.defaultFS: Spark and
    delta-rs read it from HADOOP_CONF_DIR, which the operator sets from hadoopConfigMap."""
    assert load_config("cluster", REPO / "conf").env.warehouse.startswith("hdfs:///")
    for name, manifest in _manifests().items():
        assert _app_spec(manifest)["hadoopConfigMap"] == "oneid-hadoop", name


def test_no_key_material_in_deploy_files():
    from oneid.standardize.hashing import DEMO_KEY

    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        docs = list(yaml.safe_load_all(text)) if path.suffix == ".yaml" else []
        assert not any(isinstance(d, dict) and d.get("kind") == "Secret" for d in docs), path
        assert DEMO_KEY.decode() not in text, path
        assert "BEGIN" not in text or "PRIVATE KEY" not in text, path
        assert not re.search(r"ONEID_HMAC_KEY\s*[=:]\s*['\"]?\w{8,}", text), path
        assert not re.search(r"\b[0-9a-fA-F]{32,}\b|[A-Za-z0-9+/]{40,}={0,2}", text), path


def test_versions_match_the_project_pins():
    pins = _pins()
    assert pins["pyspark"] == SPARK_VERSION
    assert pins["delta-spark"] == DELTA_VERSION
    assert pins["oneid"] == oneid.__version__
    assert all(DELTA_VERSION in f for f in DELTA_JAR_FILES)
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)$", dockerfile, re.M).group(1)
    assert base == f"apache/spark:{SPARK_VERSION}-scala2.13-java17-python3-ubuntu"
    assert 17 in SUPPORTED_JAVA
    assert re.search(r"^ARG ONEID_VERSION=(\S+)$", dockerfile, re.M).group(1) == pins["oneid"]
    for name, manifest in _manifests().items():
        spec = _app_spec(manifest)
        assert spec["sparkVersion"] == SPARK_VERSION, name
        assert spec["image"] == f"ghcr.io/oneid/oneid:{pins['oneid']}", name


def test_image_copies_what_the_manifests_use():
    copies = _image_copies()
    assert copies == {
        "/tmp/oneid-${ONEID_VERSION}-py3-none-any.whl": (
            "dist/oneid-${ONEID_VERSION}-py3-none-any.whl"
        ),
        f"{APP_DIR}/jars": "dist/jars",
        f"{APP_DIR}/jobs": "jobs",
        f"{APP_DIR}/conf": "conf",
        f"{APP_DIR}/deploy/daily.py": "deploy/daily.py",
        f"{APP_DIR}/deploy/daily.yaml": "deploy/daily.yaml",
    }


# --- Airflow -----------------------------------------------------------------------------------


def test_airflow_dag_chains_the_daily_steps_in_order():
    tree = ast.parse(DAG_FILE.read_text(encoding="utf-8"))
    assigned = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    chain = ast.literal_eval(assigned["CHAIN"])
    assert list(chain) == [name for name, _ in _daily_steps()]
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert any(getattr(call.func, "id", None) == "chain" for call in calls)
    (operator,) = [c for c in calls if getattr(c.func, "id", None) == "SparkKubernetesOperator"]
    keywords = {k.arg: k.value for k in operator.keywords}
    template = ast.unparse(keywords["application_file"])
    assert template == "f'jobs/{stage}.yaml'"
    for stage, templates in _daily_steps():
        manifest = yaml.safe_load((K8S / "jobs" / f"{stage}.yaml").read_text(encoding="utf-8"))
        assert manifest["spec"]["mainApplicationFile"] == f"local://{APP_DIR}/jobs/{stage}.py"
        dated = [arg.format(as_of=_render_module().AIRFLOW_DATE) for arg in templates]
        arguments = manifest["spec"]["arguments"]
        assert arguments[len(arguments) - len(dated) :] == dated
        job = REPO / "jobs" / f"{stage}.py"
        assert job.is_file(), stage


def _render_module():
    spec = importlib.util.spec_from_file_location("oneid_render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("run_at", "as_of"),
    [
        ("2025-07-02T02:30:00+08:00", "2025-07-01"),  # the nightly run: yesterday there
        ("2025-07-02T23:50:00+08:00", "2025-07-01"),  # 15:50 UTC: still 07-02 in Shanghai
        ("2025-07-02T00:10:00+08:00", "2025-07-01"),  # 07-01 16:10 UTC
    ],
)
def test_airflow_runs_take_the_day_before_the_run_in_the_business_time_zone(run_at, as_of):
    """What Airflow renders into a job's --as-of (jinja2 with pendulum datetimes, as Airflow
    does): the day before the run's time in Asia/Shanghai, as deploy/daily.py takes; the run's
    ``data_interval_end`` is its time in Airflow 2 and 3 (``ds`` would be 2025-06-30)."""
    jinja2 = pytest.importorskip("jinja2")
    pendulum = pytest.importorskip("pendulum")
    render = _render_module()
    end = pendulum.parse(run_at).in_timezone("UTC")  # Airflow's context datetimes are UTC
    text = jinja2.Template(render.AIRFLOW_DATE).render(data_interval_end=end)
    assert text == as_of
    now = dt.datetime.fromisoformat(run_at)
    assert text == runpy.run_path(str(DEPLOY / "daily.py"))["yesterday"](render.TIME_ZONE, now)


def test_airflow_dag_imports_when_airflow_is_installed():
    pytest.importorskip("airflow")
    pytest.importorskip("airflow.providers.cncf.kubernetes")
    spec = importlib.util.spec_from_file_location("oneid_daily", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    steps = [name for name, _ in _daily_steps()]
    assert sorted(dag.task_ids) == sorted(steps)
    assert dag.get_task(steps[0]).upstream_task_ids == set()
    for before, after in itertools.pairwise(steps):
        assert dag.get_task(after).upstream_task_ids == {before}
