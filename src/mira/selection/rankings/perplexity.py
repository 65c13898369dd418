"""Perplexity: keep the records a reference language model finds most predictable (the paper's
PPL baseline; CCNet did this at web scale with KenLM n-gram models).

The reference model is :class:`mira.selection.rankings.ngram.NgramModel`, trained on
``selection.perplexity.reference`` (a JSONL of texts) or, by default, on a seeded sample of the
corpus itself. A self-sample would favour its own records (a model has seen them), so it is
*cross-fitted*: the sample is split in two halves by a seeded hash of the record id, one model
is trained per half, and every record of the corpus is scored by the model of the half its id
does not belong to; no record is scored by a model that saw it.

A record's key is minus its mean log-loss in bits per token (bytes or words) over its whole text.
One cutoff over the corpus (``global``), as a perplexity filter has. The pass over the corpus is
cached per shard under ``baselines/perplexity/`` (model files, ``reference.json``,
``scores/<source>/<shard>.parquet`` with a done marker each), so re-selecting reads numbers only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import RunConfig
from mira.core.hashing import fingerprint as make_fingerprint
from mira.io.files import atomic_path, atomic_write_json, hash_files, read_json
from mira.run.rundir import RunDir
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking

log = logging.getLogger(__name__)
VERSION = "perplexity-v1"
BATCH_TOKENS = 2_000_000  # tokens scored per vectorised batch: ~100 MB of temporaries at order 5


def folder(run: RunDir) -> Path:
    return run.path("baselines", "perplexity")


def fingerprint(config: RunConfig, run: RunDir) -> str:
    cfg = config.selection.perplexity
    reference = hash_files([Path(cfg.reference)]) if cfg.reference else "corpus-sample"
    return make_fingerprint(VERSION, cfg.model_dump(mode="json"), reference, run.require("ingest"))


def plan(config: RunConfig, run: RunDir) -> list[str]:
    cfg = config.selection.perplexity
    reference = cfg.reference or f"a cross-fitted sample of {cfg.reference_records:,} corpus records"
    return [f"perplexity: a {cfg.level} {cfg.order}-gram model on {reference} (at most {cfg.reference_tokens:,} "
            f"tokens), then one CPU pass over the whole corpus (cached per shard)"]


def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    import pyarrow.parquet as pq

    run = RunDir(table.run_root)
    prepare(config, run)
    fp = fingerprint(config, run)
    loss = np.full(len(table.tokens), np.nan)
    for info, shard, start, end in table.shard_rows:
        if not _shard_done(run, info.name, shard.name, fp):
            raise RuntimeError(f"{info.name} shard {shard.name}: no perplexity scores for this configuration")
        values = pq.read_table(_shard_path(run, info.name, shard.name), columns=["bits_per_token"])
        column = values.column("bits_per_token").to_numpy(zero_copy_only=False).astype(np.float64)
        if len(column) != end - start:
            raise RuntimeError(f"{info.name} shard {shard.name}: perplexity scores do not match the scores; "
                               f"rerun with --force")
        loss[start:end] = column
    eligible = ~table.quarantined & np.isfinite(loss)
    # Any retention mode (selection.mode): the paper's PPL used one global cutoff, which also moves
    # the mixture between sources; `source` separates ranking within sources from that.
    return Ranking(np.where(np.isfinite(loss), -loss, -np.inf), eligible, config.selection.mode,
                   f"-bits per {config.selection.perplexity.level[:-1]} (reference n-gram LM)")


def prepare(config: RunConfig, run: RunDir, progress: Any = None) -> dict[str, Any]:
    """Train the reference model(s) if needed and score every shard not done yet; returns counts."""
    from mira.core.progress import null_progress
    from mira.corpus.sources import source_infos
    from mira.engines import map_tasks

    progress = progress or null_progress
    fp = fingerprint(config, run)
    infos = source_infos(run)
    models = _train(config, run, infos, fp, progress)
    tasks = [(config, str(run.root), info.name, info.format, shard, models, fp)
             for info in infos for shard in info.shards if not _shard_done(run, info.name, shard.name, fp)]
    task = progress("perplexity: score shards", len(tasks))
    records = 0
    for _, count in map_tasks(config.engine, score_shard, tasks):
        records += count
        task.advance()
    task.close()
    return {"shards": sum(len(i.shards) for i in infos), "shards_scored": len(tasks), "records_scored": records}


# --- reference model ----------------------------------------------------------------------------

def _train(config: RunConfig, run: RunDir, infos: list[Any], fp: str, progress: Any) -> list[str]:
    """Paths of the model files: one (a user reference) or two (cross-fitted halves of a corpus sample)."""
    from mira.selection.rankings.ngram import NgramModel, token_ids

    cfg = config.selection.perplexity
    out = folder(run)
    meta_path = out / "reference.json"
    if meta_path.exists() and read_json(meta_path).get("fingerprint") == fp:
        paths = read_json(meta_path)["models"]
        if all((out / p).exists() for p in paths):
            return [str(out / p) for p in paths]
    task = progress("perplexity: train reference n-gram model", None)
    halves = _reference(config, run, infos)
    paths, sizes = [], []
    for i, texts in enumerate(halves):
        docs = _cap([token_ids(t, cfg.level) for t in texts], cfg.reference_tokens // len(halves))
        model = NgramModel(cfg.level, cfg.order, cfg.bits).fit(docs)
        name = f"model.{i}.npz" if len(halves) > 1 else "model.npz"
        model.save(out / name)
        paths.append(name)
        sizes.append({"texts": len(docs), "tokens": int(sum(len(d) for d in docs))})
    task.close()
    atomic_write_json(meta_path, {"fingerprint": fp, "models": paths, "reference": cfg.reference or "corpus sample",
                                  "cross_fitted": len(halves) > 1, "halves": sizes})
    log.info("perplexity reference: %s", sizes)
    return [str(out / p) for p in paths]


def _reference(config: RunConfig, run: RunDir, infos: list[Any]) -> list[list[str]]:
    from mira.core.config import ConfigError
    from mira.corpus.sources import sample_stratified
    from mira.selection.rankings.texts import jsonl_texts, record_text

    cfg = config.selection.perplexity
    if cfg.reference:
        texts = list(jsonl_texts(Path(cfg.reference), "selection.perplexity.reference"))
        if not texts:
            raise ConfigError(f"selection.perplexity.reference {cfg.reference} has no texts")
        return [texts]
    sample = sample_stratified(config, [i for i in infos if i.ok > 0], cfg.reference_records, cfg.seed)
    halves: list[list[str]] = [[], []]
    for record in sample:
        halves[fold(cfg.seed, record.id)].append(record_text(record))
    if not halves[0] or not halves[1]:
        raise ConfigError("selection.perplexity: the corpus sample is too small to split in two halves; "
                          "raise selection.perplexity.reference_records or give a reference file")
    return halves


def fold(seed: int, record_id: str) -> int:
    """The reference half a record id belongs to (seeded, stable)."""
    from mira.core.hashing import stable_rank

    return stable_rank(seed + 7_919, record_id) & 1


def _cap(docs: list[np.ndarray], budget: int) -> list[np.ndarray]:
    """Truncate the longest docs so the total fits `budget`, with one shared per-doc cap (water filling)."""
    lengths = sorted(len(d) for d in docs)
    remaining = budget
    for i, length in enumerate(lengths):
        share = remaining // (len(lengths) - i)
        if length > share:
            return [d[:max(share, 1)] for d in docs]
        remaining -= length
    return docs


# --- scoring the corpus -------------------------------------------------------------------------

def _shard_path(run: RunDir, source: str, shard: str) -> Path:
    return folder(run) / "scores" / source / f"{shard}.parquet"


def _shard_done(run: RunDir, source: str, shard: str, fp: str) -> bool:
    marker = _shard_path(run, source, shard).with_suffix(".done.json")
    try:
        return _shard_path(run, source, shard).exists() and read_json(marker).get("fingerprint") == fp
    except (OSError, ValueError):
        return False  # a missing or damaged marker means "not done"


_LOADED: dict[tuple[str, ...], list[Any]] = {}  # per worker process: models load once


def score_shard(config: RunConfig, run_root: str, source: str, fmt: str, shard: Any, model_paths: list[str],
                fp: str) -> int:
    """Score one shard into ``scores/<source>/<shard>.parquet`` (one row per input row, NaN for
    quarantined ones), then write its done marker; returns the records scored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mira.corpus.records import Record
    from mira.corpus.sources import iter_shard_records
    from mira.selection.rankings.ngram import NgramModel, token_ids
    from mira.selection.rankings.texts import record_text

    cfg = config.selection.perplexity
    key = (fp, *model_paths)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = [NgramModel.load(Path(p)) for p in model_paths]
    models = _LOADED[key]
    ids: list[str] = []
    which: list[int] = []  # the model that scores each row, -1 for quarantined rows
    docs: list[np.ndarray] = []
    for item in iter_shard_records(config, config.source(source), shard, fmt):
        if isinstance(item, Record):
            ids.append(item.id)
            which.append(1 - fold(cfg.seed, item.id) if len(models) > 1 else 0)
            docs.append(token_ids(record_text(item), cfg.level))
        else:
            ids.append(f"{source}/{item.locator}")
            which.append(-1)
            docs.append(np.zeros(0, dtype=np.uint64))
    loss = np.full(len(docs), np.nan)
    chosen = np.array(which, dtype=np.int64)
    for m, model in enumerate(models):
        rows = np.flatnonzero(chosen == m)
        for batch in _batches(rows, [len(docs[i]) for i in rows]):
            loss[batch] = model.bits_per_token([docs[i] for i in batch])
    run = RunDir(Path(run_root))
    path = _shard_path(run, source, shard.name)
    table = pa.table({"id": pa.array(ids, pa.string()), "bits_per_token": pa.array(loss, pa.float64()),
                      "tokens": pa.array([len(d) for d in docs], pa.int64())})
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression="zstd")
    atomic_write_json(path.with_suffix(".done.json"), {"fingerprint": fp, "records": len(ids)})
    return int((chosen >= 0).sum())


def _batches(rows: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    out, start, total = [], 0, 0
    for i, length in enumerate(lengths):
        if total and total + length > BATCH_TOKENS:
            out.append(rows[start:i])
            start, total = i, 0
        total += length
    if start < len(rows):
        out.append(rows[start:])
    return out


prepare_perplexity = prepare
