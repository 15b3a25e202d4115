"""Resolution: strong components, weak merges within the per-type limits, stable OneIDs.

The rules live in one pure function, :func:`resolve_part`, that resolves an *independent part*
of the graph with numpy and pandas: vertices with their base types, the edges between them and
the previous (node_id, oneid) rows of the part. Two paths run it:

- a scope of at most ``identity.local_max_identifiers`` identifiers is collected once (Arrow)
  and resolved whole on the driver, with no Spark job per round;
- a larger scope is cut into *pieces*: connected components over every usable edge, strong or
  weak, plus a link from each previous node to its OneID's smallest node. A weak merge never
  crosses a piece and each previous OneID lies in one piece, so every rule is local to a piece.
  Pieces are dealt into buckets, and one ``groupBy(bucket).applyInPandas`` runs
  :func:`resolve_part` on each bucket (a union of pieces is itself an independent part).

Either way the result is the same: a component is labelled by its smallest node id, and the
tie-breaks (by component id, by partner id) are global orders, so a part computes what the
whole computes. Minting is global and separate: components that inherit no OneID (*fresh*) get
``minted + 1, minted + 2, …`` in ascending component order.

Strong components are connected components over strong edges. A shared identifier (a family
tablet: a ``hubs.shared_types`` identifier whose weak edges reach the login identities of two or
more strong components, :func:`shared_cuts`) merges nothing; its edges are reported as
``shared:<type>``. The other components are merged along weak edges
in rounds: every component proposes its best partner (weak edges ordered by the identifier-type
priority of their ends, then by partner id) among those it can merge with without exceeding any
limit; mutual proposals merge. Mutual pairs form a matching, so two merges of one round can
never add up past a limit. Rounds stop when nothing merges (or at ``max_weak_rounds``). Weak
edges still joining two components at the end were not used: each is reported with the first
limit (by type name) it breaks, or ``limit:rounds``.

Stable assignment: for each previous OneID X, its *keeper* is the component holding most of X's
identifiers (ties: the smallest component). A component inherits the oldest (smallest) OneID it
keeps; the other OneIDs it keeps are merged into that one. A component that keeps none is fresh
(lineage ``split`` when some of its identifiers had an id before, ``new`` otherwise). An old
OneID that no component keeps is ``retire``d. Ids are never reused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from oneid.checkpoint import materialize
from oneid.conf.pipeline import IdentityConf
from oneid.identity.components import connected_components
from oneid.identity.graph import base_type
from oneid.identity.keys import Keys

logger = logging.getLogger(__name__)

MAPPING_SCHEMA = pa.schema([("node_id", pa.int64()), ("oneid", pa.int64())])
CHANGES_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("from_oneid", pa.int64()),
        ("to_oneid", pa.int64()),
        ("identifiers", pa.int64()),
    ]
)
REJECTED_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("reason", pa.string())])

PIECE_ROWS = 200_000
"""Identifiers per bucket of pieces that one Python worker resolves (at least one bucket per
core): large enough that per-call overhead vanishes, small enough to sit in a worker's memory."""
PART_INPUT = (
    "bucket long, row string, node_id long, dst long, oneid long, type string, strong boolean"
)
"""One part, as rows: ``vertex`` (node_id, type), ``edge`` (node_id = src, dst, strong) and
``previous`` (node_id, oneid)."""
PART_OUTPUT = (
    "row string, node_id long, component long, oneid long, to_oneid long, dst long, "
    "identifiers long, kind string"
)
"""What a part resolves to, as rows: ``mapping`` (node_id, component, oneid: null when fresh),
``fresh`` (component), ``change`` (kind, oneid = from, to_oneid, component = the fresh
component it goes to, identifiers), ``rejected`` (node_id = src, dst, kind = reason) and
``rounds`` (identifiers = rounds)."""


@dataclass(frozen=True)
class Resolution:
    """New OneIDs of the usable scope, lineage, unused weak edges, engine figures."""

    mapping: DataFrame
    """(node_id, oneid) of the usable identifiers."""
    changes: DataFrame
    """(kind, from_oneid, to_oneid, identifiers): one row per new / split / merge / retire."""
    rejected: DataFrame
    """(src, dst, reason): weak edges left unused."""
    weak_rounds: int
    cc_rounds: int
    """Rounds of the Spark components engine that cut the pieces (0 on the driver)."""
    engine: str
    """``driver``, ``<components engine>+pieces``, or ``none`` for an empty scope."""


