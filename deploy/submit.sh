#!/usr/bin/env bash
# Submit one OneID job to a Spark master with the pinned jars, the package and the conf:
#
#   deploy/submit.sh <job> [--master URL] [--env ENV] [--conf-dir DIR] [--dry-run]
#                    [spark-submit options ...] -- [job arguments ...]
#
# <job> is jobs/<job>.py (ingest, standardize, identity, ...). --env is conf/<ENV>.yaml or a
# path to an env file (default: cluster); it and --conf-dir are passed on to the job. Other
# options before `--` go to spark-submit as they are (--conf k=v, --executor-memory, ...); the
# driver runs on this host (client mode: --deploy-mode cluster is refused). Jars: `python -m
# oneid jars` (the project's resolver, jars.* in the env's conf). Package:
# dist/oneid-<version>-py.zip from `make package`.
# Environment: ONEID_PYTHON (default .venv/bin/python, else python3), SPARK_HOME (default: the
# pyspark install of ONEID_PYTHON), PYSPARK_PYTHON (executors' Python; default ONEID_PYTHON).
set -euo pipefail

die() { echo "submit.sh: error: $*" >&2; exit 2; }
CLIENT_ONLY="--deploy-mode cluster is not supported: the driver runs on this host and reads \
--conf-dir and ONEID_HMAC_KEY here (on Kubernetes, deploy/k8s runs the driver in a pod)"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -ge 1 && $1 != -* ]] || die "usage: deploy/submit.sh <job> [--master URL] [--env ENV] [options] -- [job args]"
job=$1
shift

master=${SPARK_MASTER:-}
env_name=cluster
conf_dir=$ROOT/conf
dry_run=0
spark_opts=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --master) master=${2:?--master needs a URL}; shift 2 ;;
    --env) env_name=${2:?--env needs a name or file}; shift 2 ;;
    --conf-dir) conf_dir=${2:?--conf-dir needs a folder}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --deploy-mode=cluster) die "$CLIENT_ONLY" ;;
    --deploy-mode) [[ ${2:-} != cluster ]] || die "$CLIENT_ONLY"; spark_opts+=("$1" "${2:-}"); shift 2 ;;
    --) shift; break ;;
    *) spark_opts+=("$1"); shift ;;
  esac
done
job_args=("$@")

job_file=$ROOT/jobs/$job.py
[[ -f $job_file ]] || die "no job file jobs/$job.py (jobs: $(cd "$ROOT/jobs" && ls -- *.py | sed 's/\.py$//' | xargs))"

if [[ -z ${ONEID_PYTHON:-} ]]; then
  if [[ -x $ROOT/.venv/bin/python ]]; then ONEID_PYTHON=$ROOT/.venv/bin/python; else ONEID_PYTHON=python3; fi
fi
version=$("$ONEID_PYTHON" -c 'import oneid; print(oneid.__version__)') \
  || die "$ONEID_PYTHON cannot import oneid (make install, or pip install dist/oneid-*.whl)"
py_files=$ROOT/dist/oneid-$version-py.zip
[[ -f $py_files ]] || die "$py_files not found: run make package"
if [[ -d $ROOT/lib/oneid && -n $(find "$ROOT/lib/oneid" -name '*.py' -newer "$py_files" -print -quit) ]]; then
  die "$py_files is older than lib/oneid: run make package"
fi

jars=$("$ONEID_PYTHON" -m oneid jars -q --env "$env_name" --conf-dir "$conf_dir") \
  || die "cannot resolve the jars (see the message above; README 'Jars offline or behind a mirror')"

SPARK_HOME=${SPARK_HOME:-$("$ONEID_PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export SPARK_HOME
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$ONEID_PYTHON}
export PYSPARK_DRIVER_PYTHON=${PYSPARK_DRIVER_PYTHON:-$ONEID_PYTHON}

cmd=("$SPARK_HOME/bin/spark-submit" --name "oneid-$job")
[[ -n $master ]] && cmd+=(--master "$master")
cmd+=(--jars "$jars" --py-files "$py_files")
cmd+=(${spark_opts[@]+"${spark_opts[@]}"})
cmd+=("$job_file" --env "$env_name" --conf-dir "$conf_dir" ${job_args[@]+"${job_args[@]}"})

if [[ $dry_run == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
