"""Resolution of a small scope on the driver: the Spark steps' exact results, without their jobs.

Strong components (:mod:`oneid.identity.components`), weak merges within the per-type limits
(:mod:`oneid.identity.limits`) and stable assignment (:mod:`oneid.identity.assign`) each take a
few Spark jobs per round; an incremental run of a 1% batch resolves a few thousand identifiers
with ~200 jobs. Up to ``identity.local_max_identifiers`` identifiers, the scope is collected once
(Arrow), resolved here with numpy and pandas, and handed back as three DataFrames. Every rule
is the same as in the Spark modules, tie-breaks included, and a test holds the two to equal
results on random graphs, so a run gives the same OneIDs whichever way it went.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from oneid.conf.pipeline import IdentityConf

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


@dataclass(frozen=True)
class LocalResolution:
    mapping: DataFrame
    """(node_id, oneid) of the vertices."""
    changes: DataFrame
    """(kind, from_oneid, to_oneid, identifiers): lineage, as :func:`assign_oneids` gives it."""
    rejected: DataFrame
    """(src, dst, reason): weak edges left unused."""
    weak_rounds: int


def resolve_locally(
    spark: SparkSession,
    vertices: DataFrame,
    inside: DataFrame,
    nodes: DataFrame,
    previous: DataFrame | None,
    minted: int,
    conf: IdentityConf,
) -> LocalResolution:
    """``vertices``: (node_id); ``inside``: (src, dst, strength) between vertices; ``nodes``:
    (node_id, id_type) covering the vertices; ``previous``: (node_id, oneid) or ``None``."""
    ids = np.sort(vertices.select("node_id").toArrow()["node_id"].to_numpy())
    edges = inside.select("src", "dst", "strength").toArrow()
    strong = pc.equal(edges["strength"], "strong").to_numpy(zero_copy_only=False)
    src = _positions(ids, edges["src"].to_numpy(), "edge end")
    dst = _positions(ids, edges["dst"].to_numpy(), "edge end")
    typed = nodes.select("node_id", F.split("id_type", ":").getItem(0).alias("t")).join(
        vertices.select("node_id"), "node_id", "left_semi"
    )
    types = typed.toArrow()
    kind = np.empty(len(ids), dtype=object)
    kind[_positions(ids, types["node_id"].to_numpy(), "typed node")] = types["t"].to_numpy(
        zero_copy_only=False
    )

    labels = min_labels(len(ids), src[strong], dst[strong])
    weak = WeakEdges(src[~strong], dst[~strong], kind, conf)
    labels, rounds = weak.merge(labels)
    old = None if previous is None else previous.select("node_id", "oneid").toArrow().to_pandas()
    mapping, changes = assign(ids, ids[labels], old, minted)
    return LocalResolution(
        _frame(spark, mapping, MAPPING_SCHEMA),
        _frame(spark, changes, CHANGES_SCHEMA),
        _frame(spark, weak.rejected(labels, ids), REJECTED_SCHEMA),
        rounds,
    )


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
    """The weak edges of the scope and the limits they must keep (as in :mod:`limits`)."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, kind: np.ndarray, conf: IdentityConf):
        self.src, self.dst = src, dst
        self.conf = conf
        self.limited = sorted(conf.limits)
        priority = {t: i for i, t in enumerate(conf.priority)}
        rank = np.array([priority.get(t, len(priority)) for t in kind], dtype=np.int64)
        self.rank = np.maximum(rank[src], rank[dst])
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
        """(src, dst, reason) of the weak edges still between two components, with the first
        limit (by name) they break; ``ids`` turns vertex positions back into node ids."""
        counts = self._counts(labels)
        a, b = labels[self.src], labels[self.dst]
        index = np.flatnonzero(a != b)
        over = counts[a[index]] + counts[b[index]] > self.bounds
        reason = np.full(len(index), "limit:rounds", dtype=object)
        for column in reversed(range(len(self.limited))):
            reason[over[:, column]] = f"limit:{self.limited[column]}"
        return pd.DataFrame(
            {"src": ids[self.src[index]], "dst": ids[self.dst[index]], "reason": reason}
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
    ids: np.ndarray, components: np.ndarray, previous: pd.DataFrame | None, minted: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stable OneIDs for (``ids``, their ``components``), as :func:`assign_oneids` decides them."""
    labels = pd.DataFrame({"node_id": ids, "component": components})
    if previous is None:
        previous = pd.DataFrame({"node_id": [], "oneid": []}, dtype="int64")
    joined = labels.merge(previous, on="node_id", how="inner")
    overlap = joined.groupby(["oneid", "component"], as_index=False).size()
    overlap = overlap.rename(columns={"size": "shared"})
    keepers = overlap.sort_values(
        ["oneid", "shared", "component"], ascending=[True, False, True]
    ).drop_duplicates("oneid")
    inherited = keepers.groupby("component")["oneid"].min()
    components_sorted = np.unique(components)
    decided = pd.DataFrame({"component": components_sorted})
    decided["inherited"] = decided["component"].map(inherited).astype("Int64")
    fresh = decided["inherited"].isna().to_numpy()
    oneid = decided["inherited"].to_numpy(dtype=np.int64, na_value=0)
    oneid[fresh] = minted + np.arange(1, fresh.sum() + 1)
    decided["oneid"] = oneid
    had_ids = decided["component"].isin(overlap["component"]).to_numpy()
    mapping = labels.merge(decided[["component", "oneid"]], on="component")[["node_id", "oneid"]]

    sizes = labels.groupby("component").size()
    new = decided[fresh & ~had_ids]
    split = decided[fresh & had_ids][["component", "oneid"]].merge(
        overlap, on="component", suffixes=("_new", "")
    )
    merged = keepers.merge(decided[["component", "inherited"]], on="component")
    merged = merged[merged["oneid"] != merged["inherited"]]
    retired = np.setdiff1d(previous["oneid"].unique(), keepers["oneid"].to_numpy())
    parts = [
        _changes("new", None, new["oneid"], new["component"].map(sizes)),
        _changes("split", split["oneid"], split["oneid_new"], split["shared"]),
        _changes("merge", merged["oneid"], merged["inherited"], merged["shared"]),
        _changes("retire", retired, None, np.zeros(len(retired), dtype=np.int64)),
    ]
    return mapping, pd.concat(parts, ignore_index=True)


def _changes(kind: str, source, target, identifiers) -> pd.DataFrame:
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
            "identifiers": np.asarray(identifiers, dtype=np.int64),
        }
    )


def _positions(ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """Index of each value in the sorted ``ids``; every value must be there."""
    found = np.searchsorted(ids, values)
    found[found == len(ids)] = 0
    if len(values) and not np.array_equal(ids[found], values):
        raise ValueError(f"local resolution: a {what} is not among the vertices")
    return found


def _frame(spark: SparkSession, data: pd.DataFrame, schema: pa.Schema) -> DataFrame:
    table = pa.Table.from_pandas(data, schema=schema, preserve_index=False)
    return spark.createDataFrame(table)
