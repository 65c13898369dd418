import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mira.config import ConfigError, SourceConfig
from mira.io import iter_jsonl, iter_shard, list_source_files, plan_shards, read_text_file


def _items(path: Path, max_bytes: int = 1000):
    return list(iter_jsonl(path, path.name, max_bytes))


def test_jsonl_every_bad_line_is_an_item_with_a_reason(data_dir: Path):
    items = _items(data_dir / "broken" / "broken.jsonl")
    assert len(items) == 9  # one item per line: nothing silently dropped
    errors = [i.error for i in items]
    assert errors[0] is None and errors[8] is None
    assert errors[1].startswith("malformed JSON")
    assert errors[2].startswith("not valid UTF-8")
    assert errors[5] == "empty line"
    assert errors[6] == "expected a JSON object, got list"
    assert errors[7].startswith("record larger than 1000 bytes")
    assert [i.locator for i in items][:2] == ["broken.jsonl:1", "broken.jsonl:2"]


def test_overlong_line_is_skipped_without_loading_it(tmp_path: Path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"text": "y" * 500_000}) + "\n")
        fh.write(json.dumps({"text": "after"}) + "\n")
    items = _items(path, max_bytes=1000)
    assert items[0].error.startswith("record larger than") and items[0].nbytes > 500_000
    assert items[1].data == {"text": "after"}


def test_truncated_gzip_reports_an_error_item(data_dir: Path):
    items = _items(data_dir / "broken" / "truncated.jsonl.gz")
    assert items[-1].error and "unreadable data" in items[-1].error
    assert all(i.data for i in items[:-1])


def test_zstd_and_gzip_read(tmp_path: Path):
    import zstandard

    rows = [{"text": f"row {i}"} for i in range(3)]
    blob = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(blob))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(blob))
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        assert [i.data for i in _items(tmp_path / name)] == rows


def test_fake_parquet_is_one_error_item(data_dir: Path):
    src = SourceConfig(name="p", path=str(data_dir / "broken" / "garbage.parquet"))
    shards = plan_shards(src, 100, 1000)
    items = [i for s in shards for i in iter_shard(s, 1000)]
    assert len(items) == 1 and items[0].error.startswith("unreadable Parquet")


def test_parquet_shards_by_row_group(tmp_path: Path):
    table = pa.Table.from_pylist([{"text": f"t{i}"} for i in range(10)])
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=3)
    src = SourceConfig(name="p", path=str(tmp_path / "a.parquet"))
    shards = plan_shards(src, 3, 1000)
    assert len(shards) == 4
    texts = [i.data["text"] for s in shards for i in iter_shard(s, 1000)]
    assert texts == [f"t{i}" for i in range(10)]


def test_jsonl_shards_by_byte_offset_cover_every_line(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(11)))
    shards = plan_shards(SourceConfig(name="a", path=str(path)), 4, 1000)
    assert [s.count for s in shards] == [4, 4, 3]
    items = [i for s in shards for i in iter_shard(s, 1000)]
    assert [i.locator for i in items] == [f"a.jsonl:{n}" for n in range(1, 12)]


def test_directory_of_files(data_dir: Path):
    results = {p.name: read_text_file(p, p.name, 1000) for p in (data_dir / "broken" / "files").iterdir()}
    assert results["ok.py"].data["text"].startswith("def area")
    assert results["binary.py"].error == "binary file (NUL bytes)"
    assert results["latin1.py"].error.startswith("not valid UTF-8")


def test_unknown_format_and_missing_path_are_one_line_errors(data_dir: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown file format 'notes.xyz'"):
        list_source_files(SourceConfig(name="u", path=str(data_dir / "broken" / "notes.xyz")))
    with pytest.raises(ConfigError, match="does not exist"):
        list_source_files(SourceConfig(name="m", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="no files match"):
        list_source_files(SourceConfig(name="g", path=str(tmp_path / "*.jsonl")))
