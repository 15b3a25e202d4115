"""Exploring the identity graph from a notebook: sizes, the largest OneIDs, one component, a person.

Every function takes the session and conf, reads the published tables and returns something
small (pandas frames or a dataclass of them); nothing prints. Results hold masked values only:
the phone look-up normalises and keyed-hashes the number in memory, as ``standardize`` does.
Drawing needs the ``notebook`` extra (networkx, matplotlib), imported only when used.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf import OneIdConfig, load_config
from oneid.errors import DataContractError
from oneid.identity.graph import base_type
from oneid.standardize.hashing import keyed_hash, load_key
from oneid.standardize.normalize import mask, normalize_phone
from oneid.tables import read_table, read_table_or_none
from oneid.tags import tag_tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_DRAWN_NODES = 500
"""component_graph refuses larger components (the default size gate is 500 identifiers)."""

CUT_COLUMNS = [
    "oneid",
    "rule",
    "node_id",
    "id_type",
    "masked",
    "records",
    "member_ids",
    "threshold",
    "component_records",
    "other_node_id",
    "other_masked",
]


def config_from_env(root: Path, environ: Mapping[str, str] | None = None) -> OneIdConfig:
    """The conf a notebook explores, chosen by environment variables.

    ``ONEID_ENV`` (default ``local``), ``ONEID_CONF_DIR`` (default ``<root>/conf``),
    ``ONEID_WAREHOUSE`` (default: the environment's ``warehouse``) and ``ONEID_SET``
    (``key=value`` overrides separated by ``;``). Relative paths resolve against ``root``, the
    project folder, so ``./warehouse`` is the one ``make demo`` wrote.
    """
    environ = os.environ if environ is None else environ
    overrides = [item.strip() for item in environ.get("ONEID_SET", "").split(";") if item.strip()]
    if environ.get("ONEID_WAREHOUSE"):
        overrides.append(f"warehouse={environ['ONEID_WAREHOUSE']}")
    conf_dir = environ.get("ONEID_CONF_DIR") or root / "conf"
    cfg = load_config(environ.get("ONEID_ENV", "local"), conf_dir, overrides)
    paths = {"warehouse": cfg.env.warehouse, "checkpoint_root": cfg.env.checkpoint_root}
    resolved = {
        key: str((root / value).resolve())
        for key, value in paths.items()
        if value and "://" not in value and not Path(value).expanduser().is_absolute()
    }
    if not resolved:
        return cfg
    return cfg.model_copy(update={"env": cfg.env.model_copy(update=resolved)})


def component_sizes(spark: SparkSession, cfg: OneIdConfig) -> pd.DataFrame:
    """How many OneIDs have each size (identifiers per OneID): columns ``size``, ``oneids``."""
    sizes = read_table(spark, cfg, "identity.oneid_map").groupBy("oneid").count()
    histogram = sizes.groupBy(F.col("count").alias("size")).agg(F.count(F.lit(1)).alias("oneids"))
    return histogram.orderBy("size").toPandas()


@dataclass(frozen=True)
class LargestComponents:
    """The largest OneIDs and the guard's cuts around them."""

    components: pd.DataFrame
    """oneid, identifiers, identifier_counts (base type → count), records, sources; largest
    first."""
    cuts: pd.DataFrame
    """Latest run's hub-audit rows touching them (:data:`CUT_COLUMNS`): hubs held by their
    records (``component_records`` = how many) and ``limit:*`` weak edges with an end in them."""


def largest_components(spark: SparkSession, cfg: OneIdConfig, n: int = 10) -> LargestComponents:
    """The ``n`` largest OneIDs (most identifiers; ties: smaller OneID) and why they are large."""
    mapping = read_table(spark, cfg, "identity.oneid_map")
    top = (
        mapping.groupBy("oneid")
        .agg(F.count(F.lit(1)).alias("identifiers"))
        .orderBy(F.desc("identifiers"), "oneid")
        .limit(n)
        .collect()
    )
    order = {row.oneid: rank for rank, row in enumerate(top)}
    members = mapping.where(F.col("oneid").isin(list(order))).select("node_id", "id_type", "oneid")
    counts = (
        members.groupBy("oneid", base_type().alias("type"))
        .count()
        .groupBy("oneid")
        .agg(F.map_from_entries(F.array_sort(F.collect_list(F.struct("type", "count")))).alias("m"))
    )
    profiles = read_table(spark, cfg, "identity.profiles").select("oneid", "records", "sources")
    extra = {r.oneid: r for r in counts.join(profiles, "oneid", "left").collect()}
    components = pd.DataFrame(
        [
            {
                "oneid": row.oneid,
                "identifiers": row.identifiers,
                "identifier_counts": dict(extra[row.oneid].m),
                "records": extra[row.oneid].records,
                "sources": list(extra[row.oneid].sources or []),
            }
            for row in top
        ],
        columns=["oneid", "identifiers", "identifier_counts", "records", "sources"],
    )
    cuts = _cuts(spark, cfg, members).toPandas()
    if len(cuts):
        cuts["_rank"] = cuts["oneid"].map(order)
        cuts = cuts.sort_values(["_rank", "rule", "node_id", "other_node_id"], na_position="first")
        cuts = cuts.drop(columns="_rank").reset_index(drop=True)
    return LargestComponents(components, cuts[CUT_COLUMNS])


def _cuts(spark: SparkSession, cfg: OneIdConfig, members: DataFrame) -> DataFrame:
    """The latest published run's audit rows that touch ``members`` (node_id, id_type, oneid)."""
    audit = read_table(spark, cfg, "identity.hub_audit").where(
        F.col("run_id") == latest_run(spark, cfg)
    )
    nodes = members.select("node_id", "oneid")
    incidence = read_table(spark, cfg, "identity.incidence")
    component_records = incidence.join(nodes, "node_id").select("source", "record_key", "oneid")
    hubs = audit.where(~F.col("rule").startswith("limit:"))
    held = (
        incidence.join(hubs.select("node_id"), "node_id")
        .join(component_records, ["source", "record_key"])
        .groupBy("node_id", "oneid")
        .agg(F.count_distinct("source", "record_key").alias("component_records"))
    )
    hub_rows = hubs.join(held, "node_id").withColumn("other_masked", F.lit(None).cast("string"))
    limits = audit.where(F.col("rule").startswith("limit:"))
    other = read_table(spark, cfg, "identity.nodes").select(
        F.col("node_id").alias("other_node_id"), F.col("masked").alias("other_masked")
    )
    by_end = [
        limits.join(nodes.withColumnRenamed("node_id", end), end)
        for end in ("node_id", "other_node_id")
    ]
    limit_rows = (
        by_end[0]
        .unionByName(by_end[1])
        .distinct()
        .join(other, "other_node_id", "left")
        .withColumn("component_records", F.lit(None).cast("long"))
    )
    return hub_rows.unionByName(limit_rows).select(*CUT_COLUMNS)


def latest_run(spark: SparkSession, cfg: OneIdConfig) -> str:
    """The run id of the latest published (passed) identity run."""
    stats = read_table_or_none(spark, cfg, "identity.run_stats")
    row = None
    if stats is not None:
        row = stats.where(F.col("passed")).orderBy(F.desc("finished_at")).select("run_id").first()
    if row is None:
        raise DataContractError("no published identity run: run `oneid identity` first")
    return row.run_id


@dataclass(frozen=True)
class ComponentGraph:
    """One OneID's identifiers and the edges between them (masked values only)."""

    oneid: int
    nodes: pd.DataFrame
    """node_id, id_type, masked."""
    edges: pd.DataFrame
    """src, dst, strength (strong / weak), sources."""


def component_graph(
    spark: SparkSession, cfg: OneIdConfig, oneid: int, max_nodes: int = MAX_DRAWN_NODES
) -> ComponentGraph:
    """Nodes and edges of one OneID's component, collected (refuses more than ``max_nodes``)."""
    ids = read_table(spark, cfg, "identity.oneid_map").where(F.col("oneid") == oneid)
    nodes = ids.select("node_id").join(
        read_table(spark, cfg, "identity.nodes").select("node_id", "id_type", "masked"), "node_id"
    )
    size = nodes.count()
    if size == 0:
        raise DataContractError(f"OneID {oneid} is not in identity.oneid_map")
    if size > max_nodes:
        raise DataContractError(f"OneID {oneid} has {size} identifiers, more than {max_nodes}")
    node_ids = ids.select("node_id")
    edges = (
        read_table(spark, cfg, "identity.edges")
        .join(node_ids.withColumnRenamed("node_id", "src"), "src")
        .join(node_ids.withColumnRenamed("node_id", "dst"), "dst")
        .select("src", "dst", "strength", F.array_sort("sources").alias("sources"))
    )
    return ComponentGraph(
        oneid,
        nodes.orderBy("node_id").toPandas(),
        edges.orderBy("src", "dst").toPandas(),
    )


TYPE_COLOURS = {
    "member_id": "#1f77b4",
    "phone": "#d62728",
    "email": "#2ca02c",
    "wx_unionid": "#9467bd",
    "wx_openid": "#8c564b",
    "douyin_openid": "#e377c2",
    "wecom_external_userid": "#17becf",
    "device": "#ff7f0e",
}
"""Node colour per base identifier type (others are grey)."""


def draw_component(graph: ComponentGraph, ax: Axes | None = None, seed: int = 7) -> Figure:
    """The component as a graph: colours by identifier type, masked labels, weak edges dashed.

    Draws into ``ax`` when given, else into a new Figure (no pyplot state). ``seed`` fixes the
    spring layout.
    """
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if ax is None:
        size = min(4 + len(graph.nodes) / 4, 14)
        ax = Figure(figsize=(size * 1.3, size * 0.8), layout="constrained").add_subplot()
    g = nx.Graph()
    for row in graph.nodes.itertuples(index=False):
        g.add_node(int(row.node_id), kind=row.id_type.split(":", 1)[0], label=row.masked)
    for row in graph.edges.itertuples(index=False):
        g.add_edge(int(row.src), int(row.dst), strength=row.strength)
    pos = nx.spring_layout(g, seed=seed)
    kinds = nx.get_node_attributes(g, "kind")
    nx.draw_networkx_nodes(
        g, pos, ax=ax, node_size=500, node_color=[TYPE_COLOURS.get(kinds[n], "#7f7f7f") for n in g]
    )
    for strength, style in (("strong", "solid"), ("weak", "dashed")):
        edges = [(u, v) for u, v, s in g.edges(data="strength") if s == strength]
        if edges:
            nx.draw_networkx_edges(
                g, pos, edgelist=edges, ax=ax, style=style, label=f"{strength} edges"
            )
    below = {n: (x, y - 0.09) for n, (x, y) in pos.items()}  # labels under their nodes
    nx.draw_networkx_labels(g, below, labels=nx.get_node_attributes(g, "label"), ax=ax, font_size=8)
    handles = [
        Line2D(
            [], [], marker="o", linestyle="", color=TYPE_COLOURS.get(kind, "#7f7f7f"), label=kind
        )
        for kind in sorted(set(kinds.values()))
    ]
    handles += [
        Line2D([], [], color="k", linestyle=style, label=f"{strength} edge")
        for strength, style in (("strong", "-"), ("weak", "--"))
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.margins(0.12)
    ax.set_title(f"OneID {graph.oneid}: {g.number_of_nodes()} identifiers")
    ax.set_axis_off()
    return ax.figure


def plot_component_sizes(sizes: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Bar chart of :func:`component_sizes` (log scale: most OneIDs are small)."""
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(8, 3.5)).add_subplot()
    ax.bar(sizes["size"].astype(str), sizes["oneids"])
    ax.set_yscale("log")
    ax.set_xlabel("identifiers per OneID")
    ax.set_ylabel("OneIDs")
    ax.set_title("OneID size distribution")
    return ax.figure


@dataclass(frozen=True)
class Person:
    """What OneID knows about the owner of a phone number (masked values only)."""

    masked_phone: str
    status: str
    """``found``, ``unknown`` (not in the graph) or ``hub:<rule>`` (a hub has no OneID)."""
    oneid: int | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    """The identity.profiles row."""
    dt: datetime.date | None = None
    """The day of ``tags`` and ``audiences``."""
    tags: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "tag", "value"])
    )
    audiences: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["audience_id", "version", "holdout"])
    )


def lookup_phone(
    spark: SparkSession,
    cfg: OneIdConfig,
    raw_phone: str,
    dt: datetime.date | None = None,
    region: str = "CN",
) -> Person:
    """Find a person by phone: profile, tags and audiences on ``dt`` (default: latest tag day).

    The number is normalised with the project's normaliser and HMAC-ed with the conf's key, in
    memory; neither the number nor the key is in the result. An invalid number raises ValueError.
    """
    normalized = normalize_phone(raw_phone, region)
    if normalized.value is None:
        raise ValueError(f"not a valid phone number ({normalized.reason})")
    value_hash = keyed_hash(load_key(cfg.env.secrets), normalized.value)
    person = Person(masked_phone=mask("phone", normalized.value), status="unknown")
    node = (
        read_table(spark, cfg, "identity.nodes")
        .where((F.col("id_type") == "phone") & (F.col("value_hash") == value_hash))
        .select("node_id")
    )
    found = (
        node.join(read_table(spark, cfg, "identity.oneid_map"), "node_id", "left")
        .join(read_table(spark, cfg, "identity.hubs").select("node_id", "rule"), "node_id", "left")
        .select("oneid", "rule")
        .first()
    )
    if found is None:
        return person
    if found.oneid is None:
        return Person(person.masked_phone, f"hub:{found.rule}" if found.rule else "unknown")
    profile = read_table(spark, cfg, "identity.profiles").where(F.col("oneid") == found.oneid)
    row = profile.first()
    day = dt or latest_tag_day(spark, cfg)
    return Person(
        masked_phone=person.masked_phone,
        status="found",
        oneid=found.oneid,
        profile=row.asDict(recursive=True) if row else {},
        dt=day,
        tags=person_tags(spark, cfg, found.oneid, day),
        audiences=person_audiences(spark, cfg, found.oneid, day),
    )


def latest_tag_day(spark: SparkSession, cfg: OneIdConfig) -> datetime.date | None:
    """The latest ``dt`` every tag table has (None when a tag table is missing)."""
    days = []
    for table in tag_tables(cfg.pipeline.tags):
        frame = read_table_or_none(spark, cfg, table)
        day = None if frame is None else frame.agg(F.max("dt")).first()[0]
        if day is None:
            return None
        days.append(day)
    return min(days, default=None)


def person_tags(
    spark: SparkSession, cfg: OneIdConfig, oneid: int, day: datetime.date | None
) -> pd.DataFrame:
    """(table, tag, value) of one OneID on ``day``, every table in registry order."""
    rows = []
    for table, columns in tag_tables(cfg.pipeline.tags).items():
        frame = read_table_or_none(spark, cfg, table) if day else None
        row = None
        if frame is not None:
            row = frame.where((F.col("dt") == F.lit(day)) & (F.col("oneid") == oneid)).first()
        if row is not None:
            rows += [(table, tag, row[tag]) for tag in columns]
    return pd.DataFrame(rows, columns=["table", "tag", "value"])


def person_audiences(
    spark: SparkSession, cfg: OneIdConfig, oneid: int, day: datetime.date | None
) -> pd.DataFrame:
    """(audience_id, version, holdout) of one OneID in ``audience.membership`` on ``day``."""
    columns = ["audience_id", "version", "holdout"]
    membership = read_table_or_none(spark, cfg, "audience.membership")
    if membership is None or day is None:
        return pd.DataFrame(columns=columns)
    mine = membership.where((F.col("dt") == F.lit(day)) & (F.col("oneid") == oneid))
    return mine.select(*columns).orderBy("audience_id").toPandas()


def pick_phone(spark: SparkSession, cfg: OneIdConfig, source: str = "crm_members") -> str:
    """A **raw** phone number from ``bronze.<source>`` (restricted) to try :func:`lookup_phone`.

    For engineers' notebooks on demo data: never display it. It is the phone of a record whose
    phone has a OneID, preferring people in the most audiences on the latest tag day.
    """
    fields = [i.field for i in cfg.pipeline.sources[source].identifiers if i.type == "phone"]
    if not fields:
        raise DataContractError(f"source {source} declares no phone identifier")
    phones = (
        read_table(spark, cfg, "silver.identifiers")
        .where((F.col("source") == source) & (F.col("id_type") == "phone"))
        .join(read_table(spark, cfg, "identity.oneid_map"), ["id_type", "value_hash"])
        .select("record_key", "oneid")
    )
    membership = read_table_or_none(spark, cfg, "audience.membership")
    day = latest_tag_day(spark, cfg)
    if membership is not None and day is not None:
        counts = membership.where(F.col("dt") == F.lit(day)).groupBy("oneid").count()
        phones = phones.join(counts, "oneid", "left").fillna(0, ["count"])
    else:
        phones = phones.withColumn("count", F.lit(0))
    best = phones.orderBy(F.desc("count"), "record_key").select("record_key").limit(1)
    bronze = read_table(spark, cfg, f"bronze.{source}")
    row = (
        bronze.join(best, bronze["_record_key"] == best["record_key"])
        .where(F.col(fields[0]).isNotNull())
        .orderBy(F.desc("_batch_id"))
        .select(fields[0])
        .first()
    )
    if row is None:
        raise DataContractError(f"no phone of bronze.{source} has a OneID")
    return row[0]
