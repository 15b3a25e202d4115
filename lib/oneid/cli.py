"""The ``oneid`` console script: one sub-command per job, plus ``generate`` and ``demo``.

The CLI only parses arguments, configures logging, builds the session once and calls library
code. Errors a user can act on (:class:`OneIdError`) print as one line and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from oneid.conf import OneIdConfig, load_config
from oneid.errors import OneIdError
from oneid.stages import (
    Stage,
    StageResult,
    registered_stages,
    run_demo_stages,
)

logger = logging.getLogger("oneid")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``oneid`` and of every ``jobs/<job>.py``."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    _configure_logging(args.verbose - args.quiet)
    try:
        cfg = load_config(args.env, args.conf_dir, args.set)
        return int(args.handler(cfg, args) or 0)
    except OneIdError as exc:
        print(f"oneid: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", default="local", help="environment: conf/<env>.yaml or a path")
    common.add_argument("--conf-dir", default=None, help="folder of conf files (default ./conf)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a conf key, e.g. --set spark.shuffle_partitions=4 (repeatable)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0)
    common.add_argument("-q", "--quiet", action="count", default=0)

    parser = argparse.ArgumentParser(prog="oneid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", parents=[common], help="write generated demo source data")
    gen.add_argument("--people", type=int, default=None, help="people (default: demo.people)")
    gen.add_argument("--seed", type=int, default=None, help="seed (default: demo.seed)")
    gen.add_argument("--out", default=None, help="output folder (default: demo.data_dir)")
    gen.set_defaults(handler=_cmd_generate)

    demo = sub.add_parser("demo", parents=[common], help="generate data and run every stage")
    demo.add_argument("--people", type=int, default=None, help="people (default: demo.people)")
    demo.add_argument("--regenerate", action="store_true", help="rewrite the demo data")
    demo.set_defaults(handler=_cmd_demo)

    jars = sub.add_parser(
        "jars", parents=[common], help="print the resolved jar files as a comma list (--jars)"
    )
    jars.set_defaults(handler=_cmd_jars)

    broker = sub.add_parser(
        "broker",
        parents=[common],
        help="run a development Kafka broker on loopback until Ctrl-C (jars from Maven Central)",
    )
    broker.add_argument("--port", type=int, default=9092, help="listener port (default 9092)")
    broker.add_argument("--dir", default="./warehouse/_kafka", help="the broker's data folder")
    broker.set_defaults(handler=_cmd_broker)

    realtime = sub.add_parser(
        "realtime",
        parents=[common],
        help="stream Kafka events into realtime tags and signed webhook triggers (runs on; "
        "not a stage of the daily chain)",
    )
    realtime.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: run on)"
    )
    realtime.set_defaults(handler=_cmd_realtime)

    runs = sub.add_parser(
        "runs", parents=[common], help="each stage's lease and last runs (docs/reliability.md)"
    )
    runs.set_defaults(handler=_cmd_runs)

    checker = sub.add_parser(
        "check",
        parents=[common],
        help="try the conf on a sample of each source: what parses, what would be quarantined, "
        "whether tags and audiences can be computed (writes nothing; exit 1 on errors)",
    )
    checker.add_argument("--source", action="append", default=[], help="only this source")
    checker.add_argument("--rows", type=int, default=1000, help="rows sampled per source")
    checker.set_defaults(handler=_cmd_check)

    dictionary = sub.add_parser(
        "tag-dictionary", parents=[common], help="write the tag dictionary (Markdown) from conf"
    )
    dictionary.add_argument("--out", default=None, help="file to write (default: stdout)")
    dictionary.set_defaults(handler=_cmd_tag_dictionary)

    serve = sub.add_parser(
        "serve", parents=[common], help="run the data service's look-up API (no Spark)"
    )
    serve.add_argument("--host", default=None, help="address (default: serve.host)")
    serve.add_argument("--port", type=int, default=None, help="port (default: serve.port)")
    serve.set_defaults(handler=_cmd_serve)

    key = sub.add_parser(
        "serve-key",
        parents=[common],
        help="make an API key for the data service: prints the key once and its conf entry",
    )
    key.add_argument("--name", required=True, help="who holds the key, e.g. ma_platform")
    key.add_argument(
        "--scope",
        action="append",
        choices=["lookup", "profile:read"],
        default=[],
        help="scope (repeatable; default lookup)",
    )
    key.set_defaults(handler=_cmd_serve_key)

    for stage in registered_stages():
        stage_parser = sub.add_parser(stage.name, parents=[common], help=stage.help)
        stage.add_arguments(stage_parser)
        stage_parser.set_defaults(handler=_stage_handler(stage))
    return parser


def _configure_logging(level_shift: int) -> None:
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(min(level_shift, 1), -2), logging.DEBUG
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    root = logging.getLogger()
    if not any(isinstance(f, Py4jRootNotices) for f in root.filters):
        root.addFilter(Py4jRootNotices())


PY4J_SOURCE = f"{os.sep}py4j{os.sep}"
"""The folder of py4j's modules, as it appears in a log record's ``pathname``."""


class Py4jRootNotices(logging.Filter):
    """Drops what py4j logs on the root logger below WARNING.

    When the JVM has closed a pooled connection, py4j retries the command and reports the
    retry, with a traceback, through ``logging.info`` (the root logger, not its ``py4j``
    logger, whose level is WARNING here). A retry that fails is logged at ERROR and kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or PY4J_SOURCE not in record.pathname


