"""Strict selection outputs with one schema for the whole selection: JSONL (plain, ``.jsonl.gz``,
``.jsonl.zst``) that every JSON parser reads, and Parquet.

Every output file of a selection has the same columns in the same order: the union of the original
fields of all its sources (null where a record has none) and select's ``mira_*`` columns, typed
once (:func:`mira_schema`). So one ``datasets.load_dataset("parquet", data_files=...)`` reads every
source together.

Input records may hold what strict consumers refuse: NaN/Infinity floats (valid in Parquet input,
not in JSON) and fields whose type differs between records or sources (a list in one, a string in
another), which Arrow cannot store in one column. JSONL gets null for non-finite numbers; such a
field becomes a string column of JSON texts in every file of the selection, JSONL and Parquet
alike, named in the summary (``json_columns``) and in the Parquet schema metadata
(``mira_json_columns``) so a reader can decode it.

A JSON reader types each file from its own values, and a column that is null throughout one file
(a field only some sources have) types as null there: ``datasets`` then refuses the next file. The
dataset card (:mod:`mira.selection.card`) gives readers the selection's schema.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mira.io.compression import open_binary
from mira.io.files import atomic_path

# `selection.output_formats`; each is also the extension of its files.
JSONL_FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst")
FORMATS = (*JSONL_FORMATS, "parquet")


def strict_json(value: Any) -> Any:
    """`value` with every NaN/Infinity (possible in Parquet input) replaced by null: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


JSON_COLUMNS_KEY = b"mira_json_columns"


def mira_schema() -> Any:
    """The columns select adds to every kept record, with fixed types (inferred, a shard whose
    scores are all null would type `mira_score` as null).

    ``mira_anchors`` holds the record's anchor scores as a list of structs, one per anchor of its
    group: ``anchor`` is ``"<group>/<anchor id>"``, so the same id in two groups (``a00`` is a
    different dimension in each) never shares a column; ``reliable`` says whether the reliability
    mask trusts that anchor for the record's source (what the aggregate uses). A column per anchor
    would give the selection 2 x (groups x anchors) mostly-null columns (150 at the paper's 5 groups
    of 15) and a schema that changes whenever a rubric does; one list column keeps one schema.
    ``mira_reason`` is the decision: ranked and kept, a source floor, or a random draw.
    """
    import pyarrow as pa

    anchor = pa.struct([("anchor", pa.string()), ("name", pa.string()), ("score", pa.float64()),
                        ("reliable", pa.bool_())])
    return pa.schema([("mira_id", pa.string()), ("mira_score", pa.float64()), ("mira_group", pa.string()),
                      ("mira_tokens", pa.int64()), ("mira_reason", pa.string()), ("mira_anchors", pa.list_(anchor))])


def arrow_table(rows: list[dict[str, Any]], fixed: Any = None) -> Any:
    """Rows as an Arrow table; a field whose values Arrow cannot hold in one type (a list in one
    record, a string in another) becomes a string column of JSON texts, named in the metadata.
    The columns of the `fixed` schema get its types, after the others."""
    import pyarrow as pa

    if fixed is None:
        return _inferred(rows)
    names = set(fixed.names)
    table = _inferred([{k: v for k, v in row.items() if k not in names} for row in rows])
    columns = [*table.columns, *(pa.array([row.get(f.name) for row in rows], f.type) for f in fixed)]
    return pa.Table.from_arrays(columns, names=[*table.column_names, *fixed.names]).replace_schema_metadata(
        table.schema.metadata)


