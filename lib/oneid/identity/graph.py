"""The identifier graph: an append-only Long id dictionary, record incidence, and edges."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from oneid.identity.keys import BROADCAST_ROWS

NODE_KEY = ["id_type", "value_hash"]
NODE_BITS = 48
"""Node ids stay below 2**48 (dense from 1): a record's choice packs (rank, node_id) in a long."""
RECORD_KEY = ["source", "record_key"]
INCIDENCE_COLUMNS = (
    "source",
    "record_key",
    "node_id",
    "id_type",
    "strength",
    "event_time",
    "row_hash",
)
EDGE_SEEN = ("first_seen", "last_seen", "records")
"""An edge's lineage: when its records first and last held the pair, and how many did."""


def base_type(id_type_col: str = "id_type") -> Column:
    """``wx_openid:app`` -> ``wx_openid``; ``device:idfa`` -> ``device``.

    ``substring_index`` slices the bytes; ``split`` would decode every value to a Java string
    and split that (it runs on every incidence row and every pair of a record's identifiers).
    """
    return F.substring_index(F.col(id_type_col), ":", 1)


def row_hash() -> Column:
    """Hash of what identity reads from one silver.identifiers row (its change detector)."""
    return F.xxhash64("id_type", "value_hash", "strength", "event_time")


def new_nodes(
    identifiers: DataFrame, nodes: DataFrame | None, run_id: str, rows: int | None = None
) -> tuple[DataFrame, int]:
    """Identifiers not yet in the dictionary, numbered after the largest existing id (returned
    with them: the new ids are ``start + 1 ...``).

    Ids follow first-seen order (event time, then type and hash), so they are deterministic.
    ``rows``: the rows of ``identifiers`` when known (when they are few, as the changed records'
    are, they are looked up in the dictionary, not the dictionary shuffled against them).
    """
    # masked is a function of the identifier: grouping by it as well keeps the buffer of the
    # aggregation over every row fixed-width (a hash aggregation; a string in the buffer makes
    # it a sort of every row), and the second grouping, over one row per identifier and form,
    # keeps one form should two ever meet
    forms = identifiers.groupBy(*NODE_KEY, "masked").agg(F.min("event_time").alias("first_seen"))
    seen = forms.groupBy(*NODE_KEY).agg(
        F.max("masked").alias("masked"), F.min("first_seen").alias("first_seen")
    )
    start = 0
    if nodes is not None:
        known = nodes.select(*NODE_KEY)
        if rows is not None and rows <= BROADCAST_ROWS:
            known = known.join(F.broadcast(seen.select(*NODE_KEY)), NODE_KEY, "left_semi")
        seen = seen.join(known, NODE_KEY, "left_anti")
        start = nodes.agg(F.coalesce(F.max("node_id"), F.lit(0))).first()[0]
    order = Window.orderBy(F.col("first_seen").asc_nulls_last(), *NODE_KEY)
    added = seen.select(
        (F.row_number().over(order) + F.lit(start)).cast("long").alias("node_id"),
        *NODE_KEY,
        "masked",
        "first_seen",
        F.lit(run_id).alias("first_run"),
    )
    return added, start


def record_nodes(identifiers: DataFrame, nodes: DataFrame) -> DataFrame:
    """Which record holds what: the ``identity.incidence`` columns, one row per silver row."""
    return identifiers.join(nodes.select("node_id", *NODE_KEY), NODE_KEY).select(
        *INCIDENCE_COLUMNS[:-1], row_hash().alias("row_hash")
    )


HELD = "held"
"""The column of :func:`record_groups` holding a record's incidence rows."""


def record_groups(incidence: DataFrame) -> DataFrame:
    """One row per record: its key and ``held``, an array of its incidence rows (every column
    but the key: node_id, id_type, strength, event_time, row_hash; :func:`held_rows` gives the
    rows back). Hubs and edges both read a record's rows together: grouped once, neither joins
    incidence with itself. A full run groups the rows as it looks them up in the dictionary and
    keeps no other copy of them."""
    rows = F.struct(*(name for name in incidence.columns if name not in RECORD_KEY))
    # sorted by record first: Spark then builds the arrays in one pass over one sort (the
    # session's replaceHashWithSortAgg), where its object aggregation sorts every row before
    # the shuffle and again after it (0.7x the time at 5M)
    by_record = incidence.repartition(*RECORD_KEY).sortWithinPartitions(*RECORD_KEY)
    return by_record.groupBy(*RECORD_KEY).agg(F.collect_list(rows).alias(HELD))


def held_rows(groups: DataFrame) -> DataFrame:
    """The incidence rows :func:`record_groups` grouped (its record key and the fields of
    ``held``), one per row held, in the partitions of ``groups``: a grouping of them by record
    needs no shuffle when ``groups`` keeps its partitioning (a checkpoint of it made with
    ``aggregated(..., partitioned=True)``)."""
    each = groups.select(*RECORD_KEY, F.explode(HELD).alias("_row"))
    return each.select(*RECORD_KEY, "_row.*")


def held_nodes(groups: DataFrame) -> DataFrame:
    """The node_id of every row held in :func:`record_groups` (not distinct)."""
    return groups.select(F.explode(f"{HELD}.node_id").alias("node_id"))


