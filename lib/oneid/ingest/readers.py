"""Read one declared source into a uniform raw frame.

Every reader returns the canonical fields as *raw strings* (nothing parsed yet) plus:
``_extra`` (map of columns the conf does not know: schema drift), ``_file``, ``_raw`` (the raw
line or record, for quarantine), ``_malformed`` (the line did not even split into fields),
``_type_changed`` (a typed source column changed type since the first batch, else NULL) and
``_problem`` (what the reader found wrong with the file or line, else NULL: ``empty_file``,
``duplicate_header:<names>``, ``bad_encoding``, ``json_trailing_data``).

A CSV file that cannot be read as a table at all (empty, a column name twice, a header not in
the declared encoding) becomes one row: its path in ``_file``, its problem, every field NULL.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import logging
import os
from collections import defaultdict

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from oneid.conf.pipeline import SourceConf
from oneid.errors import ConfigError, SecretMissingError
from oneid.tables import union_all

logger = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
LINEAGE = ("_extra", "_file", "_raw", "_malformed", "_type_changed", "_problem")
REPLACEMENT = "\ufffd"
"""What a decoder puts where bytes are not valid in the declared encoding."""
HEAD_BYTES = 65536
JSON_SAMPLE_LINES = 1000
"""Lines of a JSON source whose keys are compared with the declared columns (typos)."""
CSV_QUOTING = {
    "rfc4180": {"quote": '"', "escape": '"', "multiLine": "true"},
    "backslash": {"quote": '"', "escape": "\\"},
}
"""Spark reader options per ``quoting``; RFC 4180 needs multiLine for newlines in quotes."""


def list_files(spark: SparkSession, path: str) -> dict[str, str]:
    """Data files under ``path`` (a file, folder or glob), on any Hadoop file system, sorted,
    each with its stamp (``<bytes>:<modified ms>``: another stamp later, another file).

    Raises FileNotFoundError when the path (or the folder a glob starts from) does not exist.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(conf)
    statuses = fs.globStatus(hpath)
    if statuses is None or (not statuses and not fs.exists(_glob_root(hpath))):
        raise FileNotFoundError(path)
    files: dict[str, str] = {}
    for status in statuses:
        if status.isDirectory():
            iterator = fs.listFiles(status.getPath(), True)
            while iterator.hasNext():
                found = iterator.next()
                files[found.getPath().toString()] = _stamp(found)
        else:
            files[status.getPath().toString()] = _stamp(status)
    hidden = ("_", ".")
    return {f: files[f] for f in sorted(files) if not f.rsplit("/", 1)[-1].startswith(hidden)}


def _stamp(status) -> str:  # a py4j FileStatus
    return f"{status.getLen()}:{status.getModificationTime()}"


def _glob_root(hpath):  # a py4j Path
    """The deepest folder of a glob path that has no wildcard in it."""
    root = hpath
    while root.getParent() is not None and any(c in root.toUri().getPath() for c in "*?[{"):
        root = root.getParent()
    return root


def read_source(
    spark: SparkSession,
    name: str,
    source: SourceConf,
    files: list[str],
    known_types: dict[str, str] | None = None,
) -> DataFrame:
    """Raw frame of ``files`` (ignored for jdbc / delta tables) in the uniform layout."""
    if source.format == "csv":
        return _read_csv(spark, name, source, files)
    if source.format == "json":
        _check_json_keys(spark, name, source, files)
        return _read_json_lines(spark, source, files)
    if source.format == "parquet":
        frame = spark.read.options(**source.options).parquet(*files)
        _require_declared(name, source, frame.columns, files[0] if files else str(source.path))
        return _from_typed(frame, source, known_types or {}, F.col("_metadata.file_path"))
    if source.format == "delta":
        frame = spark.read.format("delta").options(**source.options).load(source.path or "")
        _require_declared(name, source, frame.columns, str(source.path))
        return _from_typed(frame, source, known_types or {}, F.lit(source.path))
    if source.format == "jdbc":
        options = resolve_secret_options(name, source.options)
        frame = spark.read.format("jdbc").options(dbtable=source.table, **options).load()
        _require_declared(name, source, frame.columns, f"table {source.table}")
        return _from_typed(frame, source, known_types or {}, F.lit(f"jdbc:{source.table}"))
    raise ConfigError(f"sources.{name}.format: unsupported {source.format!r}")


