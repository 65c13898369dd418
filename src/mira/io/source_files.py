"""Which files (or objects) a source is, and which reader reads each: the listing rules of a source.

Split from :mod:`mira.io.readers`, which reads and shards what this lists. A local path, a glob, a folder or
an fsspec URL (object, prefix or glob) resolves to ``(reader, base, files)`` or a one-line
ConfigError; a source never resolves to nothing.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, SourceConfig
from mira.io.storage import RemoteFile, Storage, describe_error, is_url, list_url, shown

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".jsonl.zst", ".ndjson.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _has_suffix(path: Path | RemoteFile, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def detect_reader(path: Path | RemoteFile) -> str | None:
    if isinstance(path, Path) and path.is_dir():
        return "files"
    if _has_suffix(path, JSONL_SUFFIXES):
        return "jsonl"
    if _has_suffix(path, PARQUET_SUFFIXES):
        return "parquet"
    return None


def list_source_files(source: SourceConfig, storage: Storage = None) -> tuple[str, Any, list[Any]]:
    """Resolve a source to (reader, base folder, files); raise ConfigError with one line if impossible.

    The reader is "mixed" when an auto-detected folder or glob holds both JSONL and Parquet files:
    each file then keeps its own reader (see :func:`plan_shards`). A source that resolves to no
    file at all is an error, never an empty source. A URL source gives its base URL (a str) and
    :class:`~mira.io.storage.RemoteFile` s instead of Paths.
    """
    if is_url(source.path):
        return _list_url_source(source, storage)
    raw = source.path
    if any(c in raw for c in "*?["):
        anchor = Path(raw.split("*")[0].split("?")[0].split("[")[0])
        base = anchor if anchor.is_dir() else anchor.parent
        pattern = str(Path(raw).relative_to(base)) if Path(raw).is_absolute() else raw
        files = sorted(p for p in base.glob(pattern) if p.is_file())
        return _reader_of_matches(source, files, raw), base, files
    path = Path(raw)
    if not path.exists():
        raise ConfigError(f"source {source.name!r}: path does not exist: {raw}")
    if not path.is_file() and not path.is_dir():
        kind = "a FIFO" if stat.S_ISFIFO(path.stat().st_mode) else "not a regular file"
        raise ConfigError(f"source {source.name!r}: {raw} is {kind}; point `path` at a file or a folder")
    if path.is_file():
        reader = source.reader if source.reader != "auto" else (detect_reader(path) or "unknown")
        return _check_reader(source, reader, path), path.parent, [path]
    if source.reader in ("auto", "files"):
        if source.reader == "auto" and source.include == "**/*":
            data_files = sorted(p for p in path.rglob("*") if p.is_file() and detect_reader(p) in ("jsonl", "parquet"))
            if data_files:
                return _data_reader({detect_reader(p) or "" for p in data_files}), path, data_files
        files = sorted(p for p in path.glob(source.include) if p.is_file())
        if not files:
            raise ConfigError(f"source {source.name!r}: no files under {raw} match include {source.include!r}")
        return "files", path, files
    files = sorted(p for p in path.rglob("*") if p.is_file() and detect_reader(p) == source.reader)
    if not files:
        raise ConfigError(f"source {source.name!r}: no {source.reader} files under {raw}")
    return source.reader, path, files


def _list_url_source(source: SourceConfig, storage: Storage) -> tuple[str, str, list[RemoteFile]]:
    """list_source_files for a URL: the same rules, over object names instead of a directory tree."""
    url = source.path
    try:
        kind, base, files = list_url(url, storage)
        if kind == "prefix" and source.reader in ("auto", "files"):
            data_files = [f for f in files if detect_reader(f) in ("jsonl", "parquet")]
            if source.reader == "auto" and source.include == "**/*" and data_files:
                return _data_reader({detect_reader(f) or "" for f in data_files}), base, data_files
            if source.include != "**/*":
                _, _, files = list_url(url, storage, include=source.include)
    except FileNotFoundError:
        raise ConfigError(f"source {source.name!r}: nothing at {shown(url)} (no such object, prefix or bucket)") \
            from None
    except ConfigError:
        raise
    except Exception as exc:  # the backend's own errors: refused credentials, unreachable endpoint, ...
        raise ConfigError(f"source {source.name!r}: cannot list {shown(url)}: {describe_error(exc, storage)}") \
            from None
    if kind == "file":
        reader = source.reader if source.reader != "auto" else (detect_reader(files[0]) or "unknown")
        return _check_reader(source, reader, files[0]), base, files
    if kind == "prefix":
        if source.reader in ("auto", "files"):
            if not files:
                raise ConfigError(f"source {source.name!r}: no objects under {shown(url)} match include "
                                  f"{source.include!r}")
            return "files", base, files
        files = [f for f in files if detect_reader(f) == source.reader]
        if not files:
            raise ConfigError(f"source {source.name!r}: no {source.reader} files under {shown(url)}")
        return source.reader, base, files
    return _reader_of_matches(source, files, shown(url)), base, files


def _reader_of_matches(source: SourceConfig, files: Sequence[Path | RemoteFile], pattern: str) -> str:
    """The reader of the files a glob matched (on disk or in a bucket): the configured one, checked,
    or the one their names say; a one-line error for no match or a file of no known format."""
    if not files:
        raise ConfigError(f"source {source.name!r}: no files match {pattern}")
    if source.reader != "auto":
        return _check_reader(source, source.reader, files[0])
    unknown = [f for f in files if detect_reader(f) is None]
    if unknown:
        _check_reader(source, "unknown", unknown[0])
    return _data_reader({detect_reader(f) or "" for f in files})


def _data_reader(kinds: set[str]) -> str:
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _check_reader(source: SourceConfig, reader: str, example: Path | RemoteFile) -> str:
    if reader not in ("jsonl", "parquet", "files", "mixed"):
        raise ConfigError(
            f"source {source.name!r}: unknown file format {example.name!r}; "
            "use .jsonl/.jsonl.gz/.jsonl.zst/.parquet or set `reader:`"
        )
    return reader
