"""Render the spark-operator manifests from one template (versions come from the project's pins).

    python deploy/k8s/render.py              # rewrite the committed manifests
    python deploy/k8s/render.py --check      # exit 1 if they differ from the template (tests)
    python deploy/k8s/render.py --as-of 2025-07-01 ingest | kubectl apply -f -
    python deploy/k8s/render.py --configmap | kubectl apply -f -     # conf/ -> ConfigMap

``jobs/<stage>.yaml``: one SparkApplication per step of ``deploy/daily.yaml``, with the day
before the Airflow run's time as the as-of date (:data:`AIRFLOW_DATE`; the DAG's
SparkKubernetesOperator renders it).
``scheduled-daily.yaml``: the ScheduledSparkApplication running the whole chain
(``deploy/daily.py``) every night.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from oneid import __version__
from oneid.conf import load_config
from oneid.jars import DELTA_JARS, SPARK_VERSION, parse_coordinate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMESPACE = "oneid"
IMAGE = f"ghcr.io/oneid/oneid:{__version__}"  # built by deploy/Dockerfile
APP_DIR = "/opt/oneid"  # where the image holds jobs/, conf/, jars/, deploy/
CONF_MAP = "oneid-conf"  # the cluster conf's files (--configmap), mounted over APP_DIR/conf
HMAC_SECRET = {"name": "oneid-hmac", "key": "hmac-key"}  # created by the operator of the platform
REDIS_SECRET = {"name": "oneid-redis", "key": "url"}  # redis://[:password@]host:6379/0
REDIS_ENV = "ONEID_REDIS_URL"  # serve.redis_url of conf/cluster.yaml
STORE_WRITERS = ("serve-sync",)  # the steps that load the online store (and deploy/daily.py)
HADOOP_CONF_MAP = "oneid-hadoop"  # the platform's Hadoop client conf (core-site.xml, hdfs-site.xml)
SPARK_UID = 185  # the user of the apache/spark image; the exports volume is written as its group
EXPORTS_CLAIM = "oneid-exports"  # a ReadWriteMany PersistentVolumeClaim, created with the secrets
EXPORTS_DIR = "/data/oneid/exports"  # where it is mounted: publish.exports_dir
EXPORT_WRITERS = ("publish",)  # the steps that write exports (and deploy/daily.py)
EXPORTS_ARGS = ["--set", f"publish.exports_dir={EXPORTS_DIR}"]
SERVICE_ACCOUNT = "oneid-spark"
ENV_ARGS = ["--env", "cluster", "--conf-dir", f"{APP_DIR}/conf"]
TIME_ZONE = "Asia/Shanghai"
AIRFLOW_DATE = (
    f"{{{{ data_interval_end.in_timezone('{TIME_ZONE}').subtract(days=1).strftime('%Y-%m-%d') }}}}"
)
"""The day before the run's scheduled time in the business time zone, what ``deploy/daily.py``
takes. Not ``{{ ds }}``: Airflow 2 gives the start of the data interval, in UTC (a run at
02:30 Asia/Shanghai on D has ``ds`` D-2); ``data_interval_end`` is the run's time in Airflow
2 and 3 alike."""
SCHEDULE = "30 18 * * *"  # 02:30 Asia/Shanghai, written in UTC (the operator's cron has no zone)


def steps() -> list[tuple[str, list[str]]]:
    """The daily chain: ``(stage, argument templates)`` from ``deploy/daily.yaml``."""
    data = yaml.safe_load((ROOT / "deploy" / "daily.yaml").read_text(encoding="utf-8"))
    return [(step["stage"], [str(arg) for arg in step.get("args", [])]) for step in data["steps"]]


def application_spec(
    main_file: str, arguments: list[str], store: bool = False, exports: bool = False
) -> dict:
    """The SparkApplication spec every OneID job shares: image, jars, conf, secret, resources;
    ``store``: the driver also gets the online store's URL (it loads the store); ``exports``:
    the driver and the executors mount the exports volume at one path (publish writes files
    there from the executors, and the driver checks every row it sent is in them); the
    arguments then name it (:func:`env_args`)."""
    jars = [f"local://{APP_DIR}/jars/{parse_coordinate(c).filename}" for c in DELTA_JARS]
    env = [{"name": "ONEID_HMAC_KEY", "valueFrom": {"secretKeyRef": dict(HMAC_SECRET)}}]
    if store:
        env.append({"name": REDIS_ENV, "valueFrom": {"secretKeyRef": dict(REDIS_SECRET)}})
    volumes = [{"name": "conf", "configMap": {"name": CONF_MAP}}]
    driver = {
        "cores": 1,
        "memory": "2g",
        "serviceAccount": SERVICE_ACCOUNT,
        "labels": {"app.kubernetes.io/name": "oneid"},
        # only the driver reads the key; executors get it inside the hashing UDF's closure
        "env": env,
        "volumeMounts": [{"name": "conf", "mountPath": f"{APP_DIR}/conf", "readOnly": True}],
    }
    executor = {
        "cores": 2,
        "instances": 2,
        "memory": "4g",
        "labels": {"app.kubernetes.io/name": "oneid"},
    }
    if exports:
        volumes.append({"name": "exports", "persistentVolumeClaim": {"claimName": EXPORTS_CLAIM}})
        for pod in (driver, executor):  # new objects for each (shared ones dump as YAML anchors)
            pod["podSecurityContext"] = {"fsGroup": SPARK_UID}  # a new volume is root's otherwise
            pod.setdefault("volumeMounts", []).append({"name": "exports", "mountPath": EXPORTS_DIR})
    return {
        "type": "Python",
        "mode": "cluster",
        "sparkVersion": SPARK_VERSION,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "mainApplicationFile": f"local://{APP_DIR}/{main_file}",
        "arguments": arguments,
        "deps": {"jars": jars},
        # HADOOP_CONF_DIR in every pod: Spark and delta-rs resolve hdfs:/// with its defaultFS
        "hadoopConfigMap": HADOOP_CONF_MAP,
        "restartPolicy": {"type": "Never"},
        "volumes": volumes,
        "driver": driver,
        "executor": executor,
    }


def env_args(exports: bool) -> list[str]:
    """The arguments that pick the conf, and name the exports folder where it is mounted."""
    return [*ENV_ARGS, *(EXPORTS_ARGS if exports else [])]


def job_manifest(stage: str, templates: list[str], as_of: str = AIRFLOW_DATE) -> dict:
    """SparkApplication running ``jobs/<stage>.py`` for one as-of date."""
    suffix = "" if as_of == AIRFLOW_DATE else "-" + as_of.replace("-", "")
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {
            "name": f"oneid-{stage}{suffix}",
            "namespace": NAMESPACE,
            "labels": _labels(stage),
        },
        "spec": application_spec(
            f"jobs/{stage}.py",
            [*env_args(stage in EXPORT_WRITERS), *(arg.format(as_of=as_of) for arg in templates)],
            store=stage in STORE_WRITERS,
            exports=stage in EXPORT_WRITERS,
        ),
    }


def daily_manifest() -> dict:
    """ScheduledSparkApplication: the whole chain in one driver, every night."""
    arguments = ["--time-zone", TIME_ZONE, "--", *env_args(exports=True)]
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "ScheduledSparkApplication",
        "metadata": {"name": "oneid-daily", "namespace": NAMESPACE, "labels": _labels("daily")},
        "spec": {
            "schedule": SCHEDULE,
            "concurrencyPolicy": "Forbid",
            "successfulRunHistoryLimit": 3,
            "failedRunHistoryLimit": 5,
            "template": application_spec("deploy/daily.py", arguments, store=True, exports=True),
        },
    }


def conf_files(conf_dir: Path = ROOT / "conf") -> list[Path]:
    """Every file the cluster conf reads: the environment, the pipeline, its includes, the
    audience rules and the currency rate table (the ConfigMap replaces the image's conf folder:
    one missing is an error)."""
    files = [Path(name) for name in load_config("cluster", conf_dir).files]
    outside = [str(path) for path in files if path.parent != conf_dir.resolve()]
    if outside:
        raise SystemExit(f"conf files outside {conf_dir} cannot go in the ConfigMap: {outside}")
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise SystemExit(f"conf files named but missing: {missing}")
    return files


def configmap(conf_dir: Path = ROOT / "conf") -> dict:
    """ConfigMap ``oneid-conf`` from the conf files a cluster job reads (no secrets in them)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONF_MAP, "namespace": NAMESPACE, "labels": _labels("conf")},
        "data": {path.name: path.read_text(encoding="utf-8") for path in conf_files(conf_dir)},
    }


