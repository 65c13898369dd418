"""Object storage (``s3://``, ``gs://``, any fsspec URL) beside local paths.

Sources may be URLs; a shard of a URL is read exactly like a local one (byte ranges of plain
JSONL, whole ``.gz``/``.zst`` streams, Parquet row groups), through a file object that fetches
``BLOCK_SIZE`` bytes at a time, so memory stays bounded whatever the object's size. Local paths
never go through fsspec: their behaviour and speed do not change.

Settings come from the config's ``storage`` section, per protocol (``storage.s3.options`` are the
filesystem's storage_options). Credentials never do: s3fs reads ``AWS_ACCESS_KEY_ID`` and friends
itself, and ``options_from_env`` names other variables, read here when a filesystem is made. A URL
that carries credentials (``user:pass@``) is refused at config load, and URLs are shown through
:func:`mira.core.secrets.redact_url` in messages.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from mira.core.config import ConfigError, StorageConfig
from mira.core.secrets import redact_url

Storage = Mapping[str, StorageConfig] | None
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Bytes fetched per request while streaming an object: large enough that request latency does
# not dominate, small enough that a worker holds little (s3fs's own default is 50 MB).
BLOCK_SIZE = 8 << 20
GLOB_CHARS = "*?["


def is_url(path: str | Path) -> bool:
    return isinstance(path, str) and _URL.match(path) is not None


def protocol(url: str) -> str:
    match = _URL.match(url)
    return match.group(1).lower() if match else "file"


def shown(url: str) -> str:
    """`url` as it may appear in a message or a log line."""
    return redact_url(url) or url


def check_url(url: str, what: str) -> None:
    """One-line ConfigError for a URL mira must not use: credentials inside, or nothing to name."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or parts.query:
        raise ConfigError(f"{what}: {shown(url)} carries credentials or a query; put credentials in the "
                          f"environment (storage.{protocol(url)}.options_from_env)")
    if not (parts.netloc + parts.path).strip("/"):
        raise ConfigError(f"{what}: {url} names no bucket or path")


def filesystem(url: str, storage: Storage) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for `url`, with the config's options for its protocol."""
    import fsspec

    proto = protocol(url)
    settings = (storage or {}).get(proto)
    options: dict[str, Any] = dict(settings.options) if settings else {}
    for option, variable in (settings.options_from_env.items() if settings else ()):
        value = os.environ.get(variable)
        if value is None:
            raise ConfigError(f"storage.{proto}.options_from_env.{option}: environment variable {variable} is not set")
        options[option] = value
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise ConfigError(f"{shown(url)}: reading {proto}:// needs a package that is not installed "
                          f"({short_error(exc)})") from None
    except (ValueError, TypeError) as exc:  # an unknown protocol, an option the backend does not take
        raise ConfigError(f"{shown(url)}: {short_error(exc)}") from None


@dataclass(frozen=True)
class RemoteFile:
    """One object of a URL source: enough to read it and to notice when it is rewritten."""

    url: str
    size: int
    version: str  # ETag / generation / mtime, whichever the backend gives: changes on rewrite

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url


def _remote_file(fs: Any, info: dict[str, Any]) -> RemoteFile:
    version = next((str(info[k]) for k in ("ETag", "etag", "generation", "version_id", "VersionId",
                                           "LastModified", "mtime", "last_modified") if info.get(k)), "")
    return RemoteFile(fs.unstrip_protocol(info["name"]), int(info.get("size") or 0), version.strip('"'))


def list_url(url: str, storage: Storage, include: str | None = None) -> tuple[str, str, list[RemoteFile]]:
    """(kind, base URL the files' names are relative to, the files) of a URL, kind being "file",
    "prefix" (a folder-like prefix, listed recursively) or "glob".

    `include` (a glob relative to a prefix, e.g. ``**/*.py``) narrows a prefix; a URL that names
    nothing raises FileNotFoundError. Other failures (refused credentials, an unreachable
    endpoint) propagate as the backend raised them.
    """
    fs, path = filesystem(url, storage)
    # fsspec caches listings per filesystem instance (one per process): an object rewritten since
    # the last listing must show its new ETag, or ingest would take the old data for unchanged.
    fs.invalidate_cache()
    if any(c in path for c in GLOB_CHARS):
        kind = "glob"
        base = path[:min(path.find(c) for c in GLOB_CHARS if c in path)].rsplit("/", 1)[0]
        found = fs.glob(path, detail=True)
    else:
        info = fs.info(path)
        if info["type"] != "directory":
            return "file", fs.unstrip_protocol(path.rsplit("/", 1)[0]), [_remote_file(fs, info)]
        kind, base = "prefix", path.rstrip("/")
        found = fs.glob(f"{base}/{include}", detail=True) if include else fs.find(base, detail=True)
    files = sorted((_remote_file(fs, info) for info in found.values() if info.get("type") == "file"),
                   key=lambda f: f.url)
    return kind, fs.unstrip_protocol(base), files


def open_input(name: str | Path, storage: Storage) -> BinaryIO:
    """A binary stream of a local path or a URL; a URL is fetched BLOCK_SIZE bytes at a time."""
    if not is_url(name):
        return open(name, "rb")
    fs, path = filesystem(str(name), storage)
    raw = fs.open(path, "rb", block_size=BLOCK_SIZE, cache_type="readahead")
    # fsspec files have no readline(limit), which the JSONL reader needs to skip an over-long line
    # without holding it; a standard buffered reader over them has.
    return io.BufferedReader(raw, buffer_size=1 << 16)


def file_size(name: str | Path, storage: Storage) -> int:
    if not is_url(name):
        return Path(name).stat().st_size
    fs, path = filesystem(str(name), storage)
    return int(fs.size(path))


def relative(name: str, base: str) -> str:
    """`name` relative to the folder or prefix `base` (the file name when it is not under it)."""
    prefix = base.rstrip("/") + "/"
    return name[len(prefix):] if name.startswith(prefix) else name.rstrip("/").rsplit("/", 1)[-1]


def check_transport(exc: BaseException, name: str | Path, storage: Storage) -> None:
    """Raise StageIncomplete when `exc`, met reading the URL `name`, is the network's fault rather
    than the data's (a reset connection, a timeout): a quarantine line would turn a passing outage
    into lost records. Corrupt data (bad gzip, truncated zstd, a bad Parquet footer) and an object
    that is gone are the data's, and quarantined as they are for local files."""
    import gzip

    from mira.core.errors import StageIncomplete

    if not is_url(name) or isinstance(exc, (gzip.BadGzipFile, FileNotFoundError)):
        return
    if not isinstance(exc, (OSError, *transport_errors())):
        return
    raise StageIncomplete(f"reading {shown(str(name))} failed ({describe_error(exc, storage)}); "
                          "rerun the same command to resume") from exc


def transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors of object-store clients that are not OSErrors (botocore's
    EndpointConnectionError and ConnectionClosedError derive from Exception only), for readers to
    catch beside their data errors. Taken from the modules a URL read has already imported: a run
    over local files never imports them."""
    found: list[type[BaseException]] = []
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        found += [botocore.ConnectionError, botocore.HTTPClientError]
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        found += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    return tuple(found)


def describe_error(exc: BaseException, storage: Storage) -> str:
    """"Type: first line" of a backend's error, with every credential named in the config masked
    (a backend may echo a key id back)."""
    from mira.core.secrets import Redactor

    secrets = [os.environ.get(variable) for settings in (storage or {}).values()
               for variable in settings.options_from_env.values()]
    return Redactor(secrets)(f"{type(exc).__name__}: {short_error(exc)}") or ""


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
