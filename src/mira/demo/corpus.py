"""Build the demo corpus: a real, heterogeneous mixture made from files already on this machine.

Nine sources in four formats (code, text, qa, agent), written the ways real mixtures arrive:
JSONL, gzipped JSONL, Parquet and a plain directory of files. Two kinds of planted defects let a
user check the pipeline end to end: three broken lines at the end of ``fortunes.jsonl`` (ingest
must quarantine exactly those) and degraded copies of real agent trajectories, each marked with
``demo_perturbation`` (selection should reject them).

Beside the corpus, ``eval/`` holds held-out evaluation sets for `mira compare`'s proxy training:
more of the same local material, minus everything the corpus took (see :mod:`mira.demo.evalsets`).

The build is deterministic: inputs are sorted before seeded sampling and every writer produces
identical bytes for identical records (gzip mtime 0, fixed Parquet settings). A finished build
leaves ``manifest.json`` (written last) with the seed, scale and file hashes; a rerun with the
same arguments and untouched files returns the stored summary without rebuilding.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mira.core.config import RunConfig
from mira.demo import agent, evalsets, sources
from mira.evaluation.overlap import TextIndex
from mira.io.files import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)

BUILDER_VERSION = 3  # bump when the output of any source changes, so stored corpora are rebuilt
MANIFEST = "manifest.json"
MIN_PER_SOURCE = 5  # even a tiny test build keeps every source (and every perturbation kind) present

# Broken lines appended to fortunes.jsonl: ingest must quarantine exactly these three.
PLANTED_BAD_LINES = (
    b'{"id": "fortunes/planted/malformed-json", "text": "this string is never closed}\n',
    b'{"id": "fortunes/planted/invalid-utf8", "text": "caf\xe9 \xff\xfe bytes that are not UTF-8"}\n',
    b'{"id": "fortunes/planted/no-text", "title": "a record without any text field", "demo_planted": "no_text"}\n',
)

# The sizing knobs of examples/demo.yaml (see the comments there); a test keeps the two equal.
DEMO_OVERRIDES: dict[str, dict[str, Any]] = {
    "grouping": {"format_weight": 1.5},
    "render": {"max_tokens": 256},
    "discovery": {"records_per_group": 4, "max_dimensions_per_judgment": 3, "anchors_per_group": 3,
                  "min_support": 2},
    "annotation": {"records_per_group": 12, "total_records": 100, "min_per_group": 20,
                   "self_consistency_records": 2, "rationales": False},
    # Parquet too, so every selection loads with `datasets.load_dataset("parquet", ...)`.
    "selection": {"output_formats": ["jsonl", "parquet"]},
    # `mira compare`: the planted agent defects are the known-bad records; eval sets are added by
    # demo_config (they live in the corpus folder).
    "compare": {"known_bad": "demo_perturbation"},
}


@dataclass(frozen=True)
class DemoSource:
    name: str
    format: str  # the mira record format
    file: str  # relative to the corpus folder
    reader: str  # jsonl | parquet | files
    count: int  # records at scale 1.0
    build: Callable[[random.Random, int], list[dict]]
    include: str = "**/*"


SOURCES: tuple[DemoSource, ...] = (
    DemoSource("stdlib_code", "code", "stdlib_code.jsonl", "jsonl", 500, sources.stdlib_code),
    DemoSource("sitepkg_code", "code", "sitepkg_code.parquet", "parquet", 500, sources.sitepkg_code),
    DemoSource("c_headers", "code", "c_headers", "files", 300, sources.c_headers, include="**/*.h"),
    DemoSource("man_pages", "text", "man_pages.jsonl.gz", "jsonl", 400, sources.man_pages),
    DemoSource("doc_readmes", "text", "doc_readmes.jsonl", "jsonl", 250, sources.doc_readmes),
    DemoSource("python_faq", "qa", "python_faq.parquet", "parquet", 180, sources.python_faq),
    DemoSource("python_docs", "text", "python_docs.jsonl", "jsonl", 500, sources.python_docs),
    DemoSource("bfcl_agent", "agent", "bfcl_agent.jsonl", "jsonl", 100, lambda rng, n: _bfcl(rng, n)),
    DemoSource("fortunes", "text", "fortunes.jsonl", "jsonl", 400, sources.fortunes),
)


def _bfcl(rng: random.Random, n: int) -> list[dict]:
    if not agent.bfcl_files():
        raise sources.SourceMissing("agentsynth is not installed (pip install 'agentsynth-ai==0.9.0')")
    half = max(MIN_PER_SOURCE, n // 2)  # half real trajectories, half degraded copies
    return agent.build_records(half, half, rng)


def _count(source: DemoSource, scale: float) -> int:
    return _count_n(source.count, scale)


def _count_n(count: int, scale: float) -> int:
    return max(MIN_PER_SOURCE, round(count * scale))


# --- writers -------------------------------------------------------------------------------------

def _jsonl_bytes(rows: list[dict]) -> bytes:
    return b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in rows)


def _write_jsonl(path: Path, rows: list[dict], extra: bytes = b"") -> None:
    data = _jsonl_bytes(rows) + extra
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime 0: same records, same bytes
    atomic_write_bytes(path, data)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(rows[0]) if rows else ["id"]
    schema = pa.schema([(c, pa.string()) for c in columns])
    table = pa.Table.from_pylist([{c: (None if r.get(c) is None else str(r[c])) for c in columns} for r in rows],
                                 schema=schema)
    with atomic_path(path) as tmp:
        # Small row groups so ingest can still cut a Parquet source into several shards.
        pq.write_table(table, tmp, compression="zstd", row_group_size=128)


def _write_dir(path: Path, rows: list[dict]) -> None:
    """One file per record; built beside the target and swapped in, so a crash leaves no half folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for row in rows:
        target = tmp / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(row["bytes"])
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


