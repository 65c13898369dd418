"""Applying the students to the whole corpus: per-shard score tables, resumable shard by shard."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mira.artifacts.scores import SCORES_DONE, SCORES_SUMMARY
from mira.core.config import ConfigError, RunConfig
from mira.core.errors import StageNotReady
from mira.core.hashing import fingerprint as make_fingerprint
from mira.core.progress import ProgressFactory, null_progress
from mira.corpus.freshness import require_ingested_sources
from mira.corpus.records import Record
from mira.corpus.shard_tokens import ShardTokens, read_shard_tokens, render_settings
from mira.corpus.sources import Quarantined, SourceInfo, iter_shard_records, source_infos
from mira.io.digests import shard_digest
from mira.io.files import atomic_path, is_atomic_temp, read_json
from mira.io.readers import Shard
from mira.run.rundir import RunDir
from mira.scoring.apply import NO_GROUP, LoadedGroup, batches, models_for, score_batch
from mira.scoring.apply import StageModels as StageModels  # tests and benchmarks subclass it from here

log = logging.getLogger(__name__)

VERSION = "score-v2"  # v2: per-anchor scores only, no aggregate column
# Rows per Parquet row group. A constant (not the batch size) so that the bytes of a shard do not
# depend on how it was batched, which engine ran it, or whether the run was resumed.
ROW_GROUP_ROWS = 4_096
BASE_COLUMNS = ("id", "locator", "source", "group", "tokens")


# --- paths -------------------------------------------------------------------------------------

def scores_dir(run: RunDir) -> Path:
    return run.path("scores")


def shard_scores_path(run: RunDir, shard: Shard) -> Path:
    return scores_dir(run) / shard.source / f"{shard.name}.parquet"


def shard_marker_path(run: RunDir, shard: Shard) -> Path:
    return scores_dir(run) / shard.source / f"{shard.name}.done.json"


def shard_done(run: RunDir, shard: Shard, stage_fp: str) -> dict[str, Any] | None:
    """The shard's done marker if it holds `stage_fp` and its Parquet file exists, else None."""
    path = shard_marker_path(run, shard)
    if not path.exists() or not shard_scores_path(run, shard).exists():
        return None
    try:
        marker = read_json(path)
    except (OSError, ValueError):
        return None  # a damaged marker means "not done"
    return marker if marker.get("fingerprint") == stage_fp else None


def schema(anchors: list[str]) -> Any:
    import pyarrow as pa

    fields = [pa.field("id", pa.string()), pa.field("locator", pa.string()), pa.field("source", pa.string()),
              pa.field("group", pa.string()), pa.field("tokens", pa.int64())]
    fields += [pa.field(anchor, pa.float64()) for anchor in anchors]
    fields.append(pa.field("quarantine", pa.string()))
    return pa.schema(fields)


# --- stage protocol ----------------------------------------------------------------------------


def student_keys(run: RunDir) -> dict[str, Any]:
    """Per group, what its trained student depends on (``metrics.json`` ``train_key``), else the
    hash of its model description (a student written by an older distill has no train key)."""
    from mira.io.files import hash_files

    folder = run.path("students")
    keys: dict[str, Any] = {}
    for metrics in sorted(folder.glob("*/metrics.json")) if folder.exists() else []:
        group = metrics.parent
        keys[group.name] = read_json(metrics).get("train_key") or hash_files(
            [p for p in group.rglob("*") if p.is_file() and p.name != "mask.json"])
    return keys


def require_students(run: RunDir) -> None:
    """A one-line StageNotReady, before any work, for a group that has no trained student.

    Distill does not finish without one, but a run made by an older version (or a deleted
    folder) must not end in a FileNotFoundError from a worker.
    """
    from mira.artifacts.anchors import rubric_is_empty
    from mira.artifacts.groups import load_groups
    from mira.students import student_dir

    groups = load_groups(run)
    missing = [g.id for g in groups.groups if g.sources and not rubric_is_empty(run, g.id)
               and not (student_dir(run, g.id) / "student.json").exists()]
    if missing:
        raise StageNotReady(f"no trained student for groups {', '.join(missing)} (students/<group>/ is empty); "
                            "rerun `mira distill --force`, which says what it lacks")