def resolve_secret_options(name: str, options: dict[str, str]) -> dict[str, str]:
    """Reader options whose value is ``env:VAR`` take it from the environment (passwords)."""
    resolved = {}
    for key, value in options.items():
        if value.startswith("env:"):
            variable = value[4:]
            if variable not in os.environ:
                raise SecretMissingError(
                    f"sources.{name}.options.{key}: environment variable {variable} is not set"
                )
            resolved[key] = os.environ[variable]
        else:
            resolved[key] = value
    return resolved


def source_types(frame: DataFrame, source: SourceConf) -> dict[str, str]:
    """Spark types of the mapped columns of a typed source (for drift detection)."""
    present = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    return {raw: present[raw] for raw in source.columns if raw in present}


def _missing_column(
    name: str, source: SourceConf, raw: str, present: list[str], where: str
) -> ConfigError:
    """The error of a declared column ``raw`` that ``where`` does not have, naming the closest
    column it has that no mapping takes (the likely typo) or else all of them."""
    declared = {column.casefold() for column in source.columns}
    spare = [column for column in present if column.casefold() not in declared]
    closest = _closest(raw, spare)
    hint = f"did you mean {closest!r}?" if closest else f"its columns are {present}"
    return ConfigError(
        f"sources.{name}.columns.{raw}: {where} has no column {raw!r} ({hint}); "
        "map the column by its name in the file"
    )


def _closest(raw: str, candidates: list[str]) -> str | None:
    """The candidate most like ``raw`` ignoring case, if one is close enough to be a typo."""
    folded = {candidate.casefold(): candidate for candidate in candidates}
    match = difflib.get_close_matches(raw.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def _require_declared(name: str, source: SourceConf, present: list[str], where: str) -> None:
    """Every declared column is in ``present`` (ignoring case, as Spark does), or ConfigError."""
    have = {column.casefold() for column in present}
    for raw in source.columns:
        if raw.casefold() not in have:
            raise _missing_column(name, source, raw, present, where)


def _check_json_keys(spark: SparkSession, name: str, source: SourceConf, files: list[str]) -> None:
    """A declared key that a sample of the lines never holds, while a key close to it that no
    mapping takes is there, is a typo: ConfigError. (JSON lines may leave out empty keys, so a
    key merely absent from the sample is not an error.)"""
    if not files:
        return
    seen: dict[str, None] = {}
    for row in spark.read.text(files).limit(JSON_SAMPLE_LINES).collect():
        try:
            record = json.loads(row.value)
        except ValueError:
            continue  # quarantined as malformed_row by the reader
        if isinstance(record, dict):
            seen.update(dict.fromkeys(record))
    keys = list(seen)
    spare = [key for key in keys if key not in source.columns]
    for raw in source.columns:
        if raw not in seen and _closest(raw, spare):
            raise _missing_column(name, source, raw, keys, f"{files[0]} (first lines)")


def _canonical(raw_columns: list[str], source: SourceConf, value_of) -> list[Column]:
    """Canonical string columns in conf order, input columns matched ignoring case (as Spark
    resolves them); a declared column absent from the input is NULL (JSON keys may be left out:
    the other formats check their columns first)."""
    actual = {column.casefold(): column for column in raw_columns}
    cols = []
    for raw, column in source.columns.items():
        found = actual.get(raw.casefold())
        expr = value_of(found) if found is not None else F.lit(None).cast("string")
        cols.append(expr.alias(column.field))
    return cols


def _extras(raw_columns: list[str], source: SourceConf, value_of) -> Column:
    declared = {column.casefold() for column in source.columns}
    unknown = [c for c in raw_columns if c.casefold() not in declared and c != CORRUPT]
    if not unknown:
        return F.create_map().cast("map<string,string>")
    pairs: list[Column] = []
    for col in unknown:
        pairs += [F.lit(col), value_of(col)]
    # drop entries whose value is NULL so an empty new column does not count as drift
    return F.map_filter(F.create_map(*pairs), lambda _k, v: v.isNotNull())


def _read_csv(spark: SparkSession, name: str, source: SourceConf, files: list[str]) -> DataFrame:
    """CSV, all columns as strings; files are grouped by header so drift is seen per file, and
    a file that is not a table is one ``_problem`` row instead of failing the batch."""
    options = {
        "header": "true",
        "encoding": source.encoding,
        "mode": "PERMISSIVE",
        **CSV_QUOTING[source.quoting],
        **source.options,
    }
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    broken: list[tuple[str, str]] = []
    for path in files:
        header, problem = _csv_header(spark, path, source, options)
        if problem:
            logger.warning("%s: quarantined as a file (%s)", path, problem)
            broken.append((path, problem))
        else:
            groups[header].append(path)
    for header, paths in sorted(groups.items()):
        _require_declared(name, source, list(header), paths[0])
    frames = [
        _csv_frame(spark, source, options, header, paths)
        for header, paths in sorted(groups.items())
    ]
    if broken:
        frames.append(_file_rows(spark, source, broken))
    return union_all(frames)


def _csv_frame(
    spark: SparkSession,
    source: SourceConf,
    options: dict[str, str],
    header: tuple[str, ...],
    paths: list[str],
) -> DataFrame:
    """The files of one header in the uniform layout; a row holding U+FFFD is ``bad_encoding``."""
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*header, CORRUPT]])
    frame = (
        spark.read.options(**options)
        .option("columnNameOfCorruptRecord", CORRUPT)
        .option("enforceSchema", "true")
        .schema(schema)
        .csv(paths)
    )
    columns = list(header)

    def value(raw: str) -> Column:
        return F.col(f"`{raw}`")

    text = F.concat_ws("\u0001", *[value(c) for c in columns], F.col(CORRUPT))
    return frame.select(
        *_canonical(columns, source, value),
        _extras(columns, source, value).alias("_extra"),
        F.col("_metadata.file_path").alias("_file"),
        F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[value(c) for c in columns]))).alias("_raw"),
        F.col(CORRUPT).isNotNull().alias("_malformed"),
        F.lit(None).cast("string").alias("_type_changed"),
        F.when(text.contains(REPLACEMENT), F.lit("bad_encoding")).alias("_problem"),
    )