def _stage_handler(stage: Stage):
    def handler(cfg: OneIdConfig, args: argparse.Namespace) -> int:
        from oneid.session import build_session

        text = stage.explain(cfg, args)
        if text is not None:
            print(text)
            return 0
        spark = build_session(cfg, job=stage.name)
        result = stage.run(spark, cfg, args)
        _print_result(stage.name, result)
        return 0

    return handler


def _print_result(name: str, result: StageResult) -> None:
    for table, rows in result.tables.items():
        print(f"{name}: {table}: {rows} rows")
    for note in result.notes:
        print(f"{name}: {note}")


def _generator() -> ModuleType:
    """The demo data generator, ``oneid_demo``: a development tool, not in the cluster wheel."""
    try:
        import oneid_demo
    except ModuleNotFoundError as exc:
        if exc.name != "oneid_demo":
            raise
        raise OneIdError(
            "the demo data generator (oneid_demo) is not installed: run `make install`, or "
            "`pip install -e demo/` in a checkout of the repository"
        ) from None
    return oneid_demo


def _cmd_generate(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    demo = cfg.pipeline.demo
    out = Path(args.out or demo.data_dir)
    people, seed = args.people or demo.people, args.seed or demo.seed
    manifest = _generator().generate_demo(out, people=people, seed=seed)
    print(json.dumps(manifest["rows"], ensure_ascii=False, indent=2))
    return 0


def _cmd_tag_dictionary(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.tags.dictionary import tag_dictionary

    text = tag_dictionary(cfg.pipeline.tags)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def _cmd_demo(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.audiences.job import compiled_rules
    from oneid.demo_warehouse import claim_demo_warehouse
    from oneid.session import build_session, warehouse_root

    compiled_rules(cfg)  # invalid audience rules fail now, not after the stages before them
    generator = _generator()
    demo = cfg.pipeline.demo
    people = args.people or demo.people
    data_dir = Path(demo.data_dir)
    timings: list[tuple[str, float]] = []
    tables: dict[str, int] = {}

    data = {"people": people, "seed": demo.seed, "version": generator.GENERATOR_VERSION}
    claim_demo_warehouse(warehouse_root(cfg), data)  # before the data folder is written
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.with_demo_data(demo.data_dir)})
    started = time.perf_counter()
    manifest_path = data_dir / "manifest.json"
    current = _same_demo_data(manifest_path, people, demo.seed, generator.GENERATOR_VERSION)
    if args.regenerate or not current:
        generator.generate_demo(data_dir, people=people, seed=demo.seed)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for source, rows in manifest["rows"].items():
        tables[f"demo_data/{source}"] = rows
    timings.append(("generate", time.perf_counter() - started))

    started = time.perf_counter()
    spark = build_session(demo_session_config(cfg), job="demo")
    timings.append(("spark session", time.perf_counter() - started))

    run = run_demo_stages(spark, cfg)
    timings += run.timings
    tables.update(run.tables)
    started = time.perf_counter()
    run.notes.extend(_demo_lookup(spark, cfg))
    timings.append(("serve (one look-up)", time.perf_counter() - started))
    started = time.perf_counter()
    run.notes.extend(_demo_realtime(spark, cfg))
    timings.append(("realtime (replay)", time.perf_counter() - started))
    print(_summary(people, cfg, timings, tables, [_spark_settings(spark), *run.notes]))
    return 0


def _spark_settings(spark) -> str:
    """The session settings the demo's seconds depend on most (``demo.spark``)."""

    def on(key: str) -> str:
        return "on" if spark.conf.get(key, "true").lower() == "true" else "off"

    return (
        f"Spark {spark.sparkContext.master}: code generation {on('spark.sql.codegen.wholeStage')}"
        f", adaptive execution {on('spark.sql.adaptive.enabled')}"
    )


def demo_session_config(cfg: OneIdConfig) -> OneIdConfig:
    """``cfg`` with ``demo.spark`` beneath its ``spark.extra`` (small-data settings)."""
    spark = cfg.env.spark
    extra = {**cfg.pipeline.demo.spark, **spark.extra}
    env = cfg.env.model_copy(update={"spark": spark.model_copy(update={"extra": extra})})
    return cfg.model_copy(update={"env": env})


def _demo_lookup(spark, cfg: OneIdConfig) -> list[str]:
    """Start the API for a moment on the store the demo just loaded and look one phone up."""
    from oneid.serve.demo import demo_lookup

    return demo_lookup(spark, cfg)


def _demo_realtime(spark, cfg: OneIdConfig) -> list[str]:
    """Replay a slice of the demo app events through Kafka, the stream and a webhook."""
    from oneid.realtime.demo import demo_realtime

    return demo_realtime(spark, cfg).notes


def _same_demo_data(manifest_path: Path, people: int, seed: int, version: str) -> bool:
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return (manifest.get("people"), manifest.get("seed"), manifest.get("version")) == (
        people,
        seed,
        version,
    )


def _summary(
    people: int,
    cfg: OneIdConfig,
    timings: list[tuple[str, float]],
    tables: dict[str, int],
    notes: list[str],
) -> str:
    width = max(len(name) for name in [*tables, *(t for t, _ in timings), "stage"]) + 2
    lines = [
        "",
        f"OneID demo: {people} people, warehouse {cfg.env.warehouse}",
        "",
        f"{'stage':<{width}}seconds",
    ]
    lines += [f"{name:<{width}}{seconds:7.1f}" for name, seconds in timings]
    lines += ["", f"{'table':<{width}}rows"]
    lines += [f"{name:<{width}}{rows:>7}" for name, rows in tables.items()]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _cmd_serve(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.serve.server import serve

    host, port = args.host or cfg.env.serve.host, args.port or cfg.env.serve.port
    serve(cfg, host, port, (args.env, args.conf_dir or "", list(args.set)))
    return 0


def _cmd_serve_key(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.serve.auth import new_key

    key, digest = new_key()
    scopes = ", ".join(args.scope or ["lookup"])
    print(f"API key for {args.name} (shown once; give it to its holder, store it nowhere else):")
    print(f"  {key}")
    print("conf (serve.api_keys in the environment file):")
    print(f"  - {{name: {args.name}, sha256: {digest}, scopes: [{scopes}]}}")
    return 0


def _cmd_check(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.check import check, report_lines
    from oneid.session import build_session

    spark = build_session(cfg, job="check")
    report = check(spark, cfg, args.source, args.rows)
    print("\n".join(report_lines(report)))
    return 0 if report.ok else 1


def _cmd_runs(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.atomic import status
    from oneid.control_files import ControlFiles, is_local
    from oneid.session import build_session, warehouse_root

    root = warehouse_root(cfg)
    spark = None if is_local(root) else build_session(cfg, job="runs")
    lines = status(ControlFiles(spark, root))
    print("\n".join(lines) if lines else f"no runs recorded under {root}/_oneid")
    return 0


def _cmd_realtime(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.realtime.job import run_realtime
    from oneid.session import build_session

    spark = build_session(cfg, job="realtime", java_options=cfg.pipeline.realtime.jvm_options)
    run = run_realtime(spark, cfg, seconds=args.seconds)
    totals: dict[str, int] = {}
    for report in run.sink.reports:
        for kind, count in report.counts.items():
            totals[kind] = totals.get(kind, 0) + count
    shown = ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    print(f"realtime: {len(run.sink.reports)} micro-batches with data: {shown}")
    return 0


def _cmd_broker(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.realtime.broker import LocalBroker

    with LocalBroker(cfg, args.dir, port=args.port) as broker:
        broker.create_topics(cfg.pipeline.realtime.events_topic)
        print(f"kafka broker on {broker.bootstrap_servers} (data in {args.dir}); Ctrl-C stops it")
        try:
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_jars(cfg: OneIdConfig, args: argparse.Namespace) -> int:
    from oneid.session import session_jars

    paths, _ = session_jars(cfg)
    print(",".join(str(path) for path in paths))
    return 0