def scores_fingerprint(config: RunConfig, run: RunDir) -> str:
    """The score stage's fingerprint: what a score file's done marker must hold to be current."""
    # The engine, worker count and batch size are deliberately absent: they never change a score.
    # Selection and reliability settings are absent too: a new budget, threshold or aggregator never
    # invalidates the scores (select applies the mask). Of distill's output only the trained students
    # matter, so their train keys stand for distill: a mask-only distill rerun leaves scores done.
    ingest, group = run.require("ingest"), run.require("group")
    run.require("distill")
    return make_fingerprint(VERSION, config.section_hash("tokenizer", "render"), ingest, group,
                            student_keys(run))


def try_fingerprint(config: RunConfig, run: RunDir) -> str | None:
    try:
        return scores_fingerprint(config, run)
    except Exception:  # noqa: BLE001
        return None


# --- the work ----------------------------------------------------------------------------------

def score_corpus(config: RunConfig, run: RunDir, *, force: bool = False,
                 progress: ProgressFactory = null_progress, models: StageModels | None = None) -> dict[str, Any]:
    """Score every shard not yet done with the current fingerprint; return corpus-wide counts."""
    from mira.engines import map_tasks, start_workers_early

    infos = source_infos(run)
    require_ingested_sources(config, run, "score")  # records appended since ingest lie outside its shards
    # The fork server imports while the fingerprint is computed (shards done already are not known
    # yet: at worst a server is started for a rerun that has nothing left to do).
    start_workers_early(config.engine, sum(len(info.shards) for info in infos))
    models = models or StageModels(device=config.student.encoder_device)
    stage_fp = scores_fingerprint(config, run)
    groups = models.source_to_group(run)
    # A source with no usable record belongs to no group; its rows are all quarantined.
    missing = [info.name for info in infos if info.name not in groups and info.ok > 0]
    if missing:
        raise ConfigError(f"sources without a group in groups.json: {', '.join(missing)}; rerun `mira group`")
    _remove_partial_files(run, infos)

    markers: dict[tuple[str, int], dict[str, Any]] = {}
    tasks: list[tuple[Any, ...]] = []
    keys: list[tuple[str, int]] = []
    for info in infos:
        for shard in info.shards:
            marker = None if force else shard_done(run, shard, stage_fp)
            if marker is not None:
                markers[(info.name, shard.index)] = marker
                continue
            tasks.append((config, str(run.root), shard, info.format, groups.get(info.name), stage_fp, models))
            keys.append((info.name, shard.index))
    skipped = len(markers)
    task = progress("score shards", len(tasks))
    for index, result in map_tasks(config.engine, _score_shard_task, tasks, gpus=worker_gpus(config, run, groups)):
        markers[keys[index]] = result
        task.advance()
    task.close()
    return _summarize(run, infos, groups, markers, stage_fp, skipped)


def worker_gpus(config: RunConfig, run: RunDir, groups: dict[str, str]) -> float:
    """GPUs each score worker asks the engine for: ``engine.gpus_per_worker`` where a group's
    student is the encoder, none where every student is static (it never uses a GPU)."""
    from mira.students import student_dir

    if not config.engine.gpus_per_worker:
        return 0.0
    metas = [student_dir(run, group) / "student.json" for group in sorted(set(groups.values()))]
    kinds = {read_json(meta).get("kind") for meta in metas if meta.exists()}
    return config.engine.gpus_per_worker if "encoder" in kinds else 0.0


def _remove_partial_files(run: RunDir, infos: list[SourceInfo]) -> None:
    # Temporary files of a killed run (the run directory's lock keeps other writers out). Only the
    # names mira's atomic writes use: a file of the user's is never deleted.
    for info in infos:
        for leftover in (scores_dir(run) / info.name).glob(".*.tmp"):
            if is_atomic_temp(leftover.name, r"\d{5}\.(parquet|done\.json)"):
                leftover.unlink(missing_ok=True)