def _file_rows(spark: SparkSession, source: SourceConf, broken: list[tuple[str, str]]) -> DataFrame:
    """One row per file that is not a table: its path and problem, every field NULL."""
    frame = spark.createDataFrame(broken, "_file string, _problem string")
    return frame.select(
        *_canonical([], source, None),
        F.create_map().cast("map<string,string>").alias("_extra"),
        "_file",
        F.lit(None).cast("string").alias("_raw"),
        F.lit(False).alias("_malformed"),
        F.lit(None).cast("string").alias("_type_changed"),
        "_problem",
    )


def _csv_header(
    spark: SparkSession, path: str, source: SourceConf, options: dict[str, str]
) -> tuple[tuple[str, ...], str | None]:
    """Column names from a file's first record (read on the driver, no Spark job per file), and
    why the file cannot be read as a table, if it cannot."""
    head = _head(spark, path)
    encoding = source.encoding.lower()
    codec = "utf-8-sig" if encoding in {"utf-8", "utf8"} else encoding
    if not head.strip():
        return (), "empty_file"
    if not _header_decodes(head, codec):
        return (), "bad_encoding"
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(head)
    quote = options.get("quote", '"')
    escape = options.get("escape", "\\")
    dialect = {
        "delimiter": options.get("sep", options.get("delimiter", ",")),
        "quotechar": quote,
        "doublequote": escape == quote,
        "escapechar": None if escape == quote else escape,
    }
    row = next(csv.reader(io.StringIO(text), **dialect), [])
    header = tuple(name.strip().lstrip("\ufeff") for name in row)
    if not any(header):
        return header, "empty_file"
    folded = [name.casefold() for name in header]  # Spark matches column names ignoring case
    repeated = sorted({name for name in header if folded.count(name.casefold()) > 1})
    if repeated:
        return header, f"duplicate_header:{','.join(repeated)}"
    return header, None