def _inferred(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    # Every key of every row (from_pylist takes the first row's keys and drops the others).
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns, conflicting = {}, []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            conflicting.append(name)
            columns[name] = pa.array([_json_text(v) for v in values], pa.string())
    table = pa.table(columns) if columns else pa.table({})
    return table.replace_schema_metadata({JSON_COLUMNS_KEY: json.dumps(conflicting).encode()} if conflicting else None)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(strict_json(value), ensure_ascii=False, default=str)


def _json_columns(schema: Any) -> set[str]:
    meta = schema.metadata or {}
    return set(json.loads(meta[JSON_COLUMNS_KEY])) if JSON_COLUMNS_KEY in meta else set()


def write_shard(folder: Path, name: str, rows: list[dict[str, Any]], formats: list[str]) -> Any:
    """Write one shard's kept records in every format under `folder`; returns their Arrow schema,
    which :func:`unify_selection` needs once every shard is written."""
    import pyarrow.parquet as pq

    table = arrow_table(rows, mira_schema())
    encode = _json_columns(table.schema)  # this shard's own conflicts: JSON text in every format
    for fmt in formats:
        if fmt == "parquet":
            with atomic_path(folder / f"{name}.parquet") as tmp:
                pq.write_table(table, str(tmp), compression="zstd")
        else:
            write_jsonl(folder / f"{name}.{fmt}", rows, encode)
    return table.schema


def write_jsonl(path: Path, rows: list[dict[str, Any]], encode: Collection[str] = ()) -> None:
    """Strict JSON lines, compressed as the name says (``.jsonl.gz``, ``.jsonl.zst``); the fields
    in `encode` are written as JSON texts."""
    fmt = next(f for f in sorted(JSONL_FORMATS, key=len, reverse=True) if path.name.endswith(f".{f}"))
    with atomic_path(path) as tmp, _compressed(tmp, fmt) as handle:
        for row in rows:
            if encode:
                row = {**row, **{c: _json_text(row[c]) for c in encode if c in row}}
            # allow_nan=False: a NaN the cleaning missed fails here instead of leaving bad JSON.
            line = json.dumps(strict_json(row), ensure_ascii=False, default=str, allow_nan=False)
            handle.write(line.encode("utf-8") + b"\n")


@contextmanager
def _compressed(path: Path, fmt: str) -> Iterator[IO[bytes]]:
    """A binary writer to `path` that compresses for `fmt`; the same lines give the same bytes
    (gzip without a time stamp or file name), so a rerun writes identical files."""
    with open(path, "wb") as raw:
        if fmt == "jsonl.gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                yield packed  # type: ignore[misc]  # GzipFile is a binary writer
        elif fmt == "jsonl.zst":
            import zstandard

            with zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as packed:
                yield packed
        else:
            yield raw


def unify_selection(root: Path, written: list[tuple[str, str, Any]], formats: list[str]) -> tuple[list[str], Any]:
    """Give every output file of a selection one schema: the union of all columns in one order,
    one type per column, and a field whose types conflict anywhere (a list in one source, a string
    in another) JSON text in every file. `written` holds (source, shard, schema) of each shard
    :func:`write_shard` wrote under `root`. Returns the JSON-encoded columns and the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not written:
        return [], None
    schemas = [schema for _, _, schema in written]
    if "parquet" in formats:
        paths = [root / source / f"{shard}.parquet" for source, shard, _ in written]
        encode = set(unify_parquet_schemas(paths))
        unified = pq.read_schema(paths[0])
    else:
        encode = _conflicting(schemas)
        unified = _unified(schemas, encode)
    for source, shard, schema in written:
        # What this shard holds values of that became JSON text after it was written.
        todo = sorted((encode - _json_columns(schema)) & {f.name for f in schema if not pa.types.is_null(f.type)})
        for fmt in [f for f in formats if f in JSONL_FORMATS] if todo else []:
            path = root / source / f"{shard}.{fmt}"
            with open_binary(path) as handle:
                rows = [json.loads(line) for line in handle]
            write_jsonl(path, rows, todo)
    return sorted(encode), unified


def unify_parquet_schemas(paths: list[Path]) -> list[str]:
    """Give Parquet files one schema (same columns, same order, same types).

    Each file's schema is inferred from its own rows, so a field that is null throughout one
    file comes out typed `null` there and `string` elsewhere; `datasets.load_dataset("parquet")`
    and most readers refuse such a set. Files that differ from the unified schema are rewritten.
    A field whose types cannot be unified (list in one file, string in another) becomes a JSON
    text column in every file. Returns those JSON-encoded columns.
    """
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in paths]
    encode = _conflicting(schemas)
    if len(paths) < 2 and not (set(encode) - (_json_columns(schemas[0]) if schemas else set())):
        return sorted(encode)
    while True:  # a cast can still fail after a permissive unify (rare): encode that column too
        failed = _rewrite_unified(paths, schemas, encode)
        if failed is None:
            return sorted(encode)
        encode.add(failed)
        schemas = [pq.read_schema(p) for p in paths]  # files rewritten before the failure


def _conflicting(schemas: list[Any]) -> set[str]:
    """Columns to hold as JSON text: encoded in some file already, or of types no promotion unifies."""
    import pyarrow as pa

    encode: set[str] = set().union(*(_json_columns(s) for s in schemas)) if schemas else set()
    for name in dict.fromkeys(f.name for s in schemas for f in s):
        if name in encode:
            continue
        try:
            pa.unify_schemas([pa.schema([s.field(name)]) for s in schemas if name in s.names],
                             promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
            encode.add(name)
    return encode


def _unified(schemas: list[Any], encode: set[str]) -> Any:
    import pyarrow as pa

    def target_field(field: Any) -> Any:
        return pa.field(field.name, pa.string()) if field.name in encode else field

    unified = pa.unify_schemas([pa.schema([target_field(f) for f in s]) for s in schemas],
                               promote_options="permissive")
    return unified.with_metadata({JSON_COLUMNS_KEY: json.dumps(sorted(encode)).encode()}) if encode else unified


def _rewrite_unified(paths: list[Path], schemas: list[Any], encode: set[str]) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    unified = _unified(schemas, encode)
    for path, schema in zip(paths, schemas, strict=True):
        todo = encode - _json_columns(schema)
        if schema.equals(unified) and not (todo & set(schema.names)):
            continue
        table = pq.read_table(path)
        columns = []
        for field in unified:
            if field.name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, field.type))
            elif field.name in todo:
                columns.append(pa.array([_json_text(v) for v in table.column(field.name).to_pylist()], pa.string()))
            else:
                try:
                    columns.append(table.column(field.name).cast(field.type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
                    return field.name
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_arrays(columns, schema=unified), str(tmp), compression="zstd")
    return None
