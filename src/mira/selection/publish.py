"""Publishing a finished selection to ``selection.output`` (a folder or any fsspec URL, e.g. s3://).

The selection is built and checked in the local run directory first (see :mod:`mira.stages.select`);
publishing copies its files to ``<output>/<name>/``. Object stores have no rename, so the run
directory's trick (build under a temporary name, rename into place) is not available there.
Instead ``summary.json`` is the completion marker, as it is for a local selection:

1. the published ``summary.json`` is deleted first: from then on readers see the prefix as
   unfinished, never as an old summary over new files;
2. every other file is uploaded to its final key (an object upload is atomic: a key holds the
   whole old or the whole new object, never part of one);
3. files of an earlier publication that this selection no longer has (a source or shard gone)
   are deleted, only names mira writes, so a reader never mixes two selections;
4. ``summary.json`` is uploaded last.

A reader trusts ``<output>/<name>/`` only while its ``summary.json`` exists; its counts say what
the files hold (kept + rejected + quarantined = records in, per source). A publication that
fails part way leaves no summary, and the stage is not marked done: rerunning ``mira select``
publishes again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from mira.core.config import ConfigError
from mira.io.storage import Storage, describe_error, filesystem, is_url, shown

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


def publication_url(output: str, name: str) -> str:
    return f"{output.rstrip('/')}/{name}"


def _filesystem(output: str, storage: Storage) -> tuple[Any, str]:
    if is_url(output):
        return filesystem(output, storage)
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(auto_mkdir=True), str(Path(output).resolve())


def check_output(output: str, storage: Storage) -> None:
    """One-line ConfigError unless `output`'s bucket (or, for a folder, some parent) exists.

    Checked before any selection work, so a typo in a bucket name costs nothing.
    """
    try:
        fs, path = _filesystem(output, storage)
        if not is_url(output):
            return  # a local folder is created as needed
        bucket = path.strip("/").split("/", 1)[0]
        if not fs.exists(bucket):
            raise ConfigError(f"selection.output: {shown(output)}: no such bucket {bucket!r}")
    except ConfigError:
        raise
    except Exception as exc:  # refused credentials, unreachable endpoint: the backend's own errors
        raise ConfigError(f"selection.output: cannot reach {shown(output)}: {describe_error(exc, storage)}") from None


def publish_selection(local: Path, output: str, name: str, storage: Storage,
                      is_ours: Callable[[PurePosixPath], bool]) -> str:
    """Copy the finished selection folder `local` to ``<output>/<name>/``; returns that URL.

    `is_ours` tells the selection's own files (relative names) from anything else in the folder.
    """
    url = publication_url(output, name)
    try:
        fs, root = _filesystem(url, storage)
        root = root.rstrip("/")
        files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
        files = [f for f in files if is_ours(PurePosixPath(f))]
        if SUMMARY not in files:
            raise RuntimeError(f"{local} is not a finished selection (no {SUMMARY})")
        parts = [f for f in files if f != SUMMARY]
        summary_key = f"{root}/{SUMMARY}"
        if fs.exists(summary_key):
            fs.rm_file(summary_key)
        if parts:
            fs.put([str(local / f) for f in parts], [f"{root}/{f}" for f in parts])
        stale = [key for key, rel in _published(fs, root) if rel not in parts and rel != SUMMARY
                 and is_ours(PurePosixPath(rel))]
        if stale:
            fs.rm(stale)
        fs.put_file(str(local / SUMMARY), summary_key)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"selection.output: publishing to {shown(url)} failed ({describe_error(exc, storage)}); "
                          f"the selection is complete in {local}; rerun `mira select` to publish it again") from None
    log.info("published selection %s to %s (%d files, %s last)", name, shown(url), len(files), SUMMARY)
    return url


def _published(fs: Any, root: str) -> list[tuple[str, str]]:
    """(key, name relative to `root`) of every file already under `root`."""
    if not fs.exists(root):
        return []
    return [(key, key[len(root) + 1:]) for key in fs.find(root) if key.startswith(root + "/")]