# --- build ---------------------------------------------------------------------------------------

def _stored(out_dir: Path, seed: int, scale: float) -> dict[str, Any] | None:
    """The stored manifest if it describes this very build and its files are intact, else None."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (manifest.get("seed"), manifest.get("scale"), manifest.get("version")) != (seed, scale, BUILDER_VERSION):
        return None
    for entry in [*manifest.get("sources", {}).values(), *manifest.get("eval_sets", {}).values()]:
        path = out_dir / entry["file"]
        if not path.exists() or _digest(path) != entry.get("sha256"):
            return None
    return manifest


def build(out_dir: Path, seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """Build the demo corpus under `out_dir` and return its manifest (also written as manifest.json).

    `scale` multiplies every source's record count (at least 5 each); sources whose files are
    missing on this machine are listed under "skipped" with the reason, never fatal.
    """
    out_dir = Path(out_dir)
    if scale <= 0:
        raise ValueError("scale must be > 0")
    stored = _stored(out_dir, seed, scale)
    if stored is not None:
        log.info("demo corpus in %s is up to date (seed %s, scale %s)", out_dir, seed, scale)
        return stored
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # the manifest marks a finished build: remove it first
    started = time.monotonic()
    summary: dict[str, Any] = {"records": 0, "sources": {}, "skipped": {}, "seed": seed, "scale": scale,
                               "version": BUILDER_VERSION, "eval_sets": {}}
    taken_ids: set[str] = set()
    taken = TextIndex()
    for source in SOURCES:
        t0 = time.monotonic()
        # One generator per source: adding or skipping a source never changes another one's sample.
        rng = random.Random(f"mira-demo:{seed}:{source.name}")
        try:
            rows = source.build(rng, _count(source, scale))
        except sources.SourceMissing as exc:
            summary["skipped"][source.name] = str(exc)
            log.warning("demo source %s skipped: %s", source.name, exc)
            continue
        path = out_dir / source.file
        entry: dict[str, Any] = {"records": len(rows), "format": source.format, "file": source.file,
                                 "reader": source.reader}
        if source.reader == "files":
            _write_dir(path, rows)
        elif source.reader == "parquet":
            _write_parquet(path, rows)
        elif source.name == "fortunes":
            _write_jsonl(path, rows, b"".join(PLANTED_BAD_LINES))
            entry["records"] += len(PLANTED_BAD_LINES)  # as ingest counts them: lines read
            entry["planted_bad_lines"] = len(PLANTED_BAD_LINES)
        else:
            _write_jsonl(path, rows)
        evalsets.take_corpus(rows, taken_ids, taken)
        if source.name == "bfcl_agent":
            kinds: dict[str, int] = {}
            for row in rows:
                kinds[str(row["demo_perturbation"])] = kinds.get(str(row["demo_perturbation"]), 0) + 1
            entry["perturbations"] = dict(sorted(kinds.items()))
        entry["sha256"] = _digest(path)
        summary["sources"][source.name] = entry
        summary["records"] += entry["records"]
        log.info("demo source %s: %d records in %.1f s", source.name, entry["records"], time.monotonic() - t0)
    for eval_set in evalsets.EVAL_SETS:
        rng = random.Random(f"mira-demo-eval:{seed}:{eval_set.name}")
        try:
            rows = eval_set.build(rng, _count_n(eval_set.count, scale), taken_ids, taken)
        except sources.SourceMissing as exc:
            summary["skipped"][eval_set.name] = str(exc)
            continue
        _write_jsonl(out_dir / eval_set.file, rows)
        summary["eval_sets"][eval_set.name] = {"records": len(rows), "format": eval_set.format, "file": eval_set.file,
                                               "sha256": _digest(out_dir / eval_set.file)}
    atomic_write_bytes(out_dir / MANIFEST, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    log.info("demo corpus: %d records from %d sources in %.1f s", summary["records"], len(summary["sources"]),
             time.monotonic() - started)
    return summary


def demo_config(out_dir: Path, run_dir: Path | str) -> RunConfig:
    """The run config for a built corpus: examples/demo.yaml with absolute paths.

    Sources listed as skipped in the corpus manifest are left out.
    """
    out_dir = Path(out_dir).resolve()
    try:
        skipped = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("skipped", {})
    except (OSError, ValueError):
        skipped = {}
    source_list = []
    for source in SOURCES:
        if source.name in skipped:
            continue
        entry: dict[str, Any] = {"name": source.name, "path": str(out_dir / source.file), "format": source.format}
        if source.reader == "files":
            entry.update(reader="files", include=source.include)
        source_list.append(entry)
    eval_sets = [{"name": e.name, "path": str(out_dir / e.file), "format": e.format} for e in evalsets.EVAL_SETS
                 if e.name not in skipped]
    overrides = {**DEMO_OVERRIDES, "compare": {**DEMO_OVERRIDES["compare"], "eval_sets": eval_sets}}
    return RunConfig.model_validate({"name": "demo", "run_dir": str(run_dir), "sources": source_list, **overrides})
