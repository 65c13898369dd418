"""Streaming readers for JSONL (plain, .gz, .zst), Parquet and directories of files.

Readers never raise on bad *records*: every item they yield is either parsed data or an error
string that ends up in the quarantine. Memory is bounded by the record size limit: an over-long
JSONL line is skipped in chunks, never loaded whole. A file that cannot be opened at all yields
one error item, so "records read = ok + quarantined" holds even for broken files.

A source is cut into :class:`Shard` s, the unit of parallel work and of recovery. Plain JSONL
files are split by byte offset every ``shard_records`` lines; compressed files are one shard
each (they cannot be seeked); Parquet files are split by row group; directories of files by
chunks of file names. A folder holding both JSONL and Parquet files gets a reader per file.

Sources may be URLs (``s3://bucket/prefix/``, any fsspec protocol; see :mod:`mira.io.storage`): they are
listed, sharded and read the same way, streamed a block at a time. Every reading function takes
the config's ``storage`` settings for that.

A shard's input can be fingerprinted while it is read (``iter_shard(..., digest=...)``): score
records the digest, select recomputes it, so an input edited in place since scoring is noticed
even when its size and mtime did not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mira.core.config import SourceConfig
from mira.io.compression import open_binary, read_errors
from mira.io.jsonline import decode_json_object

# Listed and detected there; re-exported here, where callers have always found them.
from mira.io.source_files import detect_reader as detect_reader
from mira.io.source_files import list_source_files as list_source_files
from mira.io.storage import (
    Storage,
    check_transport,
    file_size,
    is_url,
    open_input,
    relative,
    transport_errors,
)

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
    # Locators of records whose id an earlier record of the source already has: ingest finds them
    # and every stage quarantines them, so ids stay unique within a source.
    duplicates: tuple[str, ...] = ()
    # The source's files number their records each on their own (ids 0..n in every file): ingest
    # found the same id in two files, so every stage qualifies a record's id with its file.
    file_ids: bool = False

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["duplicates"] = list(self.duplicates)
        if not self.file_ids:  # inventories of sources whose ids are unique stay as they were
            del data["file_ids"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(**{**data, "files": tuple(data["files"]), "duplicates": tuple(data.get("duplicates", ()))})


# --- opening -------------------------------------------------------------------------------------

def io_errors() -> tuple[type[BaseException], ...]:
    """What opening or reading a file raises: OSError, or an object store's network error
    (:func:`mira.io.storage.check_transport` tells a lost connection from bad data)."""
    return (OSError, *transport_errors())


def _data_errors() -> tuple[type[BaseException], ...]:
    """:func:`_io_errors` and what a damaged compressed stream raises."""
    return (*read_errors(), *transport_errors())


def is_seekable(path: Path | str) -> bool:
    return not str(path).lower().endswith((".gz", ".zst"))


# --- JSONL ---------------------------------------------------------------------------------------

def read_line(handle: BinaryIO, limit: int, digest: Any = None) -> tuple[bytes | None, int]:
    """Read one line of at most `limit` bytes; an over-long line is consumed and returned as None."""
    line = handle.readline(limit + 1)
    if digest is not None:
        digest.update(line)
    if len(line) <= limit or line.endswith(b"\n"):
        return line, len(line)
    total = len(line)
    while True:  # skip the rest of the over-long line without holding it
        chunk = handle.readline(_CHUNK)
        if digest is not None:
            digest.update(chunk)
        total += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return None, total


def iter_jsonl(path: Path | str, rel: str, max_bytes: int, offset: int = 0, count: int | None = None,
               first_line: int = 1, digest: Any = None, storage: Storage = None) -> Iterator[RawItem]:
    try:
        handle = open_binary(path, lambda name: open_input(name, storage))
    except io_errors() as exc:
        check_transport(exc, path, storage)
        yield RawItem(f"{rel}", None, f"unreadable file: {getattr(exc, 'strerror', None) or exc}")
        return
    line_no = first_line
    seen = 0
    try:
        with handle:
            if offset:
                handle.seek(offset)
            while count is None or seen < count:
                try:
                    line, nbytes = read_line(handle, max_bytes, digest)
                except _data_errors() as exc:  # corrupt gzip/zstd: the rest is one item
                    check_transport(exc, path, storage)
                    yield RawItem(f"{rel}:{line_no}", None, f"unreadable data: {_short(exc)}")
                    return
                if nbytes == 0:
                    return
                seen += 1
                locator = f"{rel}:{line_no}"
                line_no += 1
                yield line_item(locator, line, nbytes, max_bytes)
    except _data_errors() as exc:
        check_transport(exc, path, storage)
        yield RawItem(f"{rel}:{line_no}", None, f"unreadable file: {_short(exc)}")


def line_item(locator: str, line: bytes | None, nbytes: int, max_bytes: int) -> RawItem:
    if line is None:
        return RawItem(locator, None, f"record larger than {max_bytes} bytes ({nbytes} bytes)", nbytes)
    if not line.strip():
        return RawItem(locator, None, "empty line", nbytes)
    data, error = decode_json_object(line)
    return RawItem(locator, data, error, nbytes)


def jsonl_shards(path: Path | str, every: int, max_bytes: int,
                 storage: Storage = None) -> Iterator[tuple[int, int, int]]:
    """(byte offset, line count, first line) of consecutive shards of a plain JSONL file."""
    with open_input(path, storage) as handle:
        start, lines, first = 0, 0, 1
        while True:
            _, nbytes = read_line(handle, max_bytes)
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

def iter_parquet(path: Path | str, rel: str, max_bytes: int, first_group: int = 0,
                 n_groups: int | None = None, digest: Any = None, storage: Storage = None) -> Iterator[RawItem]:
    with contextlib.ExitStack() as stack:
        yield from _iter_parquet(stack, path, rel, max_bytes, first_group, n_groups, digest, storage)


def _iter_parquet(stack: contextlib.ExitStack, path: Path | str, rel: str, max_bytes: int, first_group: int,
                  n_groups: int | None, digest: Any, storage: Storage) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    try:
        # A URL is read through one file object: the footer, then only the shard's row groups.
        pf = pq.ParquetFile(stack.enter_context(open_input(path, storage)) if is_url(path) else path)
        groups = list(range(first_group, pf.num_row_groups if n_groups is None else first_group + n_groups))
        row = sum(pf.metadata.row_group(g).num_rows for g in range(first_group))
        if digest is not None:
            _digest_row_groups(path, pf.metadata, groups, digest, storage)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        check_transport(exc, path, storage)
        if digest is not None:
            _digest_whole_file(path, digest, storage)
        yield RawItem(rel, None, f"unreadable Parquet file: {_short(exc)}")
        return
    try:
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
            for data in batch.to_pylist():
                yield dict_item(f"{rel}:row {row}", data, max_bytes)
                row += 1
    except Exception as exc:
        check_transport(exc, path, storage)
        yield RawItem(f"{rel}:row {row}", None, f"unreadable Parquet data: {_short(exc)}")


def _digest_row_groups(path: Path | str, meta: Any, groups: list[int], digest: Any, storage: Storage) -> None:
    """Feed the stored bytes of the shard's row groups (every column chunk) to `digest`."""
    with open_input(path, storage) as handle:
        for g in groups:
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                start = chunk.data_page_offset
                if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
                    start = min(start, chunk.dictionary_page_offset)
                handle.seek(start)
                digest.update(handle.read(chunk.total_compressed_size))


