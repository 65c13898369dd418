"""Streaming readers for JSONL (plain, .gz, .zst), Parquet and directories of files.

Readers never raise on bad *records*: every item they yield is either parsed data or an error
string that ends up in the quarantine. Memory is bounded by the record size limit: an over-long
JSONL line is skipped in chunks, never loaded whole. A file that cannot be opened at all yields
one error item, so "records read = ok + quarantined" holds even for broken files.

A source is cut into :class:`Shard` s, the unit of parallel work and of recovery. Plain JSONL
files are split by byte offset every ``shard_records`` lines; compressed files are one shard
each (they cannot be seeked); Parquet files are split by row group; directories of files by
chunks of file names.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mira.config import ConfigError, SourceConfig

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".jsonl.zst", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
_CHUNK = 1 << 16


@dataclass
class RawItem:
    """One record as read from disk: `data` when it parsed, else `error` (a one-line reason)."""

    locator: str  # file-relative position: "file.jsonl:12", "file.parquet:row 7", "dir/a.py"
    data: dict[str, Any] | None
    error: str | None = None
    nbytes: int = 0


@dataclass(frozen=True)
class Shard:
    source: str
    index: int
    reader: str
    files: tuple[str, ...]
    base: str = ""  # folder the locators are relative to
    offset: int = 0  # jsonl: byte offset; parquet: first row group
    count: int | None = None  # jsonl: lines; parquet: row groups; None = to the end
    first_line: int = 1

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(**{**data, "files": tuple(data["files"])})


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def detect_reader(path: Path) -> str | None:
    if path.is_dir():
        return "files"
    if _has_suffix(path, JSONL_SUFFIXES):
        return "jsonl"
    if _has_suffix(path, PARQUET_SUFFIXES):
        return "parquet"
    return None


def list_source_files(source: SourceConfig) -> tuple[str, Path, list[Path]]:
    """Resolve a source to (reader, base folder, files); raise ConfigError with one line if impossible."""
    raw = source.path
    if any(c in raw for c in "*?["):
        anchor = Path(raw.split("*")[0].split("?")[0].split("[")[0])
        base = anchor if anchor.is_dir() else anchor.parent
        pattern = str(Path(raw).relative_to(base)) if Path(raw).is_absolute() else raw
        files = sorted(p for p in base.glob(pattern) if p.is_file())
        if not files:
            raise ConfigError(f"source {source.name!r}: no files match {raw}")
        reader = source.reader if source.reader != "auto" else (detect_reader(files[0]) or "unknown")
        return _check_reader(source, reader, files[0]), base, files
    path = Path(raw)
    if not path.exists():
        raise ConfigError(f"source {source.name!r}: path does not exist: {raw}")
    if path.is_file():
        reader = source.reader if source.reader != "auto" else (detect_reader(path) or "unknown")
        return _check_reader(source, reader, path), path.parent, [path]
    if source.reader in ("auto", "files"):
        if source.reader == "auto":
            data_files = sorted(p for p in path.rglob("*") if p.is_file() and detect_reader(p) in ("jsonl", "parquet"))
            kinds = {detect_reader(p) for p in data_files}
            if data_files and len(kinds) == 1 and source.include == "**/*":
                return kinds.pop(), path, data_files
        files = sorted(p for p in path.glob(source.include) if p.is_file())
        return "files", path, files
    files = sorted(p for p in path.rglob("*") if p.is_file() and detect_reader(p) == source.reader)
    return source.reader, path, files


def _check_reader(source: SourceConfig, reader: str, example: Path) -> str:
    if reader not in ("jsonl", "parquet", "files"):
        raise ConfigError(
            f"source {source.name!r}: unknown file format {example.name!r}; "
            "use .jsonl/.jsonl.gz/.jsonl.zst/.parquet or set `reader:`"
        )
    return reader


# --- opening -------------------------------------------------------------------------------------

def open_binary(path: Path) -> BinaryIO:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        # The zstd stream has no readline; a buffered wrapper gives one with bounded memory.
        reader = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return io.BufferedReader(reader, buffer_size=_CHUNK)  # type: ignore[arg-type]
    return open(path, "rb")


def _is_seekable(path: Path) -> bool:
    return not path.name.lower().endswith((".gz", ".zst"))


# --- JSONL ---------------------------------------------------------------------------------------

def _read_line(handle: BinaryIO, limit: int) -> tuple[bytes | None, int]:
    """Read one line of at most `limit` bytes; an over-long line is consumed and returned as None."""
    line = handle.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line, len(line)
    total = len(line)
    while True:  # skip the rest of the over-long line without holding it
        chunk = handle.readline(_CHUNK)
        total += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return None, total


def decode_json_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (byte {exc.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def iter_jsonl(path: Path, rel: str, max_bytes: int, offset: int = 0, count: int | None = None,
               first_line: int = 1) -> Iterator[RawItem]:
    try:
        handle = open_binary(path)
    except OSError as exc:
        yield RawItem(f"{rel}", None, f"unreadable file: {exc.strerror or exc}")
        return
    line_no = first_line
    seen = 0
    try:
        with handle:
            if offset:
                handle.seek(offset)
            while count is None or seen < count:
                try:
                    line, nbytes = _read_line(handle, max_bytes)
                except (OSError, EOFError, ValueError) as exc:  # truncated gzip, corrupt zstd
                    yield RawItem(f"{rel}:{line_no}", None, f"unreadable data: {_short(exc)}")
                    return
                if nbytes == 0:
                    return
                seen += 1
                locator = f"{rel}:{line_no}"
                line_no += 1
                if line is None:
                    yield RawItem(locator, None, f"record larger than {max_bytes} bytes ({nbytes} bytes)", nbytes)
                    continue
                if not line.strip():
                    yield RawItem(locator, None, "empty line", nbytes)
                    continue
                data, error = decode_json_object(line)
                yield RawItem(locator, data, error, nbytes)
    except OSError as exc:
        yield RawItem(f"{rel}:{line_no}", None, f"unreadable file: {_short(exc)}")


def jsonl_shards(path: Path, every: int, max_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(byte offset, line count, first line) of consecutive shards of a plain JSONL file."""
    with open(path, "rb") as handle:
        start, lines, first = 0, 0, 1
        while True:
            _, nbytes = _read_line(handle, max_bytes)
            if nbytes == 0:
                break
            lines += 1
            if lines == every:
                yield start, lines, first
                first += lines
                start, lines = handle.tell(), 0
        if lines:
            yield start, lines, first


