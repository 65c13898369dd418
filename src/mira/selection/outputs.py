"""Strict selection outputs: JSONL that every JSON parser reads, Parquet with one schema per source.

Input records may hold what strict consumers refuse: NaN/Infinity floats (valid in Parquet input,
not in JSON) and fields whose type differs between records (a list in one, a string in another),
which Arrow cannot store in one column. JSONL gets null for non-finite numbers; Parquet gets such
a field as a string column of JSON texts in every shard of the source, and the schema metadata
(``mira_json_columns``) names those columns so a reader can decode them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mira.io.files import atomic_path


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


def arrow_table(rows: list[dict[str, Any]]) -> Any:
    """Rows as an Arrow table; a field whose values Arrow cannot hold in one type (a list in one
    record, a string in another) becomes a string column of JSON texts, named in the metadata."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    names = list(dict.fromkeys(k for row in rows for k in row))
    conflicting = []
    for name in names:
        try:
            pa.array([row.get(name) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            conflicting.append(name)
    encoded = [{**row, **{c: _json_text(row.get(c)) for c in conflicting}} for row in rows]
    table = pa.Table.from_pylist(encoded)
    return table.replace_schema_metadata({JSON_COLUMNS_KEY: json.dumps(conflicting).encode()})


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(strict_json(value), ensure_ascii=False, default=str)


def _json_columns(schema: Any) -> set[str]:
    meta = schema.metadata or {}
    return set(json.loads(meta[JSON_COLUMNS_KEY])) if JSON_COLUMNS_KEY in meta else set()


def unify_parquet_schemas(paths: list[Path]) -> list[str]:
    """Give every Parquet shard of a source one schema (same columns, same order, same types).

    Each shard's schema is inferred from its own rows, so a field that is null throughout one
    shard comes out typed `null` there and `string` elsewhere; `datasets.load_dataset("parquet")`
    and most readers refuse such a set. Shards that differ from the unified schema are rewritten.
    A field whose types cannot be unified (list in one shard, string in another) becomes a JSON
    text column in every shard. Returns those JSON-encoded columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in paths]
    encode: set[str] = set().union(*(_json_columns(s) for s in schemas)) if schemas else set()
    for name in dict.fromkeys(f.name for s in schemas for f in s):
        if name in encode:
            continue
        try:
            pa.unify_schemas([pa.schema([s.field(name)]) for s in schemas if name in s.names],
                             promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
            encode.add(name)
    if len(paths) < 2 and not (set(encode) - (_json_columns(schemas[0]) if schemas else set())):
        return sorted(encode)
    while True:  # a cast can still fail after a permissive unify (rare): encode that column too
        failed = _rewrite_unified(paths, schemas, encode)
        if failed is None:
            return sorted(encode)
        encode.add(failed)
        schemas = [pq.read_schema(p) for p in paths]  # shards rewritten before the failure


def _rewrite_unified(paths: list[Path], schemas: list[Any], encode: set[str]) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def target_field(field: Any) -> Any:
        return pa.field(field.name, pa.string()) if field.name in encode else field

    targets = [pa.schema([target_field(f) for f in s]) for s in schemas]
    unified = pa.unify_schemas(targets, promote_options="permissive")
    metadata = {JSON_COLUMNS_KEY: json.dumps(sorted(encode)).encode()} if encode else None
    unified = unified.with_metadata(metadata) if metadata else unified
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
