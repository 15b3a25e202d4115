"""Read one declared source into a uniform raw frame.

Every reader returns the canonical fields as *raw strings* (nothing parsed yet) plus:
``_extra`` (map of columns the conf does not know: schema drift), ``_file``, ``_raw`` (the raw
line or record, for quarantine), ``_malformed`` (the line did not even split into fields) and
``_type_changed`` (a typed source column changed type since the first batch, else NULL).
"""

from __future__ import annotations

import csv
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
LINEAGE = ("_extra", "_file", "_raw", "_malformed", "_type_changed")


def list_files(spark: SparkSession, path: str) -> list[str]:
    """Data files under ``path`` (a file, folder or glob), on any Hadoop file system, sorted."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(conf)
    statuses = fs.globStatus(hpath) or []
    files: list[str] = []
    for status in statuses:
        if status.isDirectory():
            iterator = fs.listFiles(status.getPath(), True)
            while iterator.hasNext():
                files.append(iterator.next().getPath().toString())
        else:
            files.append(status.getPath().toString())
    hidden = ("_", ".")
    return sorted(f for f in files if not f.rsplit("/", 1)[-1].startswith(hidden))


def read_source(
    spark: SparkSession,
    name: str,
    source: SourceConf,
    files: list[str],
    known_types: dict[str, str] | None = None,
) -> DataFrame:
    """Raw frame of ``files`` (ignored for jdbc / delta tables) in the uniform layout."""
    if source.format == "csv":
        return _read_csv(spark, source, files)
    if source.format == "json":
        return _read_json_lines(spark, source, files)
    if source.format == "parquet":
        frame = spark.read.options(**source.options).parquet(*files)
        return _from_typed(frame, source, known_types or {}, F.col("_metadata.file_path"))
    if source.format == "delta":
        frame = spark.read.format("delta").options(**source.options).load(source.path or "")
        return _from_typed(frame, source, known_types or {}, F.lit(source.path))
    if source.format == "jdbc":
        options = resolve_secret_options(name, source.options)
        frame = spark.read.format("jdbc").options(dbtable=source.table, **options).load()
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


def _canonical(raw_columns: list[str], source: SourceConf, value_of) -> list[Column]:
    """Canonical string columns in conf order; columns absent from the input are NULL."""
    cols = []
    for raw, column in source.columns.items():
        expr = value_of(raw) if raw in raw_columns else F.lit(None).cast("string")
        cols.append(expr.alias(column.field))
    return cols


def _extras(raw_columns: list[str], source: SourceConf, value_of) -> Column:
    unknown = [c for c in raw_columns if c not in source.columns and c != CORRUPT]
    if not unknown:
        return F.create_map().cast("map<string,string>")
    pairs: list[Column] = []
    for col in unknown:
        pairs += [F.lit(col), value_of(col)]
    # drop entries whose value is NULL so an empty new column does not count as drift
    return F.map_filter(F.create_map(*pairs), lambda _k, v: v.isNotNull())


def _read_csv(spark: SparkSession, source: SourceConf, files: list[str]) -> DataFrame:
    """CSV, all columns as strings; files are grouped by header so drift is seen per file."""
    options = {
        "header": "true",
        "encoding": source.encoding,
        "mode": "PERMISSIVE",
        **source.options,
    }
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in files:
        groups[_csv_header(spark, path, source)].append(path)
    frames = []
    for header, paths in sorted(groups.items()):
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

        frames.append(
            frame.select(
                *_canonical(columns, source, value),
                _extras(columns, source, value).alias("_extra"),
                F.col("_metadata.file_path").alias("_file"),
                F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[value(c) for c in columns]))).alias(
                    "_raw"
                ),
                F.col(CORRUPT).isNotNull().alias("_malformed"),
                F.lit(None).cast("string").alias("_type_changed"),
            )
        )
    return union_all(frames)


def _csv_header(spark: SparkSession, path: str, source: SourceConf) -> tuple[str, ...]:
    """Column names from a file's first line, read on the driver (no Spark job per file)."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    stream = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(hpath)
    try:
        bounded = jvm.org.apache.commons.io.input.BoundedInputStream(stream, 65536)
        head = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(bounded))
    finally:
        stream.close()
    encoding = source.encoding.lower()
    text = head.decode("utf-8-sig" if encoding in {"utf-8", "utf8"} else encoding, "replace")
    line = text.splitlines()[0] if text else ""
    separator = source.options.get("sep", source.options.get("delimiter", ","))
    quote = source.options.get("quote", '"')
    row = next(csv.reader([line], delimiter=separator, quotechar=quote), [])
    return tuple(name.strip().lstrip("\ufeff") for name in row)


def _read_json_lines(spark: SparkSession, source: SourceConf, files: list[str]) -> DataFrame:
    """JSON lines read as text first, so a broken line keeps its raw text for quarantine."""
    if source.encoding.lower().replace("-", "") not in {"utf8", "utf8sig"}:
        raise ConfigError(f"json sources must be UTF-8 (got encoding {source.encoding!r})")
    lines = (
        spark.read.text(files)
        .select(F.col("value"), F.col("_metadata.file_path").alias("_file"))
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
    )
