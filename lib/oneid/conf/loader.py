"""Load, merge and validate configuration files into :class:`OneIdConfig`.

An environment file names its pipeline file (``pipeline: pipeline.yaml``, relative to the
environment file). The pipeline file may split its sections over other files with
``include: [tags.yaml, audiences.yaml]`` (relative to it, as are the audience rules file and the
currency rate table); a section defined twice is an error
and errors in an included section name the included file. ``--set key=value`` overrides apply
after all are read; the first part of the key says which file it belongs to
(``spark.shuffle_partitions=4`` → environment, ``identity.components.engine=native`` →
pipeline). Values are parsed as YAML scalars.

The audience rules file is read and its shape checked here; checking the rules against the tag
registry and the event columns (``oneid.audiences.compile_audiences``) is the audiences stage's
job, so a command that does not use audiences (``oneid jars``) never compiles them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from oneid.conf.audiences import AudiencesConf, load_audiences
from oneid.conf.models import EnvConf, OneIdConfig
from oneid.conf.pipeline import PipelineConf
from oneid.conf.yaml_file import read_yaml
from oneid.errors import ConfigError

DEFAULT_CONF_DIR = Path("conf")
ENV_ONLY_KEYS = {"pipeline"}


def load_config(
    env: str | Path = "local",
    conf_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> OneIdConfig:
    """Read ``<conf_dir>/<env>.yaml`` (or the path ``env``) and its pipeline file, apply overrides.

    Raises :class:`ConfigError` naming the file, the key and what was expected.
    """
    env_path = _env_path(env, conf_dir)
    env_raw = read_yaml(env_path)
    pipeline_name = env_raw.pop("pipeline", "pipeline.yaml")
    if not isinstance(pipeline_name, str):
        raise ConfigError(f"{env_path}: pipeline: expected a file name, got {pipeline_name!r}")
    pipeline_path = (env_path.parent / pipeline_name).resolve()
    pipeline_raw = read_yaml(pipeline_path)
    origins: dict[str, str] = {}
    included = _merge_includes(pipeline_raw, pipeline_path, origins)

    for key, value in _parse_overrides(overrides):
        target, label = _override_target(key, env_raw, pipeline_raw)
        _set_dotted(target, key, value)
        origins[f"{label}.{key}"] = f"--set {key}"

    env_conf = _validate(EnvConf, env_raw, str(env_path), "env", origins)
    pipeline_conf = _validate(PipelineConf, pipeline_raw, str(pipeline_path), "pipeline", origins)
    files = [env_path, pipeline_path, *included]
    audiences = AudiencesConf()
    if pipeline_conf.audiences.rules:
        rules_path = _beside(pipeline_path, pipeline_conf.audiences.rules)
        audiences = load_audiences(rules_path)
        files.append(rules_path)
    if pipeline_conf.tags.currency.rates:
        rates_path = _beside(pipeline_path, pipeline_conf.tags.currency.rates)
        pipeline_conf = _with_rates(pipeline_conf, rates_path)
        files.append(rates_path)
    _check_references(pipeline_conf, audiences, origins, str(pipeline_path))
    return OneIdConfig(
        env_name=env_path.stem,
        env=env_conf,
        pipeline=pipeline_conf,
        audiences=audiences,
        files=tuple(str(p) for p in files),
    )


def _beside(pipeline_path: Path, name: str) -> Path:
    """A file the pipeline file names (audience rules, the currency rate table): relative to
    the pipeline file's folder, not to the working directory (on a cluster nobody's choice),
    so that it is one of the conf's files and the Kubernetes ConfigMap carries it."""
    return (pipeline_path.parent / name).resolve()


def _with_rates(pipeline: PipelineConf, rates_path: Path) -> PipelineConf:
    """``pipeline`` with ``tags.currency.rates`` as the absolute ``rates_path``."""
    currency = pipeline.tags.currency.model_copy(update={"rates": str(rates_path)})
    tags = pipeline.tags.model_copy(update={"currency": currency})
    return pipeline.model_copy(update={"tags": tags})


def _check_references(
    pipeline: PipelineConf, audiences: AudiencesConf, origins: dict[str, str], default: str
) -> None:
    """Names that one section takes from another: tags, audiences, destinations."""
    tags = {tag.name for tag in pipeline.tags.definitions}
    problems = []
    for tag in pipeline.audiences.stats_by:
        if tag not in tags:
            problems.append(("audiences.stats_by", f"unknown tag {tag!r}"))
    for name, destination in pipeline.publish.destinations.items():
        key = f"publish.destinations.{name}"
        for audience in destination.audiences:
            if audience not in audiences.audiences:
                problems.append((f"{key}.audiences", f"unknown audience {audience!r}"))
        for tag in destination.tags:
            if tag not in tags:
                problems.append((f"{key}.tags", f"unknown tag {tag!r}"))
    if problems:
        lines = [f"{_origin(origins, 'pipeline', k) or default}: {k}: {p}" for k, p in problems]
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines))


def _env_path(env: str | Path, conf_dir: str | Path | None) -> Path:
    candidate = Path(env)
    if candidate.suffix in {".yaml", ".yml"}:
        path = candidate
    else:
        path = Path(conf_dir or DEFAULT_CONF_DIR) / f"{env}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{path}: environment file not found (expected conf/<env>.yaml, e.g. conf/local.yaml; "
            "pass --conf-dir or --env)"
        )
    return path.resolve()


def _merge_includes(
    pipeline_raw: dict[str, Any], pipeline_path: Path, origins: dict[str, str]
) -> list[Path]:
    """Merge the sections of ``include:`` files into ``pipeline_raw``; remember their files."""
    names = pipeline_raw.pop("include", None) or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{pipeline_path}: include: expected a list of file names, got {names!r}")
    paths = []
    for name in names:
        path = (pipeline_path.parent / name).resolve()
        for key, value in read_yaml(path).items():
            if key in pipeline_raw:
                first = origins.get(f"pipeline.{key}", str(pipeline_path))
                raise ConfigError(f"{path}: {key}: section already defined in {first}")
            pipeline_raw[key] = value
            origins[f"pipeline.{key}"] = str(path)
        paths.append(path)
    return paths


def _parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {item!r}: expected key=value, e.g. spark.shuffle_partitions=4"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def _override_target(
    key: str, env_raw: dict[str, Any], pipeline_raw: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    head = key.split(".", 1)[0]
    if head in EnvConf.model_fields:
        return env_raw, "env"
    if head in PipelineConf.model_fields:
        return pipeline_raw, "pipeline"
    known = sorted(set(EnvConf.model_fields) | set(PipelineConf.model_fields))
    raise ConfigError(f"--set {key}: unknown section {head!r}; expected one of {', '.join(known)}")


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _validate(
    model: type[BaseModel], raw: dict[str, Any], path: str, label: str, origins: dict[str, str]
) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            where = _origin(origins, label, key) or path
            if err["type"] == "extra_forbidden":
                lines.append(f"{where}: {key}: unknown key (check spelling; see README conf keys)")
            else:
                got = err.get("input")
                lines.append(f"{where}: {key}: {err['msg']} (got {got!r})")
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines)) from None


def _origin(origins: dict[str, str], label: str, key: str) -> str | None:
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        found = origins.get(f"{label}." + ".".join(parts[:i]))
        if found:
            return found
    return None