# --- Parquet -------------------------------------------------------------------------------------

def iter_parquet(path: Path, rel: str, max_bytes: int, first_group: int = 0,
                 n_groups: int | None = None) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        groups = list(range(first_group, pf.num_row_groups if n_groups is None else first_group + n_groups))
        row = sum(pf.metadata.row_group(g).num_rows for g in range(first_group))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        yield RawItem(rel, None, f"unreadable Parquet file: {_short(exc)}")
        return
    try:
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
            for data in batch.to_pylist():
                locator = f"{rel}:row {row}"
                row += 1
                nbytes = _approx_size(data)
                if nbytes > max_bytes:
                    yield RawItem(locator, None, f"record larger than {max_bytes} bytes ({nbytes} bytes)", nbytes)
                else:
                    yield RawItem(locator, data, None, nbytes)
    except Exception as exc:
        yield RawItem(f"{rel}:row {row}", None, f"unreadable Parquet data: {_short(exc)}")


def _approx_size(data: dict[str, Any]) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 16 for v in data.values())


# --- directory of files --------------------------------------------------------------------------

def read_text_file(path: Path, rel: str, max_bytes: int) -> RawItem:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return RawItem(rel, None, f"record larger than {max_bytes} bytes ({size} bytes)", size)
        raw = path.read_bytes()
    except OSError as exc:
        return RawItem(rel, None, f"unreadable file: {exc.strerror or exc}")
    if b"\x00" in raw[:8192]:
        return RawItem(rel, None, "binary file (NUL bytes)", len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawItem(rel, None, f"not valid UTF-8 (byte {exc.start})", len(raw))
    return RawItem(rel, {"text": text, "path": rel}, None, len(raw))


# --- shards --------------------------------------------------------------------------------------

def plan_shards(source: SourceConfig, shard_records: int, max_bytes: int) -> list[Shard]:
    reader, base, files = list_source_files(source)
    shards: list[Shard] = []

    def add(**kw: Any) -> None:
        shards.append(Shard(source=source.name, index=len(shards), reader=reader, base=str(base), **kw))

    if reader == "files":
        for i in range(0, len(files), shard_records):
            add(files=tuple(str(p) for p in files[i:i + shard_records]))
    elif reader == "jsonl":
        for path in files:
            if not _is_seekable(path):
                add(files=(str(path),))
                continue
            try:
                for offset, count, first in jsonl_shards(path, shard_records, max_bytes):
                    add(files=(str(path),), offset=offset, count=count, first_line=first)
            except OSError:
                add(files=(str(path),))  # the read in the shard reports the error as a record
    else:
        import pyarrow.parquet as pq

        for path in files:
            try:
                meta = pq.ParquetFile(path).metadata
            except Exception:
                add(files=(str(path),))
                continue
            start, rows = 0, 0
            for g in range(meta.num_row_groups):
                rows += meta.row_group(g).num_rows
                if rows >= shard_records:
                    add(files=(str(path),), offset=start, count=g + 1 - start)
                    start, rows = g + 1, 0
            if start < meta.num_row_groups or meta.num_row_groups == 0:
                add(files=(str(path),), offset=start, count=meta.num_row_groups - start)
    return shards


def iter_shard(shard: Shard, max_bytes: int) -> Iterator[RawItem]:
    base = Path(shard.base)
    for name in shard.files:
        path = Path(name)
        rel = _relative(path, base)
        if shard.reader == "files":
            yield read_text_file(path, rel, max_bytes)
        elif shard.reader == "jsonl":
            yield from iter_jsonl(path, rel, max_bytes, shard.offset, shard.count, shard.first_line)
        else:
            yield from iter_parquet(path, rel, max_bytes, shard.offset, shard.count)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return path.name


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