def rendered() -> dict[Path, str]:
    """Every committed manifest and its text."""
    header = "# Generated by deploy/k8s/render.py from deploy/daily.yaml; do not edit by hand.\n"
    files = {
        HERE / "jobs" / f"{stage}.yaml": header + _dump(job_manifest(stage, templates))
        for stage, templates in steps()
    }
    files[HERE / "scheduled-daily.yaml"] = header + _dump(daily_manifest())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", help="print this stage's manifest (with --as-of)")
    parser.add_argument("--as-of", help="date for the printed manifest (YYYY-MM-DD)")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--configmap", action="store_true", help="print the conf ConfigMap")
    args = parser.parse_args(argv)
    if args.configmap:
        print(_dump(configmap()), end="")
        return 0
    if args.stage:
        templates = dict(steps()).get(args.stage)
        if templates is None or not args.as_of or not re.fullmatch(r"\d{4}-\d\d-\d\d", args.as_of):
            parser.error("give a stage of deploy/daily.yaml and --as-of YYYY-MM-DD")
        print(_dump(job_manifest(args.stage, templates, args.as_of)), end="")
        return 0
    stale = []
    for path, text in rendered().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for orphan in sorted(set((HERE / "jobs").glob("*.yaml")) - set(rendered())):
        stale.append(orphan.relative_to(ROOT))  # a step no longer in deploy/daily.yaml
        if not args.check:
            orphan.unlink()
    if args.check and stale:
        names = ", ".join(map(str, stale))
        print(f"stale manifests: {names}; run python deploy/k8s/render.py", file=sys.stderr)
        return 1
    return 0


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "oneid",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": __version__,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (conf files in the ConfigMap) as literal blocks."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    ),
)


def _dump(manifest: dict) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.exit(main())