def _head(spark: SparkSession, path: str) -> bytes:
    """The first ``HEAD_BYTES`` bytes of a file, on any Hadoop file system."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    stream = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(hpath)
    try:
        bounded = jvm.org.apache.commons.io.input.BoundedInputStream(stream, HEAD_BYTES)
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(bounded))
    finally:
        stream.close()


def _header_decodes(head: bytes, codec: str) -> bool:
    """False when the first line of ``head`` is not valid in ``codec`` (a GBK file declared
    UTF-8); a character cut at the end of ``head`` is not an error."""
    try:
        codecs.getincrementaldecoder(codec)(errors="strict").decode(head)
    except UnicodeDecodeError as err:
        return "\n" in head[: err.start].decode(codec, "replace")
    return True


def _read_json_lines(spark: SparkSession, source: SourceConf, files: list[str]) -> DataFrame:
    """JSON lines read as text first, so a broken line keeps its raw text for quarantine.

    A line with bytes that are not UTF-8 is ``bad_encoding`` (its text keeps U+FFFD in their
    place, in quarantine only); a line with more after its JSON value (two objects glued
    together) is ``json_trailing_data``: Spark would read the first and drop the rest.
    """
    if source.encoding.lower().replace("-", "") not in {"utf8", "utf8sig"}:
        raise ConfigError(f"json sources must be UTF-8 (got encoding {source.encoding!r})")
    lines = (
        spark.read.text(files)
        .select(
            F.make_valid_utf8(F.col("value")).alias("value"),
            (~F.is_valid_utf8(F.col("value")) | F.col("value").contains(REPLACEMENT)).alias(
                "_bad_bytes"
            ),
            F.col("_metadata.file_path").alias("_file"),
        )
        .where(F.length(F.trim(F.col("value"))) > 0)
    )
    fields = list(source.columns)
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*fields, CORRUPT]])
    parsed = lines.select(
        "*",
        F.from_json(
            F.col("value"), schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
        ).alias("_j"),
        F.from_json(F.col("value"), T.MapType(T.StringType(), T.StringType())).alias("_m"),
    )
    malformed = F.col(f"_j.{CORRUPT}").isNotNull() | F.col("_m").isNull()
    # "[<line>]" parses only if the line holds exactly one JSON value
    single = F.from_json(F.concat(F.lit("["), F.col("value"), F.lit("]")), "array<string>")
    problem = F.when(F.col("_bad_bytes"), F.lit("bad_encoding")).when(
        ~malformed & single.isNull(), F.lit("json_trailing_data")
    )

    def value(raw: str) -> Column:
        return F.when(~malformed, F.col("_j")[raw])

    known = F.array(*[F.lit(c) for c in fields])
    extra = F.map_filter(
        F.coalesce(F.col("_m"), F.create_map().cast("map<string,string>")),
        lambda k, v: ~F.array_contains(known, k) & v.isNotNull(),
    )
    return parsed.select(
        *_canonical(fields, source, value),
        extra.alias("_extra"),
        F.col("_file"),
        F.col("value").alias("_raw"),
        malformed.alias("_malformed"),
        F.lit(None).cast("string").alias("_type_changed"),
        problem.alias("_problem"),
    )


def _from_typed(
    frame: DataFrame, source: SourceConf, known_types: dict[str, str], file_col: Column
) -> DataFrame:
    """Parquet / Delta / JDBC: values cast to strings; a changed column type is flagged."""
    columns = frame.columns
    current = source_types(frame, source)
    changed = sorted(
        raw for raw, kind in current.items() if raw in known_types and known_types[raw] != kind
    )
    for raw in changed:
        logger.warning(
            "source column %r changed type %s -> %s", raw, known_types[raw], current[raw]
        )

    def value(raw: str) -> Column:
        dtype = frame.schema[raw].dataType
        col = F.col(f"`{raw}`")
        if isinstance(dtype, T.TimestampType):
            return F.date_format(col, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
        if isinstance(dtype, T.StringType):
            return col
        if isinstance(dtype, (T.ArrayType, T.MapType, T.StructType)):
            return F.to_json(col)
        return col.cast("string")

    type_changed = F.lit(f"type_changed:{','.join(changed)}") if changed else F.lit(None)
    return frame.select(
        *_canonical(columns, source, value),
        _extras(columns, source, value).alias("_extra"),
        file_col.alias("_file"),
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns])).alias("_raw"),
        F.lit(False).alias("_malformed"),
        type_changed.cast("string").alias("_type_changed"),
        F.lit(None).cast("string").alias("_problem"),
    )