def resolve(
    spark: SparkSession,
    conf: IdentityConf,
    usable: Keys,
    inside: DataFrame,
    nodes: DataFrame,
    previous: DataFrame | None,
    minted: int,
) -> Resolution:
    """Resolve the scope: ``usable`` (node_id) identifiers, ``inside`` (src, dst, strength)
    edges between them, ``nodes`` (node_id, id_type) covering them, ``previous`` (node_id,
    oneid) rows whose OneIDs may change (or ``None``), ``minted`` the largest id ever minted."""
    if usable.size == 0:
        return _empty(spark, previous)
    if usable.size <= conf.local_max_identifiers:
        return _on_driver(spark, conf, usable.frame, inside, nodes, previous, minted)
    return _in_pieces(spark, conf, usable, inside, nodes, previous, minted)


# -- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """What :func:`resolve_part` decides for one independent part of the graph."""

    mapping: pd.DataFrame
    """(node_id, component, oneid): ``oneid`` is <NA> for a fresh component."""
    fresh: np.ndarray
    """Components that inherit no OneID, ascending."""
    changes: pd.DataFrame
    """(kind, from_oneid, to_oneid, to_component, identifiers): ``to_component`` is the fresh
    component a ``new`` or ``split`` row goes to (its ``to_oneid`` is <NA> until minted)."""
    rejected: pd.DataFrame
    """(src, dst, reason)."""
    rounds: int


def resolve_part(
    ids: np.ndarray,
    kinds: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    strong: np.ndarray,
    previous: pd.DataFrame,
    conf: IdentityConf,
) -> Part:
    """Resolve the vertices ``ids`` (node ids) of base types ``kinds``; edges ``src``-``dst``
    (node ids; ``strong`` flags); ``previous`` (node_id, oneid) rows of the part, which may
    hold nodes that are not vertices (their OneIDs retire unless a vertex keeps them).

    The part must be independent: no edge or previous OneID reaches outside it.
    """
    order = np.argsort(ids, kind="stable")
    ids, kinds = ids[order], kinds[order]
    a = _positions(ids, src, "edge end")
    b = _positions(ids, dst, "edge end")
    labels = min_labels(len(ids), a[strong], b[strong])
    weak_src, weak_dst = a[~strong], b[~strong]
    cut = shared_cuts(weak_src, weak_dst, kinds, labels, conf)
    weak = WeakEdges(weak_src, weak_dst, kinds, conf, cut)
    labels, rounds = weak.merge(labels)
    mapping, fresh, changes = assign(ids, ids[labels], previous)
    return Part(mapping, fresh, changes, weak.rejected(labels, ids), rounds)


