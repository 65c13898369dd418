"""Baseline selection methods, run through the same `select` stage as MIRA.

Every method turns the score table into a :class:`Ranking`: a key per record (higher is better;
ties are broken by a seeded hash of the record id), which records are eligible at all, and the
retention mode the method implies. ``select`` then applies the same budget, floors, caps and
bookkeeping to every method, so a comparison differs only in the ranking.

- ``random`` — *source-preserving random* (the paper's strong baseline): each source keeps the
  same token share, chosen by a seeded hash of the record id. Always per-source.
- ``length`` — longest records first, under ``selection.mode``. We picked "longest first" over a
  length window because it is the simplest length prior and exactly what MIRA must not reduce
  to: if MIRA's scores were a length proxy, the two selections would overlap heavily.
- ``global_rubric`` — MIRA-Global / fixed-rubric comparison: one cutoff over *all* sources on the
  MIRA aggregate score. A full single-rubric baseline would also *discover* one rubric over all
  sources; that is a different run (``grouping.k: 1``, which puts every source in one group and
  so one anchor set), whose report can be compared with this one. Here we implement what needs
  no new teacher calls: the global cutoff over the existing scores.
- ``dsir`` — DSIR-style importance resampling: hashed word uni/bigram distributions of the target
  texts (``selection.dsir_target``, a JSONL with a ``text`` field) and of the corpus; a record's
  log importance weight is the sum over its n-grams of log p_target - log p_corpus, plus seeded
  Gumbel noise (top-k with Gumbel noise samples without replacement in proportion to the
  weights). It reads the records' text (two streaming passes), not the scores.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mira.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from mira.stages.select import ScoreTable

UNSCORED = "unscored (all anchors masked)"
_WORD = re.compile(r"\w+")


@dataclass
class Ranking:
    key: np.ndarray  # float64, higher is better
    eligible: np.ndarray  # bool; quarantined records are never eligible
    mode: str  # "group" | "source" | "global"
    key_name: str  # what the key is, for the summary and the report


def mira_ranking(config: RunConfig, table: ScoreTable, mode: str | None = None) -> Ranking:
    """MIRA: the aggregate score; records with a NaN score (all anchors masked) are not eligible."""
    eligible = ~table.quarantined & ~np.isnan(table.score)
    return Ranking(np.nan_to_num(table.score, nan=-np.inf), eligible, mode or config.selection.mode, "score")


def random_ranking(config: RunConfig, table: ScoreTable) -> Ranking:
    # The tie-break hash is already a seeded uniform draw per record id: use it as the key.
    return Ranking(-table.tie.astype(np.float64), ~table.quarantined, "source", "seeded random rank")


def length_ranking(config: RunConfig, table: ScoreTable) -> Ranking:
    return Ranking(table.tokens.astype(np.float64), ~table.quarantined, config.selection.mode, "tokens")


def dsir_ranking(config: RunConfig, table: ScoreTable) -> Ranking:
    from mira.corpus import source_infos
    from mira.rundir import RunDir

    assert config.selection.dsir_target is not None  # checked by SelectionConfig
    buckets = config.selection.dsir_buckets
    target = np.ones(buckets)  # add-one smoothing
    for text in _target_texts(Path(config.selection.dsir_target)):
        target += _ngram_counts(text, buckets)
    corpus = np.ones(buckets)
    run = RunDir(table.run_root)
    infos = source_infos(run)
    for _, text in _corpus_texts(config, infos):
        corpus += _ngram_counts(text, buckets)
    log_ratio = np.log(target / target.sum()) - np.log(corpus / corpus.sum())
    weights = np.full(len(table.tokens), -np.inf)
    for row, text in _corpus_texts(config, infos):
        weights[row] = float(_ngram_counts(text, buckets) @ log_ratio)
    uniform = (table.tie.astype(np.float64) + 0.5) / 2.0 ** 64
    gumbel = -np.log(-np.log(uniform))
    return Ranking(weights + gumbel, ~table.quarantined, config.selection.mode, "dsir log weight + gumbel")


def ranking(config: RunConfig, table: ScoreTable) -> Ranking:
    method = config.selection.method
    if method == "mira":
        return mira_ranking(config, table)
    if method == "global_rubric":
        return mira_ranking(config, table, mode="global")
    if method == "random":
        return random_ranking(config, table)
    if method == "length":
        return length_ranking(config, table)
    if method == "dsir":
        return dsir_ranking(config, table)
    raise ConfigError(f"unknown selection.method {method!r}")


# --- DSIR helpers ------------------------------------------------------------------------------

def _ngram_counts(text: str, buckets: int) -> np.ndarray:
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    counts = np.zeros(buckets)
    if grams:
        np.add.at(counts, [zlib.crc32(g.encode()) % buckets for g in grams], 1.0)
    return counts


def _target_texts(path: Path) -> Iterator[str]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read selection.dsir_target {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"selection.dsir_target {path}:{number} is not valid JSON") from None
            text = value.get("text") if isinstance(value, dict) else value
            if isinstance(text, str):
                yield text


def _corpus_texts(config: RunConfig, infos: list) -> Iterator[tuple[int, str]]:
    """(row in the score table, full record text) of every usable record, in table order."""
    from mira.corpus import iter_shard_records
    from mira.records import Record, render_sections

    row = 0
    for info in infos:
        source = config.source(info.name)
        for shard in info.shards:
            for item in iter_shard_records(config, source, shard, info.format):
                if isinstance(item, Record):
                    yield row, "\n\n".join(text for _, text in render_sections(item))
                row += 1
