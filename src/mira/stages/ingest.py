"""Ingest: turn heterogeneous sources into an inventory later stages can trust.

For every source: resolve its files, cut them into shards, detect the record format, then read
every record once, counting tokens and quarantining bad records with a reason. The invariant
``records == ok + quarantined`` holds per source and is checked before the inventory is written.

Record ids must be unique within a source (scores, labels and decisions are keyed by them): a
record whose id an earlier record of the source (in shard order) already has is quarantined as a
duplicate, and a source whose files number their records each on their own gets ids qualified by
file (:mod:`mira.corpus.record_ids`). Ingest decides and records it on the shards, so every later
stage sees the same ids and quarantines the same records. A source with no usable record is said in
one line; a corpus without any stops here (exit 2).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mira.core.config import ConfigError, RunConfig, SourceConfig
from mira.corpus.freshness import file_identity, ingest_fingerprint, source_digests, source_states
from mira.corpus.record_ids import files_sharing_ids, id_hash, may_number_per_file, quarantine_duplicates, use_file_ids
from mira.corpus.records import detect_source_format, file_qualified_id, full_text
from mira.corpus.sample_index import IndexMerger, ShardCandidates, index_seeds, index_size, write_index
from mira.corpus.shard_tokens import (
    NOT_A_RECORD,
    Windows,
    count_record,
    render_settings,
    tokens_path,
    write_shard_tokens,
)
from mira.corpus.sources import Quarantined, iter_positioned
from mira.engines import map_tasks
from mira.io.digests import shard_digest
from mira.io.files import atomic_path, atomic_write_json, is_atomic_temp, remove_own_files
from mira.io.readers import Shard, file_label, iter_shard, list_source_files, plan_shards
from mira.io.storage import shown
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.text.tokens import get_tokenizer

log = logging.getLogger(__name__)

FORMAT_SAMPLE = 64
# Top-level field names remembered per source (first seen first), so selected records of a source
# all carry the same columns and `datasets.load_dataset("json", ...)` reads every shard.
MAX_FIELDS = 500


def fingerprint(ctx: StageContext) -> str:
    # Sizes and mtimes of every input file are part of the fingerprint: changed data, new ingest.
    # An object's ETag (or generation) stands in for the mtime of a URL source's files.
    return ingest_fingerprint(ctx.config)


def reads(ctx: StageContext) -> dict[str, str]:
    """A digest of each source's files (its done marker keeps them): score and select name the
    source that changed since (:func:`mira.corpus.freshness.require_ingested_sources`), and so does the dry run."""
    return source_digests(source_states(ctx.config))


def plan(config: RunConfig, run: RunDir) -> list[str]:
    """One line per source; a source the real run would refuse makes the dry run fail the same way."""
    lines, errors = [], []
    for source in config.sources:
        try:
            reader, _, files = list_source_files(source, config.storage)
            size = sum(file_identity(p)[0] for p in files)
            lines.append(f"{source.name}: {len(files)} {reader} file(s), {size / 1e6:.1f} MB")
        except ConfigError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"source {source.name!r}: {exc.strerror or exc}")
    if errors:
        raise ConfigError("; ".join(errors))
    return lines


def _length_histogram(counts: Counter[int]) -> dict[str, int]:
    """Token-length histogram in power-of-two buckets ("<=64", "<=128", ...)."""
    return {f"<={2 ** b}": counts[b] for b in sorted(counts) if counts[b] > 0}


def _percentile(counts: Counter[int], q: float) -> int:
    total = sum(counts.values())
    if not total:
        return 0
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= q * total:
            return 2 ** bucket
    return 2 ** max(counts)


def ingest_shard(config: RunConfig, source: SourceConfig, shard: Shard, fmt: str, out: Path,
                 tokens_out: Path | None = None, ingest_fingerprint: str = "",
                 per_file: bool = False) -> dict[str, Any]:
    """Read one shard: count tokens, write its quarantine entries to `out` and, when `tokens_out`
    is given, every item's token count there (:mod:`mira.corpus.shard_tokens`); return its stats.
    With `per_file` (a source of several files) the hashes and sample of its ids qualified by file
    come back too (:mod:`mira.corpus.record_ids`), for the driver to choose once every shard is in."""
    tokenizer = get_tokenizer(config.tokenizer.name)
    counts: list[int] = []  # per input item, for score to reuse
    windows: dict[int, Windows] = {}  # item position -> where its render windows lie in its bytes
    digest = shard_digest()
    stats: dict[str, Any] = {"records": 0, "ok": 0, "quarantined": 0, "tokens": 0, "bytes": 0,
                             "reasons": Counter(), "buckets": Counter(), "max_tokens": 0, "fields": {}}
    id_hashes: list[int] = []  # of the usable records, in order: duplicates are found across shards
    # The records later samples draw (mira.corpus.sample_index): found now, so they are never searched for again.
    candidates = ShardCandidates(index_seeds(config), index_size(config))
    file = file_label(shard.files[0], shard.base) if per_file else None
    file_hashes: list[int] = []
    file_candidates = ShardCandidates(index_seeds(config), index_size(config))
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for position, offset, item in iter_positioned(config, source, shard, fmt, digest):
            stats["records"] += 1
            if isinstance(item, Quarantined):
                counts.append(NOT_A_RECORD)
                stats["bytes"] += item.nbytes
                stats["quarantined"] += 1
                reason_kind = item.reason.split(" (")[0].split(":")[0]
                stats["reasons"][reason_kind] += 1
                handle.write(json.dumps({"source": source.name, "locator": item.locator,
                                         "reason": item.reason}, ensure_ascii=False) + "\n")
                continue
            if len(stats["fields"]) < MAX_FIELDS:
                stats["fields"].update(dict.fromkeys(item.data))
            # The same text `render` counts, so inventory and score/select token totals agree.
            text = full_text(item)
            tokens, spans = count_record(item, text, tokenizer, config.render.max_tokens, config.render.windows)
            counts.append(tokens)
            if spans is not None:
                windows[len(counts) - 1] = spans
            id_hashes.append(id_hash(item.id))
            candidates.add(item.id, position, offset, item.locator)
            if file is not None:
                qualified = file_qualified_id(item, file)
                file_hashes.append(id_hash(qualified))
                file_candidates.add(qualified, position, offset, item.locator)
            stats["ok"] += 1
            stats["tokens"] += tokens
            stats["bytes"] += len(text.encode("utf-8", "replace"))
            stats["buckets"][max(6, math.ceil(math.log2(max(tokens, 1))))] += 1
            stats["max_tokens"] = max(stats["max_tokens"], tokens)
    if tokens_out is not None:
        write_shard_tokens(tokens_out, counts, windows, ingest_fingerprint=ingest_fingerprint,
                           tokenizer=tokenizer.name, input_digest=digest.hexdigest(), render=render_settings(config))
    # JSON-safe (the Ray engine returns results as JSON): field order as a list, bucket keys as text,
    # id hashes as plain ints.
    out_stats = {**stats, "fields": list(stats["fields"]), "buckets": {str(b): n for b, n in stats["buckets"].items()},
                 "id_hashes": id_hashes, "sample": candidates.to_json()}
    if file is not None:
        out_stats.update(file_id_hashes=file_hashes, file_sample=file_candidates.to_json())
    return out_stats


def _from_worker(stats: dict[str, Any]) -> dict[str, Any]:
    """Undo the JSON-safe form in which `ingest_shard` returns its stats."""
    hashes: dict[str, Any] = {key: np.asarray(stats[key], dtype=np.uint64)
                              for key in ("id_hashes", "file_id_hashes") if key in stats}
    return {**stats, "reasons": Counter(stats["reasons"]), "fields": dict.fromkeys(stats["fields"]),
            "buckets": Counter({int(bucket): n for bucket, n in stats["buckets"].items()}), **hashes}


def _detect(config: RunConfig, source: SourceConfig, shards: list[Shard]) -> str:
    if source.format != "auto":
        return source.format
    samples = []
    for shard in shards:
        for raw in iter_shard(shard, config.ingest.max_record_bytes, storage=config.storage):
            if raw.data is not None:
                data = dict(raw.data)
                for target, original in source.fields.items():
                    if original in data:
                        data[target] = data[original]
                samples.append(data)
            if len(samples) >= FORMAT_SAMPLE:
                break
        if len(samples) >= FORMAT_SAMPLE:
            break
    # "auto" left in place: each record is then detected on its own and quarantined if nothing fits.
    return detect_source_format(samples) or "auto"


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.engines import start_workers_early

    config, run_dir = ctx.config, ctx.run
    if not config.sources:
        raise ConfigError("no sources configured: add a `sources:` list to the config")
    plans: dict[str, tuple[SourceConfig, list[Shard], str]] = {}
    errors: dict[str, str] = {}
    for source in config.sources:
        try:
            shards = plan_shards(source, config.ingest.shard_records, config.ingest.max_record_bytes, config.storage)
        except ConfigError as exc:
            errors[source.name] = str(exc)
            continue
        plans[source.name] = (source, shards, _detect(config, source, shards))
    if errors:
        # A source that cannot be found is a config mistake, not bad data: stop before any work.
        raise ConfigError("; ".join(errors.values()))

    qdir = run_dir.quarantine_dir / "shards"
    jobs = [(name, shard) for name, (_, shards, _) in plans.items() for shard in shards]
    start_workers_early(config.engine, len(jobs))  # the fork server imports while stale files are cleared
    # The engine every stage shares: its start method, bounded submission, Ray, and workers that
    # die with this process.
    # Token counts are stamped with this ingest's fingerprint, so score never reuses another's.
    ingest_fp = fingerprint(ctx)
    tokens_dir = run_dir.path("inventory", "tokens")
    current = {tokens_path(run_dir, shard).relative_to(tokens_dir).as_posix() for _, shard in jobs}
    remove_own_files(tokens_dir, lambda path: _is_stale_tokens(path, current))
    sample_dir = run_dir.path("inventory", "sample")
    remove_own_files(sample_dir, lambda path: _is_stale_index(path, set(plans)))
    per_file = {name: may_number_per_file(shards) for name, (_, shards, _) in plans.items()}
    tasks = [(config, plans[name][0], shard, plans[name][2], qdir / name / f"{shard.name}.jsonl",
              tokens_path(run_dir, shard), ingest_fp, per_file[name]) for name, shard in jobs]
    task = ctx.progress("ingest shards", len(jobs))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    # Each source's sample index is merged as shards finish: only what can still be in it is held.
    samples = {name: IndexMerger(index_size(config)) for name in plans}
    file_samples = {name: IndexMerger(index_size(config)) for name in plans if per_file[name]}
    for index, stats in map_tasks(config.engine, ingest_shard, tasks):
        name, shard = jobs[index]
        samples[name].add(shard.index, stats.pop("sample"))
        if "file_sample" in stats:
            file_samples[name].add(shard.index, stats.pop("file_sample"))
        results[(name, shard.index)] = _from_worker(stats)
        task.advance()
    task.close()

    inventory: dict[str, Any] = {"sources": {}, "totals": {}}
    for name, (source, shards, fmt) in plans.items():
        notes: list[str] = []
        shared = files_sharing_ids(shards, [results[(name, s.index)]["id_hashes"] for s in shards])
        if shared is not None:
            shards = use_file_ids(shards, [results[(name, s.index)] for s in shards])
            samples[name] = file_samples[name]
            first, second = (file_label(f, shards[0].base) for f in shared)
            notes.append(f"source {name}: its files number their records each on their own (the same id in {first} "
                         f"and {second}), so each id is qualified by its file (`{first}#<id>`); for ids unique "
                         "across the files, name the field in `fields: {id: <field>}`")
        shards = quarantine_duplicates(config, source, shards, fmt, results, qdir)
        duplicates = sum(len(s.duplicates) for s in shards)
        if duplicates:
            notes.append(f"source {name}: {duplicates} record(s) repeat an earlier record's id; "
                         "quarantined as duplicates (see quarantine/)")
        agg: dict[str, Any] = {"records": 0, "ok": 0, "quarantined": 0, "tokens": 0, "bytes": 0,
                               "reasons": Counter(), "buckets": Counter(), "max_tokens": 0}
        fields: dict[str, None] = {}
        for shard in shards:
            stats = results[(name, shard.index)]
            for key in ("records", "ok", "quarantined", "tokens", "bytes"):
                agg[key] += stats[key]
            agg["reasons"].update(stats["reasons"])
            agg["buckets"].update(stats["buckets"])
            agg["max_tokens"] = max(agg["max_tokens"], stats["max_tokens"])
            fields.update(stats["fields"])
        if agg["records"] != agg["ok"] + agg["quarantined"]:  # the invariant every stage relies on
            raise RuntimeError(f"ingest bookkeeping error in source {name}: counts do not add up")
        _merge_quarantine(qdir / name, run_dir.quarantine_dir / f"{name}.jsonl", shards)
        sample_index = samples[name].index(shards)
        if sample_index["usable"] != agg["ok"]:
            raise RuntimeError(f"ingest bookkeeping error in source {name}: sample index does not add up")
        write_index(run_dir, name, sample_index, ingest_fp)
        notes += _empty_notes(name, source.path, agg)
        for note in notes:
            log.info("%s", note)  # the CLI prints the notes: a warning would say each twice
        ctx.notes.extend(notes)
        inventory["sources"][name] = {
            "path": source.path, "reader": "+".join(sorted({s.reader for s in shards})) or None, "format": fmt,
            "files": len({f for s in shards for f in s.files}),
            "records": agg["records"], "ok": agg["ok"], "quarantined": agg["quarantined"],
            # Most frequent first, ties by name: the same order whichever engine ran the shards.
            "quarantine_reasons": dict(sorted(agg["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "tokens": agg["tokens"], "bytes": agg["bytes"],
            "length_tokens": {"p50": _percentile(agg["buckets"], 0.5), "p90": _percentile(agg["buckets"], 0.9),
                              "max": agg["max_tokens"], "histogram": _length_histogram(agg["buckets"])},
            "fields": list(fields)[:MAX_FIELDS],
            "shards": [s.to_dict() for s in shards],
            # Only where there is something to say, so other inventories stay as they were.
            **({"ids": "per file"} if shared is not None else {}), **({"notes": notes} if notes else {}),
        }
    remove_own_files(qdir, _is_quarantine_part)  # per-shard parts, all merged above
    totals = {k: sum(s[k] for s in inventory["sources"].values()) for k in ("records", "ok", "quarantined", "tokens")}
    inventory["totals"] = {**totals, "sources": len(inventory["sources"])}
    atomic_write_json(run_dir.inventory_path, inventory)
    if not totals["ok"]:  # nothing to group, score or select: no done marker, the inventory says why
        raise ConfigError(f"no usable record in any source ({totals['records']} read, "
                          f"{totals['quarantined']} quarantined: see {run_dir.inventory_path} and "
                          f"{run_dir.quarantine_dir}/); check the sources' paths, formats and `fields`")
    return inventory["totals"]


def _empty_notes(name: str, path: str, agg: dict[str, Any]) -> list[str]:
    """A line for a source that gives nothing to select from: empty files, or every record quarantined."""
    if not agg["records"]:
        return [f"source {name}: {shown(path)} holds no record (empty); it takes no part in the run"]
    if not agg["ok"]:
        return [f"source {name}: none of its {agg['records']} record(s) is usable (all quarantined, see "
                f"quarantine/{name}.jsonl); it takes no part in the run"]
    return []


def _merge_quarantine(shard_dir: Path, out: Path, shards: list[Shard]) -> None:
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        for shard in shards:
            part = shard_dir / f"{shard.name}.jsonl"
            if part.exists():
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, handle, 1 << 20)
    remove_own_files(shard_dir, _is_quarantine_part)


def _is_stale_tokens(path: PurePosixPath, current: set[str]) -> bool:
    # A temporary file of a killed ingest (inventory/tokens/<source>/.<shard>.npz.<...>.tmp), or the
    # counts of a shard this ingest no longer has; nothing of the user's.
    if is_atomic_temp(path.name, r"\d{5}\.npz"):
        return True
    return len(path.parts) == 2 and re.fullmatch(r"\d{5}\.npz", path.name) is not None and str(path) not in current


def _is_stale_index(path: PurePosixPath, sources: set[str]) -> bool:
    # inventory/sample/<source>.json of a source no longer configured, or a killed write's temporary.
    if is_atomic_temp(path.name, r".+\.json"):
        return True
    return len(path.parts) == 1 and path.suffix == ".json" and path.stem not in sources


def _is_quarantine_part(path: PurePosixPath) -> bool:
    # quarantine/shards/<source>/<shard>.jsonl (and its temporary names), nothing of the user's.
    return re.fullmatch(r"\d{5}\.jsonl", path.name) is not None or is_atomic_temp(path.name, r"\d{5}\.jsonl")