def _summarize(run: RunDir, infos: list[SourceInfo], groups: dict[str, str], markers: dict[tuple[str, int], Any],
               stage_fp: str, skipped: int) -> dict[str, Any]:
    keys = ("records", "scored", "quarantined", "tokens")
    per_source: dict[str, Any] = {}
    anchors: dict[str, list[str]] = {}
    for info in infos:
        counts = {k: sum(markers[(info.name, s.index)][k] for s in info.shards) for k in keys}
        if counts["records"] != info.records:  # the invariant select relies on: one row per input record
            raise StageNotReady(f"source {info.name}: scored {counts['records']} records but ingest counted "
                                f"{info.records}; the data changed since ingest: run `mira ingest`, then "
                                "`mira score` (or `mira run`)")
        per_source[info.name] = {"group": groups.get(info.name), "shards": len(info.shards), **counts}
        if info.name in groups:
            for shard in info.shards:
                anchors.setdefault(groups[info.name], markers[(info.name, shard.index)]["anchors"])
    summary = {"fingerprint": stage_fp, "sources": per_source,
               "groups": {g: {"anchors": a} for g, a in sorted(anchors.items())}}
    SCORES_SUMMARY.save(run, summary)
    totals = {k: sum(s[k] for s in per_source.values()) for k in keys}
    return {**totals, "shards": sum(len(i.shards) for i in infos), "shards_skipped": skipped}


def _score_shard_task(config: RunConfig, run_dir: str, shard: Shard, fmt: str, group: str | None, stage_fp: str,
                      models: StageModels) -> dict[str, Any]:
    score_shard(config, run_dir, shard, fmt, group, stage_fp=stage_fp, models=models)
    return read_json(shard_marker_path(RunDir(Path(run_dir)), shard))


def score_shard(config: RunConfig, run_dir: str | Path, shard: Shard, fmt: str, group: str | None, *,
                stage_fp: str | None = None, models: StageModels | None = None) -> Path:
    """Score one shard into ``scores/<source>/<shard>.parquet`` and write its done marker.

    `group` is None only for a source without a usable record (every row is quarantined).
    """
    from mira.text.tokens import LazyTokenizer

    run = RunDir(Path(run_dir))
    models = models or StageModels(device=config.student.encoder_device)
    stage_fp = stage_fp or scores_fingerprint(config, run)
    loaded = models_for(models, run, group, stage_fp) if group is not None else NO_GROUP
    tokenizer = LazyTokenizer(config.tokenizer.name)
    out = shard_scores_path(run, shard)
    # Ingest's per-record token counts: a record that fits the render budget is then not tokenized.
    # (A run dir without an ingest marker, e.g. the DataMan baseline's mini run, counts them itself.)
    ingest_fp = run.stage_fingerprint("ingest")
    known = None if ingest_fp is None else read_shard_tokens(run, shard, ingest_fingerprint=ingest_fp,
                                                             tokenizer=tokenizer.name, render=render_settings(config))
    counts, digest = _write_scores(config, shard, fmt, group, loaded, tokenizer, out, known)
    if known is not None and digest != known.input_digest:
        # The bytes changed since ingest counted them: its counts may belong to other records.
        # Score again, counting, so the output is what it would have been without the reuse.
        log.warning("source %s shard %s changed since ingest; scoring it again without ingest's token counts "
                    "(rerun `mira ingest`)", shard.source, shard.name)
        counts, digest = _write_scores(config, shard, fmt, group, loaded, tokenizer, out, None)
    marker = {"fingerprint": stage_fp, "source": shard.source, "shard": shard.name, "group": group,
              "anchors": loaded.anchors, "input_digest": digest, **counts}
    SCORES_DONE.save(run, marker, source=shard.source, shard=shard.name)
    return out