def shared_cuts(
    src: np.ndarray, dst: np.ndarray, kinds: np.ndarray, labels: np.ndarray, conf: IdentityConf
) -> np.ndarray:
    """Per weak edge (vertex positions ``src``-``dst``): ``shared:<type>`` when an end is a
    shared identifier (``hubs.shared_types``), else ``""``.

    An identifier of a shared type is shared when the strong components (``labels``) holding a
    login identity (``hubs.login_types``) that it touches, its own included, are two or more: a
    family tablet seen with a member and with another person's phone. Strong edges already
    joining two logins make them one person, so a device used by one person under two logins
    that a strong record ties together keeps linking.
    """
    reason = np.full(len(src), "", dtype=object)
    if not conf.hubs.shared_types or not len(src):
        return reason
    n = len(kinds)
    with_login = np.zeros(n, dtype=bool)
    with_login[labels[np.isin(kinds, conf.hubs.login_types)]] = True
    candidate = np.isin(kinds, conf.hubs.shared_types)
    vertex = np.concatenate([src, dst, np.flatnonzero(candidate)])
    reached = labels[np.concatenate([dst, src, np.flatnonzero(candidate)])]  # the last: own
    keep = candidate[vertex] & with_login[reached]
    pairs = np.unique(vertex[keep].astype(np.int64) * n + reached[keep])  # (vertex, component)
    shared = np.bincount(pairs // n, minlength=n) >= 2
    for end in (dst, src):  # src's reason wins when both ends are shared
        hit = shared[end]
        reason[hit] = np.char.add("shared:", kinds[end[hit]].astype(str)).astype(object)
    return reason


def min_labels(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """For each of ``n`` vertices, the smallest vertex index of its component (edges src-dst).

    Hooking (every vertex and its label's root take the smallest label next to them) and
    pointer jumping, until no edge joins two labels.
    """
    labels = np.arange(n)
    while True:
        hooked = labels.copy()
        np.minimum.at(hooked, src, labels[dst])
        np.minimum.at(hooked, dst, labels[src])
        np.minimum.at(hooked, labels, hooked)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, labels):
            return labels
        labels = hooked


class WeakEdges:
    """The weak edges of a part (vertex positions) and the limits they must keep; ``cut`` gives
    each edge a reason it is never used (:func:`shared_cuts`), ``""`` for a usable one."""

    def __init__(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        kind: np.ndarray,
        conf: IdentityConf,
        cut: np.ndarray,
    ):
        usable = cut == ""
        self.src, self.dst = src[usable], dst[usable]
        self.cut = src[~usable], dst[~usable], cut[~usable]
        self.conf = conf
        self.limited = sorted(conf.limits)
        priority = {t: i for i, t in enumerate(conf.priority)}
        rank = np.array([priority.get(t, len(priority)) for t in kind], dtype=np.int64)
        self.rank = np.maximum(rank[self.src], rank[self.dst])
        self.is_type = [kind == t for t in self.limited]
        self.bounds = np.array([conf.limits[t] for t in self.limited], dtype=np.int64)

    def merge(self, labels: np.ndarray) -> tuple[np.ndarray, int]:
        """Rounds of mutual best proposals that keep every limit; (labels, rounds run)."""
        rounds = 0
        while rounds < self.conf.max_weak_rounds:
            rounds += 1
            counts = self._counts(labels)
            a, b = labels[self.src], labels[self.dst]
            across = a != b
            c1 = np.minimum(a, b)[across]
            c2 = np.maximum(a, b)[across]
            rank = self.rank[across]
            c1, c2, rank = _first_per_pair(c1, c2, rank)
            fits = np.all(counts[c1] + counts[c2] <= self.bounds, axis=1)
            c1, c2, rank = c1[fits], c2[fits], rank[fits]
            comp = np.concatenate([c1, c2])
            partner = np.concatenate([c2, c1])
            both_ranks = np.concatenate([rank, rank])
            order = np.lexsort((partner, both_ranks, comp))
            comp, partner = comp[order], partner[order]
            first = _group_starts(comp)
            best = np.full(len(labels), -1)
            best[comp[first]] = partner[first]
            proposers = comp[first]
            chosen = best[proposers]
            mutual = (best[chosen] == proposers) & (proposers > chosen)
            if not mutual.any():
                break
            into = np.arange(len(labels))
            into[proposers[mutual]] = chosen[mutual]
            labels = into[labels]
        return labels, rounds

    def rejected(self, labels: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
        """(src, dst, reason) of the weak edges still between two components: a cut edge with
        its cut, another with the first limit (by name) it breaks; ``ids`` turns vertex positions
        back into node ids. A cut edge inside one component after all lost nothing."""
        counts = self._counts(labels)
        a, b = labels[self.src], labels[self.dst]
        index = np.flatnonzero(a != b)
        over = counts[a[index]] + counts[b[index]] > self.bounds
        reason = np.full(len(index), "limit:rounds", dtype=object)
        for column in reversed(range(len(self.limited))):
            reason[over[:, column]] = f"limit:{self.limited[column]}"
        cut_src, cut_dst, cut_reason = self.cut
        apart = labels[cut_src] != labels[cut_dst]
        return pd.DataFrame(
            {
                "src": ids[np.concatenate([self.src[index], cut_src[apart]])],
                "dst": ids[np.concatenate([self.dst[index], cut_dst[apart]])],
                "reason": np.concatenate([reason, cut_reason[apart]]),
            }
        )

    def _counts(self, labels: np.ndarray) -> np.ndarray:
        """(vertices × limited types): identifiers of each type per component label."""
        counts = np.zeros((len(labels), len(self.limited)), dtype=np.int64)
        for column, is_type in enumerate(self.is_type):
            counts[:, column] = np.bincount(labels[is_type], minlength=len(labels))
        return counts


def _first_per_pair(c1, c2, rank):
    """Distinct (c1, c2) with their smallest rank."""
    order = np.lexsort((rank, c2, c1))
    c1, c2, rank = c1[order], c2[order], rank[order]
    first = _group_starts(c1, c2)
    return c1[first], c2[first], rank[first]


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """In arrays sorted by ``keys``, where each run of equal keys starts."""
    first = np.ones(len(keys[0]), dtype=bool)
    for key in keys:
        first[1:] &= key[1:] == key[:-1]
    first[1:] = ~first[1:]
    return first


def assign(
    ids: np.ndarray, components: np.ndarray, previous: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Which OneID each component of (``ids``, their ``components``) keeps: (mapping, fresh
    components, lineage), as :class:`Part` describes them; fresh ones are not numbered here."""
    labels = pd.DataFrame({"node_id": ids, "component": components})
    joined = labels.merge(previous, on="node_id", how="inner")
    overlap = joined.groupby(["oneid", "component"], as_index=False).size()
    overlap = overlap.rename(columns={"size": "shared"})
    keepers = overlap.sort_values(
        ["oneid", "shared", "component"], ascending=[True, False, True]
    ).drop_duplicates("oneid")
    inherited = keepers.groupby("component")["oneid"].min()
    decided = pd.DataFrame({"component": np.unique(components)})
    decided["oneid"] = decided["component"].map(inherited).astype("Int64")
    is_fresh = decided["oneid"].isna().to_numpy()
    had_ids = decided["component"].isin(overlap["component"]).to_numpy()
    mapping = labels.merge(decided, on="component")

    sizes = labels.groupby("component").size()
    new = decided[is_fresh & ~had_ids]["component"]
    split = decided[is_fresh & had_ids][["component"]].merge(overlap, on="component")
    merged = keepers.merge(decided, on="component", suffixes=("", "_kept"))
    merged = merged[merged["oneid"] != merged["oneid_kept"]]
    retired = np.setdiff1d(previous["oneid"].unique(), keepers["oneid"].to_numpy())
    parts = [
        _changes("new", None, None, new, new.map(sizes)),
        _changes("split", split["oneid"], None, split["component"], split["shared"]),
        _changes("merge", merged["oneid"], merged["oneid_kept"], None, merged["shared"]),
        _changes("retire", retired, None, None, np.zeros(len(retired), dtype=np.int64)),
    ]
    fresh = decided["component"].to_numpy()[is_fresh]
    return mapping, fresh, pd.concat(parts, ignore_index=True)


def _changes(kind: str, source, target, component, identifiers) -> pd.DataFrame:
    n = len(identifiers)

    def ids(values) -> pd.Series:
        if values is None:
            return pd.Series([None] * n, dtype="Int64")
        return pd.Series(np.asarray(values, dtype=np.int64), dtype="Int64")

    return pd.DataFrame(
        {
            "kind": [kind] * n,
            "from_oneid": ids(source),
            "to_oneid": ids(target),
            "to_component": ids(component),
            "identifiers": np.asarray(identifiers, dtype=np.int64),
        }
    )


def mint(part: Part, minted: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mapping (node_id, oneid), changes) of a whole scope: fresh components numbered
    ``minted + 1, …`` in ascending component order."""

    def numbered(oneid: pd.Series, component: pd.Series) -> pd.Series:
        fresh = (oneid.isna() & component.notna()).to_numpy()
        values = oneid.to_numpy(dtype=np.int64, na_value=0)
        keys = component.to_numpy(dtype=np.int64, na_value=0)[fresh]
        values[fresh] = minted + 1 + np.searchsorted(part.fresh, keys)
        return pd.Series(values, dtype="Int64").mask(oneid.isna().to_numpy() & ~fresh)

    mapping = pd.DataFrame(
        {
            "node_id": part.mapping["node_id"].to_numpy(),
            "oneid": numbered(part.mapping["oneid"], part.mapping["component"]),
        }
    )
    changes = part.changes.assign(
        to_oneid=numbered(part.changes["to_oneid"], part.changes["to_component"]).to_numpy()
    )
    return mapping, changes[["kind", "from_oneid", "to_oneid", "identifiers"]]


def _positions(ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """Index of each value in the sorted ``ids``; every value must be there."""
    found = np.searchsorted(ids, values)
    found[found == len(ids)] = 0
    if len(values) and not np.array_equal(ids[found], values):
        raise ValueError(f"resolution: a {what} is not among the vertices")
    return found


# -- the small scope: on the driver --------------------------------------------------------------


def _on_driver(spark, conf, vertices, inside, nodes, previous, minted) -> Resolution:
    ids = np.sort(vertices.select("node_id").toArrow()["node_id"].to_numpy())
    edges = inside.select("src", "dst", "strength").toArrow()
    typed = nodes.select("node_id", base_type().alias("t")).join(
        vertices.select("node_id"), "node_id", "left_semi"
    )
    types = typed.toArrow()
    kinds = np.empty(len(ids), dtype=object)
    where = _positions(ids, types["node_id"].to_numpy(), "typed node")
    kinds[where] = types["t"].to_numpy(zero_copy_only=False)
    old = _no_previous() if previous is None else previous.select("node_id", "oneid")
    if not isinstance(old, pd.DataFrame):
        old = old.toArrow().to_pandas()
    part = resolve_part(
        ids,
        kinds,
        edges["src"].to_numpy(),
        edges["dst"].to_numpy(),
        pc.equal(edges["strength"], "strong").to_numpy(zero_copy_only=False),
        old,
        conf,
    )
    mapping, changes = mint(part, minted)
    return Resolution(
        materialize(_frame(spark, mapping, MAPPING_SCHEMA)),
        _frame(spark, changes, CHANGES_SCHEMA),
        _frame(spark, part.rejected, REJECTED_SCHEMA),
        part.rounds,
        0,
        "driver",
    )


def _no_previous() -> pd.DataFrame:
    return pd.DataFrame({"node_id": [], "oneid": []}, dtype="int64")


def _frame(spark: SparkSession, data: pd.DataFrame, schema: pa.Schema) -> DataFrame:
    table = pa.Table.from_pandas(data, schema=schema, preserve_index=False)
    return spark.createDataFrame(table)


def _empty(spark: SparkSession, previous: DataFrame | None) -> Resolution:
    """No usable identifier: every previous OneID retires."""
    changes = spark.createDataFrame(
        [], "kind string, from_oneid long, to_oneid long, identifiers long"
    )
    if previous is not None:
        changes = (
            previous.select("oneid")
            .distinct()
            .select(
                F.lit("retire").alias("kind"),
                F.col("oneid").alias("from_oneid"),
                F.lit(None).cast("long").alias("to_oneid"),
                F.lit(0).cast("long").alias("identifiers"),
            )
        )
    return Resolution(
        spark.createDataFrame([], "node_id long, oneid long"),
        changes,
        spark.createDataFrame([], "src long, dst long, reason string"),
        0,
        0,
        "none",
    )


# -- the large scope: pieces, resolved in buckets by Spark ---------------------------------------


def _in_pieces(spark, conf, usable: Keys, inside, nodes, previous, minted) -> Resolution:
    if previous is None:
        previous = spark.createDataFrame([], "node_id long, oneid long")
    previous = previous.select("node_id", "oneid")
    pieces = _pieces(spark, conf, usable, inside, previous)
    buckets = max(spark.sparkContext.defaultParallelism, math.ceil(usable.size / PIECE_ROWS))
    bucket = F.pmod(F.xxhash64("component"), F.lit(buckets)).alias("bucket")
    piece_of = pieces.components.select(F.col("id").alias("node_id"), bucket)
    typed = nodes.select("node_id", base_type().alias("type"))
    vertices = usable.frame.join(typed, "node_id", "left").join(piece_of, "node_id")
    edges = inside.join(piece_of.withColumnRenamed("node_id", "src"), "src")
    rows = (
        _input_rows(vertices, "vertex", node_id="node_id", type="type")
        .unionByName(
            _input_rows(
                edges, "edge", node_id="src", dst="dst", strong=F.col("strength") == "strong"
            )
        )
        .unionByName(
            _input_rows(
                previous.join(piece_of, "node_id"), "previous", node_id="node_id", oneid="oneid"
            )
        )
    )

    def resolve_bucket(frame: pd.DataFrame) -> pd.DataFrame:
        return part_rows(frame, conf)

    out = materialize(rows.groupBy("bucket").applyInPandas(resolve_bucket, PART_OUTPUT))
    fresh = out.where(F.col("row") == "fresh").select("component")
    numbered = fresh.select(
        "component",
        (F.row_number().over(Window.orderBy("component")) + F.lit(minted)).alias("minted"),
    )
    mapping = (
        out.where(F.col("row") == "mapping")
        .join(numbered, "component", "left")
        .select("node_id", F.coalesce("oneid", "minted").alias("oneid"))
    )
    changes = (
        out.where(F.col("row") == "change")
        .join(numbered, "component", "left")
        .select(
            "kind",
            F.col("oneid").alias("from_oneid"),
            F.coalesce("to_oneid", "minted").alias("to_oneid"),
            "identifiers",
        )
    )
    rejected = out.where(F.col("row") == "rejected").select(
        F.col("node_id").alias("src"), "dst", F.col("kind").alias("reason")
    )
    rounds = out.where(F.col("row") == "rounds").agg(F.max("identifiers")).first()[0]
    return Resolution(
        materialize(mapping),
        changes,
        rejected,
        int(rounds or 0),
        pieces.rounds,
        f"{pieces.engine}+pieces",
    )


def _input_rows(frame: DataFrame, row: str, **columns: str | Column) -> DataFrame:
    """``frame`` (with ``bucket``) as :data:`PART_INPUT` rows of kind ``row``: the named
    ``columns``, every other column null."""
    kinds = dict(field.split() for field in PART_INPUT.split(", "))
    picked = {name: F.col(c) if isinstance(c, str) else c for name, c in columns.items()}
    return frame.select(
        "bucket",
        F.lit(row).alias("row"),
        *(
            picked.get(name, F.lit(None).cast(kind)).alias(name)
            for name, kind in kinds.items()
            if name not in ("bucket", "row")
        ),
    )


def _pieces(spark, conf, usable: Keys, inside: DataFrame, previous: DataFrame):
    """Connected components (``id``, ``component``: the piece) over the usable and previous
    nodes, every usable edge and a link from each previous node to its OneID's smallest node."""
    vertices = usable.frame.select(F.col("node_id").alias("id")).unionByName(
        previous.select(F.col("node_id").alias("id"))
    )
    smallest = previous.groupBy("oneid").agg(F.min("node_id").alias("dst"))
    links = previous.join(smallest, "oneid").select(F.col("node_id").alias("src"), "dst")
    edges = inside.select("src", "dst").unionByName(links)
    return connected_components(spark, vertices, edges, conf.components)


def part_rows(frame: pd.DataFrame, conf: IdentityConf) -> pd.DataFrame:
    """One part given as :data:`PART_INPUT` rows, resolved into :data:`PART_OUTPUT` rows."""
    vertex = frame[frame["row"] == "vertex"]
    edge = frame[frame["row"] == "edge"]
    old = frame[frame["row"] == "previous"]
    part = resolve_part(
        vertex["node_id"].to_numpy(dtype=np.int64),
        vertex["type"].to_numpy(dtype=object),
        edge["node_id"].to_numpy(dtype=np.int64),
        edge["dst"].to_numpy(dtype=np.int64),
        edge["strong"].to_numpy(dtype=bool),
        pd.DataFrame(
            {
                "node_id": old["node_id"].to_numpy(dtype=np.int64),
                "oneid": old["oneid"].to_numpy(dtype=np.int64),
            }
        ),
        conf,
    )
    changes, rejected = part.changes, part.rejected
    blocks = [
        _block(
            "mapping",
            node_id=part.mapping["node_id"],
            component=part.mapping["component"],
            oneid=part.mapping["oneid"],
        ),
        _block("fresh", component=part.fresh),
        _block(
            "change",
            kind=changes["kind"],
            oneid=changes["from_oneid"],
            to_oneid=changes["to_oneid"],
            component=changes["to_component"],
            identifiers=changes["identifiers"],
        ),
        _block("rejected", node_id=rejected["src"], dst=rejected["dst"], kind=rejected["reason"]),
        _block("rounds", identifiers=[part.rounds]),
    ]
    return pd.concat(blocks, ignore_index=True)


OUTPUT_NUMBERS = ("node_id", "component", "oneid", "to_oneid", "dst", "identifiers")


def _block(row: str, kind=None, **numbers) -> pd.DataFrame:
    """:data:`PART_OUTPUT` rows of one ``row`` kind; columns not given are null."""
    n = len(next(iter(numbers.values())))
    out = {"row": np.full(n, row, dtype=object)}
    for name in OUTPUT_NUMBERS:
        values = numbers.get(name)
        out[name] = pd.array([None] * n if values is None else values, dtype="Int64")
    out["kind"] = np.full(n, None, dtype=object) if kind is None else np.asarray(kind, dtype=object)
    return pd.DataFrame(out)
