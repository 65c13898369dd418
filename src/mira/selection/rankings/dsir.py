"""DSIR-style importance resampling (Xie et al. 2023).

Hashed word uni/bigram distributions of the target texts (``selection.dsir_target``, a JSONL
with a ``text`` field) and of the corpus; a record's log importance weight is the sum over its
n-grams of log p_target - log p_corpus, plus seeded Gumbel noise (top-k with Gumbel noise samples
without replacement in proportion to the weights). It reads the records' text (two streaming
passes), not the scores.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mira.core.config import RunConfig
from mira.io.files import hash_files
from mira.run.rundir import RunDir
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking
from mira.selection.rankings.texts import corpus_texts, jsonl_texts, shard_texts

_WORD = re.compile(r"\w+")


def fingerprint(config: RunConfig, run: RunDir) -> str:
    target = config.selection.dsir_target
    return hash_files([Path(target)]) if target else ""


def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    return ranker(config, RunDir(table.run_root))(table)


def ranker(config: RunConfig, run: RunDir) -> Callable[[ScoreTable], Ranking]:
    """The importance weights of the target against the whole corpus, counted once; then a
    function ranking any piece of the score table by them (select out of core ranks piece by piece)."""
    from mira.corpus.sources import source_infos

    assert config.selection.dsir_target is not None  # checked by SelectionConfig
    buckets = config.selection.dsir_buckets
    target = np.ones(buckets)  # add-one smoothing
    for text in jsonl_texts(Path(config.selection.dsir_target), "selection.dsir_target"):
        target += ngram_counts(text, buckets)
    corpus = np.ones(buckets)
    for _, text in corpus_texts(config, source_infos(run)):
        corpus += ngram_counts(text, buckets)
    log_ratio = np.log(target / target.sum()) - np.log(corpus / corpus.sum())

    def rank_piece(table: ScoreTable) -> Ranking:
        weights = np.full(len(table.tokens), -np.inf)
        for info, shard, start, _ in table.shard_rows:
            for offset, text in enumerate(shard_texts(config, info, shard)):
                if text is not None:
                    weights[start + offset] = float(ngram_counts(text, buckets) @ log_ratio)
        uniform = (table.tie.astype(np.float64) + 0.5) / 2.0 ** 64
        gumbel = -np.log(-np.log(uniform))
        return Ranking(weights + gumbel, ~table.quarantined, config.selection.mode, "dsir log weight + gumbel")

    return rank_piece


def ngram_counts(text: str, buckets: int) -> np.ndarray:
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    counts = np.zeros(buckets)
    if grams:
        np.add.at(counts, [zlib.crc32(g.encode()) % buckets for g in grams], 1.0)
    return counts
