import json
import math

import pyarrow.parquet as pq

from mira.selection.outputs import arrow_table, strict_json, unify_parquet_schemas


def _write(path, rows):
    pq.write_table(arrow_table(rows), path)
    return path


def test_strict_json_turns_every_non_finite_number_into_null():
    value = {"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": "NaN", "e": 3}
    assert strict_json(value) == {"a": None, "b": [1.5, None, {"c": None}], "d": "NaN", "e": 3}
    json.dumps(strict_json(value), allow_nan=False)


def test_a_conflict_inside_one_shard_becomes_a_json_column(tmp_path):
    rows = [{"t": "x", "tags": ["a"]}, {"t": "y", "tags": "b"}, {"t": "z", "tags": None}]
    table = arrow_table(rows)
    assert str(table.schema.field("tags").type) == "string" and str(table.schema.field("t").type) == "string"
    assert table.column("tags").to_pylist() == ['["a"]', '"b"', None]
    assert unify_parquet_schemas([_write(tmp_path / "a.parquet", rows)]) == ["tags"]


def test_a_conflict_between_shards_is_encoded_in_every_shard(tmp_path):
    # Each shard alone is consistent (a list column, a string column, an int column); together not.
    paths = [_write(tmp_path / "0.parquet", [{"tags": ["a", "b"], "n": 1}]),
             _write(tmp_path / "1.parquet", [{"tags": "c", "n": 2}]),
             _write(tmp_path / "2.parquet", [{"tags": 7, "n": None}]),
             _write(tmp_path / "3.parquet", [{"tags": {"k": [1]}, "n": 2.5}])]
    assert unify_parquet_schemas(paths) == ["tags"]
    tables = [pq.read_table(p) for p in paths]
    assert len({str(t.schema) for t in tables}) == 1
    assert [json.loads(t.column("tags")[0].as_py()) for t in tables] == [["a", "b"], "c", 7, {"k": [1]}]
    assert [t.column("n")[0].as_py() for t in tables] == [1.0, 2.0, None, 2.5]  # int and float unify
    assert json.loads(tables[0].schema.metadata[b"mira_json_columns"]) == ["tags"]


def test_consistent_shards_are_left_alone(tmp_path):
    paths = [_write(tmp_path / "0.parquet", [{"tags": ["a"]}]), _write(tmp_path / "1.parquet", [{"tags": None}])]
    assert unify_parquet_schemas(paths) == []
    assert all(str(pq.read_schema(p).field("tags").type).startswith("list") for p in paths)