def _write_scores(config: RunConfig, shard: Shard, fmt: str, group: str | None, loaded: LoadedGroup,
                  tokenizer: Any, out: Path, known: ShardTokens | None) -> tuple[dict[str, int], str]:
    """Score the shard into `out` (atomically); return the counts and the input bytes' digest."""
    import pyarrow.parquet as pq

    source_cfg = config.source(shard.source)
    table_schema = schema(loaded.anchors)
    counts = {"records": 0, "scored": 0, "quarantined": 0, "tokens": 0}
    with atomic_path(out) as tmp:
        buffer = _ColumnBuffer(pq.ParquetWriter(str(tmp), table_schema, compression="zstd"), table_schema,
                               shard.source, group)
        # The input's fingerprint, so select can tell an input edited since scoring (same size and
        # mtime or not) from the one these scores belong to.
        digest = shard_digest(known.input_digest if known is not None else None)
        items = iter_shard_records(config, source_cfg, shard, fmt, digest)
        for batch in batches(items, config.engine.batch_size):
            reused = _known(known, counts["records"], len(batch))
            tokens, scores = score_batch(batch, loaded, config, tokenizer, group, shard.source, reused)
            quarantined = sum(1 for item in batch if isinstance(item, Quarantined))
            counts["records"] += len(batch)
            counts["quarantined"] += quarantined
            counts["scored"] += len(batch) - quarantined
            counts["tokens"] += sum(tokens)
            buffer.extend(batch, tokens, scores)
        buffer.close()
    return counts, digest.hexdigest()


def _known(known: ShardTokens | None, start: int, n: int) -> list[tuple[int | None, Any]]:
    """Ingest's (count, window byte spans) of items start..start+n; (None, None) where it has no
    count: a record rejected at ingest, or past the end of a shard that has grown (the digest
    check catches both)."""
    if known is None:
        return [(None, None)] * n
    part = known.counts[start:start + n].tolist()
    out = [(t, known.windows.get(start + i)) if t >= 0 else (None, None) for i, t in enumerate(part)]
    return out + [(None, None)] * (n - len(part))


class _ColumnBuffer:
    """Collects the columns of scored batches and writes them in row groups of exactly
    ROW_GROUP_ROWS rows (the last one shorter). Columns, not per-row dicts: whole-corpus scoring
    writes every record of the corpus, and building a dict per row cost more than the write."""

    def __init__(self, writer: Any, table_schema: Any, source: str, group: str | None) -> None:
        self.writer = writer
        self.schema = table_schema
        self.anchors = [f.name for f in table_schema][len(BASE_COLUMNS):-1]
        self.source, self.group = source, group
        self.ids: list[str] = []
        self.locators: list[str] = []
        self.quarantine: list[str | None] = []
        self.tokens: list[int] = []
        self.scores: list[np.ndarray] = []  # (rows, anchors) blocks, in order

    def extend(self, batch: list[Record | Quarantined], tokens: list[int], scores: np.ndarray) -> None:
        for item in batch:
            if isinstance(item, Quarantined):
                self.ids.append(f"{self.source}/{item.locator}")
                self.quarantine.append(item.reason)
            else:
                self.ids.append(item.id)
                self.quarantine.append(None)
            self.locators.append(item.locator)
        self.tokens.extend(tokens)
        self.scores.append(scores)
        while len(self.ids) >= ROW_GROUP_ROWS:
            self._write(ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.ids:
            self._write(len(self.ids))
        self.writer.close()

    def _write(self, n: int) -> None:
        import pyarrow as pa

        scores = np.concatenate(self.scores) if len(self.scores) > 1 else self.scores[0]
        columns: dict[str, Any] = {"id": self.ids[:n], "locator": self.locators[:n], "source": [self.source] * n,
                                   "group": [self.group] * n, "tokens": self.tokens[:n]}
        for i, anchor in enumerate(self.anchors):
            columns[anchor] = np.ascontiguousarray(scores[:n, i])
        columns["quarantine"] = self.quarantine[:n]
        self.writer.write_table(pa.table(columns, schema=self.schema), row_group_size=ROW_GROUP_ROWS)
        del self.ids[:n], self.locators[:n], self.quarantine[:n], self.tokens[:n]
        self.scores = [scores[n:]]
