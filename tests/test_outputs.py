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


def _shard(folder, source, rows, formats):
    from mira.selection.outputs import write_shard

    return (source, "00000", write_shard(folder / source, "00000", rows, formats))


def _mira(i):
    return {"mira_id": f"r{i}", "mira_score": None, "mira_group": "g0", "mira_tokens": 3, "mira_reason": "kept",
            "mira_anchors": [{"anchor": "g0/a00", "name": "Clarity", "score": None, "reliable": False}]}


def test_a_field_whose_type_differs_between_sources_is_json_text_in_every_file(tmp_path):
    from mira.io.compression import open_binary
    from mira.selection.outputs import unify_selection

    formats = ["jsonl", "jsonl.gz", "jsonl.zst", "parquet"]
    written = [_shard(tmp_path, "a", [{"meta": {"k": 1}, "n": 1, "only_a": "x", **_mira(0)}], formats),
               _shard(tmp_path, "b", [{"meta": "plain", "n": 2.5, "only_a": None, **_mira(1)}], formats)]
    encode, schema = unify_selection(tmp_path, written, formats)
    assert encode == ["meta"] and str(schema.field("n").type) == "double"
    assert len({str(pq.read_schema(tmp_path / s / "00000.parquet")) for s in "ab"}) == 1
    for fmt in formats[:3]:
        rows = []
        for source in "ab":
            with open_binary(tmp_path / source / f"00000.{fmt}") as handle:
                rows += [json.loads(line) for line in handle]
        assert [r["meta"] for r in rows] == ['{"k": 1}', '"plain"'], fmt  # the same JSON text as in Parquet
        assert [list(r) for r in rows][0] == [list(r) for r in rows][1]  # same keys, same order
    assert pq.read_table(tmp_path / "a" / "00000.parquet").column("meta").to_pylist() == ['{"k": 1}']


def test_compressed_jsonl_is_the_same_bytes_for_the_same_records(tmp_path):
    from mira.io.compression import open_binary
    from mira.selection.outputs import write_jsonl

    rows = [{"text": "é" * 50, "n": i, "bad": math.nan} for i in range(100)]
    for ext, magic in (("jsonl.gz", b"\x1f\x8b"), ("jsonl.zst", b"\x28\xb5\x2f\xfd")):
        first, second = tmp_path / f"1.{ext}", tmp_path / f"2.{ext}"
        write_jsonl(first, rows)
        write_jsonl(second, rows)
        assert first.read_bytes()[:4].startswith(magic)  # compressed, not plain text under the name
        assert first.read_bytes() == second.read_bytes()  # no time stamp: a rerun writes identical files
        with open_binary(first) as handle:
            lines = handle.read().decode("utf-8").splitlines()
        assert len(lines) == 100 and json.loads(lines[7]) == {"text": "é" * 50, "n": 7, "bad": None}


def test_the_mira_columns_keep_their_types_when_every_value_is_null(tmp_path):
    # Inferred, a shard of unscored records typed mira_score as null and the anchors' score too.
    from mira.selection.outputs import arrow_table, mira_schema

    table = arrow_table([{"text": "x", **_mira(0)}], mira_schema())
    assert str(table.schema.field("mira_score").type) == "double"
    assert "score: double" in str(table.schema.field("mira_anchors").type)
    assert table.column_names == ["text", *mira_schema().names]
