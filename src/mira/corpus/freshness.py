"""Is the inventory still true of the sources? What ingest fingerprints, and the check of the stages after it.

Ingest cuts every source into shards (byte ranges of JSONL, row groups of Parquet, chunks of a folder's
files) once, and every later stage reads those shards. A record appended to a file after ingest lies
outside every shard, and a truncated file ends before its last shard does: a stage that read the shards
as planned would score or select a subset without a word (``mira run`` reruns ingest first, the
per-stage commands do not). So score and select first compare the sources as they are now (each
file's size and mtime, an object's ETag, and the settings that decide the shards) with what ingest saw,
and stop in one line when they differ. A same-size edit that keeps the mtime is caught later, by the
shard digests score records and select checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, RunConfig
from mira.core.errors import StageNotReady
from mira.core.hashing import fingerprint as make_fingerprint
from mira.io.readers import list_source_files
from mira.io.storage import RemoteFile
from mira.run.rundir import RunDir


def file_identity(file: Path | RemoteFile) -> tuple[int, int | str]:
    """(size, version) of a source file: its mtime, or an object's ETag (or generation)."""
    if isinstance(file, RemoteFile):
        return file.size, file.version
    info = file.stat()
    return info.st_size, info.st_mtime_ns


def source_states(config: RunConfig) -> list[list[Any]]:
    """Per source ``[name, [[file, size, version], ...]]``, or ``[name, error]`` where it cannot be listed."""
    states: list[list[Any]] = []
    for source in config.sources:
        try:
            _, _, files = list_source_files(source, config.storage)
            states.append([source.name, [[str(p), *file_identity(p)] for p in files]])
        except (ConfigError, OSError) as exc:
            states.append([source.name, str(exc)])
    return states


def ingest_fingerprint(config: RunConfig, states: list[list[Any]] | None = None) -> str:
    """Ingest's stage fingerprint: its settings and the identity of every input file (changed data,
    new ingest)."""
    states = source_states(config) if states is None else states
    return make_fingerprint("ingest-v3", config.section_hash("sources", "ingest", "tokenizer"), states)


def source_digests(states: list[list[Any]]) -> dict[str, str]:
    """One digest per source's files (ingest's done marker keeps them under ``reads``), so a changed
    source can be named."""
    return {f"files of source {name}": make_fingerprint(files) for name, files in states}


def require_ingested_sources(config: RunConfig, run: RunDir, stage: str) -> None:
    """Stop (StageNotReady, one line) when the sources or ingest's settings changed since the done
    ingest: `stage` would read shards planned for other files. Nothing to check before ingest ran."""
    marker = run.done("ingest")
    if marker is None:
        return
    states = source_states(config)
    missing = [f"source {name!r}: {files}" for name, files in states if isinstance(files, str)]
    if missing:
        raise ConfigError(f"{'; '.join(missing)} (it was there at ingest)")
    if ingest_fingerprint(config, states) == marker.get("fingerprint"):
        return
    recorded = marker.get("reads") or {}
    changed = [key.removeprefix("files of source ") for key, digest in source_digests(states).items()
               if recorded and recorded.get(key) != digest]
    if changed:
        what = f"the files of {', '.join(changed)} changed since ingest (appended, truncated or rewritten)"
    elif recorded:
        what = "the sources, ingest or tokenizer settings changed since ingest"
    else:
        what = "the sources (their files or settings) changed since ingest"
    raise StageNotReady(f"{what}: {stage} would read the shards ingest planned for the old files and miss "
                        f"or misread records; run `mira ingest`, then `mira {stage}` (or `mira run`)")