def record_pairs(
    groups: DataFrame, sources: Sequence[str], scope: DataFrame | None = None
) -> DataFrame:
    """Every pair of nodes seen in one record (src < dst), hubs included, aggregated: the ends'
    types, strength, sources and lineage. Hubs count their member ids on it and the edges are
    the pairs without a hub end (:func:`edges`): a record's nodes are paired once for both.

    ``groups``: :func:`record_groups`; ``sources``: every source of its records (a source not
    among them stops the job). A pair is strong when both ends are strong identifiers in at
    least one record. With ``scope`` (distinct node_id), only pairs with an end in it;
    ``groups`` must then hold every record of the scope's nodes.
    """
    # two explodes and a filter rather than the arrays' higher-order functions: Spark 4.1 has no
    # generated code for those, and one in a stage turns it off for the stage's other operators
    each = groups.select("source", HELD, F.explode(HELD).alias("a"))
    pairs = each.select("source", "a", F.explode(HELD).alias("b"))
    pairs = pairs.where(F.col("a.node_id") < F.col("b.node_id"))
    if scope is not None:  # a pair is kept when either end is in scope
        inside = F.lit(False)
        for end in ("a", "b"):
            flag = scope.select(F.col("node_id").alias(f"_{end}"), F.lit(True).alias(f"_in_{end}"))
            pairs = pairs.join(flag, F.col(f"{end}.node_id") == F.col(f"_{end}"), "left")
            inside = inside | F.coalesce(F.col(f"_in_{end}"), F.lit(False))
        pairs = pairs.where(inside)
    strong = (F.col("a.strength") == "strong") & (F.col("b.strength") == "strong")
    names = SourceSet(sources)
    # a node's type is a function of the node: grouped with it, not aggregated
    ends = (
        F.col("a.node_id").alias("src"),
        F.col("b.node_id").alias("dst"),
        F.col("a.id_type").alias("src_type"),
        F.col("b.id_type").alias("dst_type"),
    )
    by_pair = pairs.groupBy(*ends).agg(
        F.when(F.max(strong.cast("int")) == 1, "strong").otherwise("weak").alias("strength"),
        *names.aggregates(),
        F.min(F.least("a.event_time", "b.event_time")).alias("first_seen"),
        F.max(F.greatest("a.event_time", "b.event_time")).alias("last_seen"),
        F.count(F.lit(1)).alias("records"),
    )
    return by_pair.select(
        "src", "dst", "src_type", "dst_type", "strength", names.names().alias("sources"), *EDGE_SEEN
    )


def edges(pairs: DataFrame, hubs: DataFrame) -> DataFrame:
    """The ``identity.edges`` rows: the pairs of :func:`record_pairs` with no end in ``hubs``
    (distinct node_id)."""
    for end in ("src", "dst"):
        pairs = pairs.join(hubs.withColumnRenamed("node_id", end), end, "left_anti")
    return pairs.select("src", "dst", "strength", "sources", *EDGE_SEEN)


class SourceSet:
    """The set of sources a group of rows came from, aggregated as bits of longs.

    A set of strings in an aggregation's buffer (``collect_set``) makes Spark sort every row;
    longs keep it a hash aggregation. Source ``i`` of ``sources`` (sorted) is bit ``i % 63`` of
    word ``i // 63``; a row of a source not among them stops the job.
    """

    WORD = 63

    def __init__(self, sources: Sequence[str]):
        self.sources = tuple(sorted(set(sources)))

    def aggregates(self, column: str = "source") -> list[Column]:
        """``bit_or`` of each word over a group's rows (columns ``_sources_<word>``)."""
        source = F.col(column)
        known = source.isin(*self.sources)
        unknown = F.raise_error(F.concat(F.lit("identity: no bit for source "), source))
        words = []
        for word in range(0, len(self.sources), self.WORD):
            # the first word's default stops a row of a source not among them
            bit = F.when(known, F.lit(0)).otherwise(unknown) if word == 0 else F.lit(0)
            for offset, name in enumerate(self.sources[word : word + self.WORD]):
                bit = F.when(source == name, F.lit(1 << offset)).otherwise(bit)
            words.append(F.bit_or(bit.cast("long")).alias(f"_sources_{word // self.WORD}"))
        return words

    def names(self) -> Column:
        """The sorted names of the sources in the aggregated words."""
        names = []
        for index, name in enumerate(self.sources):
            word, offset = divmod(index, self.WORD)
            bit = F.col(f"_sources_{word}").bitwiseAND(F.lit(1 << offset))
            names.append(F.when(bit != 0, F.lit(name)))
        # array_except drops the NULLs and keeps the order (with generated code, where a
        # higher-order filter would turn it off for the stage)
        none = F.array(F.lit(None).cast("string"))
        return F.array_except(F.array(*names).cast("array<string>"), none)


def touching(graph_edges: DataFrame, ids: DataFrame) -> DataFrame:
    """Edges with at least one end in ``ids`` (distinct node_id), each once."""
    as_src = ids.withColumnRenamed("node_id", "src")
    by_src = graph_edges.join(as_src, "src", "left_semi")
    by_dst = graph_edges.join(ids.withColumnRenamed("node_id", "dst"), "dst", "left_semi")
    return by_src.unionByName(by_dst.join(as_src, "src", "left_anti"))