def _digest_whole_file(path: Path | str, digest: Any, storage: Storage = None) -> None:
    try:
        with open_input(path, storage) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except io_errors() as exc:
        check_transport(exc, path, storage)
        digest.update(f"<unreadable: {exc}>".encode())


def approx_size(data: dict[str, Any]) -> int:
    return sum(len(v) if isinstance(v, (str, bytes)) else 16 for v in data.values())


def dict_item(locator: str, data: dict[str, Any], max_bytes: int) -> RawItem:
    """A record that is a dict already (a Parquet row, a record handed to :class:`mira.Scorer`):
    too large by :func:`approx_size`, or as it is."""
    nbytes = approx_size(data)
    if nbytes > max_bytes:
        return RawItem(locator, None, f"record larger than {max_bytes} bytes ({nbytes} bytes)", nbytes)
    return RawItem(locator, data, None, nbytes)


# --- directory of files --------------------------------------------------------------------------

def read_text_file(path: Path | str, rel: str, max_bytes: int, digest: Any = None,
                   storage: Storage = None) -> RawItem:
    if digest is not None:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
    try:
        size = file_size(path, storage)
        if size > max_bytes:
            if digest is not None:
                _digest_whole_file(path, digest, storage)
            return RawItem(rel, None, f"record larger than {max_bytes} bytes ({size} bytes)", size)
        with open_input(path, storage) as handle:
            raw = handle.read()
    except io_errors() as exc:
        check_transport(exc, path, storage)
        return RawItem(rel, None, f"unreadable file: {getattr(exc, 'strerror', None) or exc}")
    if digest is not None:
        digest.update(raw)
    if b"\x00" in raw[:8192]:
        return RawItem(rel, None, "binary file (NUL bytes)", len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawItem(rel, None, f"not valid UTF-8 (byte {exc.start})", len(raw))
    return RawItem(rel, {"text": text, "path": rel}, None, len(raw))


# --- shards --------------------------------------------------------------------------------------

def plan_shards(source: SourceConfig, shard_records: int, max_bytes: int, storage: Storage = None) -> list[Shard]:
    reader, base, files = list_source_files(source, storage)
    shards: list[Shard] = []

    def add(file_reader: str, **kw: Any) -> None:
        shards.append(Shard(source=source.name, index=len(shards), reader=file_reader, base=str(base), **kw))

    if reader == "files":
        for i in range(0, len(files), shard_records):
            add("files", files=tuple(str(p) for p in files[i:i + shard_records]))
        return shards
    for path in files:
        # A mixed folder: every file is read by the reader its suffix names.
        file_reader = reader if reader != "mixed" else (detect_reader(path) or "jsonl")
        name = str(path)  # a local path or a URL
        if file_reader == "jsonl":
            _plan_jsonl(name, shard_records, max_bytes, storage, lambda **kw: add("jsonl", **kw))
        else:
            _plan_parquet(name, shard_records, storage, lambda **kw: add("parquet", **kw))
    return shards


def _plan_jsonl(path: str, shard_records: int, max_bytes: int, storage: Storage, add: Any) -> None:
    if not is_seekable(path):
        add(files=(path,))
        return
    try:
        for offset, count, first in jsonl_shards(path, shard_records, max_bytes, storage):
            add(files=(path,), offset=offset, count=count, first_line=first)
    except io_errors() as exc:
        check_transport(exc, path, storage)
        add(files=(path,))  # the read in the shard reports the error as a record


def _plan_parquet(path: str, shard_records: int, storage: Storage, add: Any) -> None:
    import pyarrow.parquet as pq

    try:
        if is_url(path):
            with open_input(path, storage) as handle:  # the footer only
                meta = pq.ParquetFile(handle).metadata
        else:
            meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # a corrupt footer: the read in the shard reports it as a record
        check_transport(exc, path, storage)
        add(files=(path,))
        return
    start, rows = 0, 0
    for g in range(meta.num_row_groups):
        rows += meta.row_group(g).num_rows
        if rows >= shard_records:
            add(files=(path,), offset=start, count=g + 1 - start)
            start, rows = g + 1, 0
    if start < meta.num_row_groups or meta.num_row_groups == 0:
        add(files=(path,), offset=start, count=meta.num_row_groups - start)


def iter_shard(shard: Shard, max_bytes: int, digest: Any = None, storage: Storage = None) -> Iterator[RawItem]:
    """The raw items of a shard in order; `digest` (a hashlib object), when given, is fed the
    shard's input bytes as they are read, so a caller can tell whether the input changed.
    `storage` is the config's storage section, for shards of URL sources."""
    for name in shard.files:
        path: Path | str = name if is_url(name) else Path(name)
        rel = file_label(name, shard.base)
        if shard.reader == "files":
            yield read_text_file(path, rel, max_bytes, digest, storage)
        elif shard.reader == "jsonl":
            yield from iter_jsonl(path, rel, max_bytes, shard.offset, shard.count, shard.first_line, digest, storage)
        else:
            yield from iter_parquet(path, rel, max_bytes, shard.offset, shard.count, digest, storage)


def file_label(name: str, base: str) -> str:
    """How locators name a shard's file: relative to the source's folder (or prefix), escaped."""
    return relative(name, base) if is_url(name) else _relative(Path(name), Path(base))


def _relative(path: Path, base: Path) -> str:
    try:
        name = str(path.relative_to(base))
    except ValueError:
        name = path.name
    return escaped_name(name)


def escaped_name(name: str) -> str:
    """A file name as text every writer accepts: a byte that is not UTF-8 (Python holds it as a lone
    surrogate, which no JSON, Parquet or hash of the locator can encode) becomes ``\\xNN``. The same
    name always gives the same text, so its records keep their locators and ids; UTF-8 names are unchanged."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
