"""Airflow DAG ``oneid_daily``: the OneID batch chain on Kubernetes, one task per stage.

Each task submits the SparkApplication ``deploy/k8s/jobs/<stage>.yaml`` (rendered from
``deploy/daily.yaml`` by ``deploy/k8s/render.py``) through the spark-operator, with the run's
as-of date filled in by Airflow (the day before the run's time in Asia/Shanghai:
``deploy/k8s/render.py``'s ``AIRFLOW_DATE``, not ``{{ ds }}``, which Airflow 2 gives in UTC for
the start of the interval, two days back), and waits for it to finish. A failed stage (an
identity gate, for one) stops the chain, so nothing after it publishes. Runs at 02:30
Asia/Shanghai for the previous day. Put ``deploy/`` in the DAGs folder, or point
``ONEID_K8S_MANIFESTS`` at the folder holding ``jobs/*.yaml``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow import DAG
from airflow.models.baseoperator import chain
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

CHAIN = ("ingest", "standardize", "identity", "tags", "audiences", "publish", "serve-sync")
MANIFESTS = Path(os.environ.get("ONEID_K8S_MANIFESTS", Path(__file__).resolve().parents[1] / "k8s"))

with DAG(
    dag_id="oneid_daily",
    description="OneID: ingest -> standardize -> identity -> tags -> audiences -> publish "
    "-> serve-sync",
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    template_searchpath=[str(MANIFESTS)],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["oneid"],
) as dag:
    chain(
        *(
            SparkKubernetesOperator(
                task_id=stage,
                application_file=f"jobs/{stage}.yaml",
                namespace="oneid",
                kubernetes_conn_id="kubernetes_default",
                get_logs=True,
                delete_on_termination=True,
            )
            for stage in CHAIN
        )
    )
