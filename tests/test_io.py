import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mira.core.config import ConfigError, SourceConfig
from mira.io.digests import shard_digest
from mira.io.readers import iter_jsonl, iter_shard, list_source_files, plan_shards, read_text_file


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


# --- hostile input (issue 10) ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["corrupt.jsonl.zst", "corrupt.jsonl.gz"])
def test_corrupt_compressed_file_ends_in_one_error_item(data_dir: Path, name: str):
    # Corrupt zstd raises ZstdError and corrupt deflate zlib.error: neither is an OSError.
    items = _items(data_dir / "broken" / name, 10_000)
    errors = [i for i in items if i.error]
    assert errors == [items[-1]] and errors[0].error.startswith("unreadable data")
    assert all(i.data for i in items[:-1])


def _hostile(data_dir: Path) -> dict[str, str | None]:
    items = _items(data_dir / "broken" / "hostile.jsonl", 10_000)
    assert len(items) == 10
    return {i.locator: i.error for i in items}


def test_nan_and_infinity_literals_are_not_json(data_dir: Path):
    errors = _hostile(data_dir)
    assert errors["hostile.jsonl:4"] == "non-finite number NaN is not valid JSON"
    assert errors["hostile.jsonl:5"] == "non-finite number -Infinity is not valid JSON"


def test_lone_surrogate_is_an_error_item_and_a_surrogate_pair_is_text(data_dir: Path):
    errors = _hostile(data_dir)
    assert errors["hostile.jsonl:2"].startswith("lone UTF-16 surrogate")
    assert errors["hostile.jsonl:3"] is None and errors["hostile.jsonl:1"] is None
    pair = _items(data_dir / "broken" / "hostile.jsonl", 10_000)[2].data["text"]
    assert "\U0001F600" in pair and pair.encode("utf-8")


def test_folder_with_jsonl_and_parquet_reads_each_file_by_its_suffix(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"j{i}"}) + "\n" for i in range(2)))
    pq.write_table(pa.Table.from_pylist([{"text": f"p{i}"} for i in range(3)]), tmp_path / "b.parquet")
    source = SourceConfig(name="m", path=str(tmp_path))
    assert list_source_files(source)[0] == "mixed"
    shards = plan_shards(source, 100, 1000)
    assert [s.reader for s in shards] == ["jsonl", "parquet"]
    items = [i for s in shards for i in iter_shard(s, 1000)]
    assert [i.data["text"] for i in items] == ["j0", "j1", "p0", "p1", "p2"]


def test_a_source_that_resolves_to_nothing_is_an_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no files under"):
        list_source_files(SourceConfig(name="e", path=str(empty)))
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is a FIFO"):
        list_source_files(SourceConfig(name="f", path=str(fifo)))
    (empty / "README.md").write_text("not code")
    with pytest.raises(ConfigError, match=r"match include '\*\.py'"):
        list_source_files(SourceConfig(name="i", path=str(empty), include="*.py"))
    with pytest.raises(ConfigError, match="no parquet files"):
        list_source_files(SourceConfig(name="r", path=str(empty), reader="parquet"))


def test_glob_with_an_unknown_file_names_it(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "a"}) + "\n")
    (tmp_path / "b.txt").write_text("b")
    with pytest.raises(ConfigError, match="unknown file format 'b.txt'"):
        list_source_files(SourceConfig(name="g", path=str(tmp_path / "*")))


def _digest(shard) -> str:
    digest = shard_digest()
    for _ in iter_shard(shard, 10_000, digest):
        pass
    return digest.hexdigest()


def _same_size_edit(path: Path, old: bytes, new: bytes) -> None:
    stat = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as before


def test_shard_digest_sees_a_same_size_in_place_edit(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(6)))
    pq.write_table(pa.Table.from_pylist([{"text": f"row {i}"} for i in range(6)]), tmp_path / "b.parquet",
                   row_group_size=3, compression="none")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "c.py").write_text("x = 1\n")
    sources = {"a.jsonl": SourceConfig(name="a", path=str(tmp_path / "a.jsonl")),
               "b.parquet": SourceConfig(name="b", path=str(tmp_path / "b.parquet")),
               "files/c.py": SourceConfig(name="c", path=str(tmp_path / "files"), include="*.py")}
    edits = {"a.jsonl": (b"row 4", b"row X"), "b.parquet": (b"row 4", b"row X"), "files/c.py": (b"1", b"2")}
    for name, source in sources.items():
        shards = plan_shards(source, 3, 10_000)
        before = [_digest(s) for s in shards]
        assert before == [_digest(s) for s in shards]  # stable when nothing changed
        _same_size_edit(tmp_path / name, *edits[name])
        after = [_digest(s) for s in shards]
        assert after != before, name
        if len(shards) > 1:  # only the edited shard's fingerprint moves
            assert after[0] == before[0] and after[1] != before[1], name


def test_truncated_zstd_is_an_error_item_not_a_quiet_end(tmp_path: Path):
    # zstandard's stream reader ends quietly at a cut inside a frame: the tail was lost unrecorded.
    import zstandard

    blob = "".join(json.dumps({"text": f"row {i} " + "x" * 60}) + "\n" for i in range(3000)).encode()
    frame = zstandard.ZstdCompressor().compress(blob)
    (tmp_path / "cut.jsonl.zst").write_bytes(frame[: len(frame) // 2])
    items = _items(tmp_path / "cut.jsonl.zst", 10_000)
    assert items and items[-1].error == "unreadable data: zstd stream ends inside a frame (truncated file)"
    assert all(i.data for i in items[:-1])
    (tmp_path / "two.jsonl.zst").write_bytes(frame + frame)  # concatenated frames are one stream
    assert len(_items(tmp_path / "two.jsonl.zst", 10_000)) == 6000


# --- files written honour the umask (issue 27 item 16) --------------------------------------------

@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                             (0o002, 0o664, 0o775)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, mask: int, file_mode: int, dir_mode: int):
    # mkstemp makes 0600 files: a shared run folder, Ray workers under another account or a web server
    # could not read what mira wrote.
    from mira.io.files import atomic_path, atomic_write_json, honour_umask, umask

    previous = os.umask(mask)
    try:
        assert umask() == mask
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        with atomic_path(tmp_path / "b.parquet") as tmp:
            pq.write_table(pa.table({"x": [1]}), str(tmp))
        folder = tmp_path / "made-by-mkdtemp"
        folder.mkdir(mode=0o700)
        honour_umask(folder, directory=True)
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "b.parquet").stat().st_mode & 0o777 == file_mode
    assert folder.stat().st_mode & 0o777 == dir_mode


def test_a_run_directory_is_readable_by_others_under_umask_022(tmp_path: Path):
    from mira import api
    from tests.conftest import make_config

    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"text": "one record"}) + "\n")
    previous = os.umask(0o022)
    try:
        api.run_one("ingest", make_config(tmp_path, [{"name": "a", "path": str(data)}]))
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"inventory.json", "ingest.json", "config.yaml"}
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in written
            if p.stat().st_mode & 0o044 != 0o044} == {}
