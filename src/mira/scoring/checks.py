"""How a student is judged on the teacher's labels beyond its cells: what select ranks by.

- the *aggregate*: the mean of a record's anchor scores, predicted out of fold, against the
  teacher's, compared within sources (:func:`mira.scoring.reliability.within_source_agreement`);
- a *length guard*: the same statistic for a student that knows only the record's length,
  cross-fitted on the same folds (a student no better than length adds nothing select could not
  get for free, and long records are where n-gram and fixed-rubric scorers are known to fail);
- a *confirmation slice*: labels set aside before any fold model or model choice, predicted once by
  the final student — the check that the student generalises, not only that its folds did;
- the *background*: unlabelled records of the group, whose embedding the few-label student fits
  its principal components on (:mod:`mira.students.prior`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mira.core.config import RunConfig
from mira.core.hashing import stable_rank
from mira.scoring.agreement import within_source_agreement


def confirmation_rows(record_ids: list[str], sources: list[str], fraction: float, min_rows: int,
                      seed: int, min_judged: int = 0) -> np.ndarray:
    """Rows set aside to confirm the final student: per source, the first round(fraction x n) in
    seeded-rank order, leaving every source at least 2 rows to train on. Empty below `min_rows`
    labels, and where the slice would hold fewer than `min_judged` rows within sources (one lost per
    source, as the check counts them): a slice that cannot decide anything only takes its rows
    from training and from the check that can (``reliability.min_confirmation_rows``)."""
    n = len(record_ids)
    if fraction <= 0 or n < min_rows:
        return np.zeros(0, dtype=np.int64)
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    out: list[int] = []
    for source in sorted(by_source):
        rows = sorted(by_source[source], key=lambda i: stable_rank(seed, record_ids[i]))
        take = min(int(round(fraction * len(rows))), max(0, len(rows) - 2))
        out += rows[:take]
    within = len(out) - len({sources[i] for i in out})
    if within < min_judged:
        return np.zeros(0, dtype=np.int64)
    return np.array(sorted(out), dtype=np.int64)


def length_crossfit(tokens: np.ndarray, target: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of `target` from log(1 + tokens) alone (least squares per fold);
    rows of fold < 0 (the confirmation slice) stay NaN."""
    x = np.log1p(np.asarray(tokens, dtype=np.float64))
    pred = np.full(len(target), np.nan)
    for f in np.unique(fold[fold >= 0]):
        train, held = np.flatnonzero((fold != f) & (fold >= 0)), np.flatnonzero(fold == f)
        if len(train) < 2 or np.ptp(x[train]) == 0:
            continue
        slope, intercept = np.polyfit(x[train], target[train], 1)
        pred[held] = intercept + slope * x[held]
    return pred


def aggregate_check(pred: np.ndarray, targets: np.ndarray, sources: list[str], rows: np.ndarray,
                    length_pred: np.ndarray | None = None, offsets: np.ndarray | None = None) -> dict[str, Any]:
    """The aggregate's statistics on `rows`: within-source Spearman, effective rows, MAE, and the
    length-only student's within-source Spearman on the same rows. Ranked within sources is
    ``pred - offsets`` (each fold model's own view of the source removed, see
    :func:`mira.scoring.distillation.crossfit_with_offsets`); the MAE is of `pred` itself."""
    agg_pred = np.nanmean(pred[rows], axis=1) if len(rows) else np.zeros(0)
    agg_target = np.nanmean(targets[rows], axis=1) if len(rows) else np.zeros(0)
    agg_rank = agg_pred - np.nanmean(offsets[rows], axis=1) if offsets is not None and len(rows) else agg_pred
    src = [sources[i] for i in rows]
    rho, n_eff = within_source_agreement(agg_rank, agg_target, src)
    out: dict[str, Any] = {"spearman": None if rho is None else round(rho, 4), "n_eff": n_eff, "rows": int(len(rows)),
                           "sources": len(set(src))}
    finite = np.isfinite(agg_pred) & np.isfinite(agg_target)
    out["mae"] = round(float(np.mean(np.abs(agg_pred[finite] - agg_target[finite]))), 4) if finite.any() else None
    if length_pred is not None:
        length_rho, _ = within_source_agreement(length_pred[rows], agg_target, src)
        out["length_spearman"] = None if length_rho is None else round(length_rho, 4)
    return out


def background_renderings(config: RunConfig, members: list[Any], n: int, exclude: set[tuple[str, str]],
                          seed: int) -> tuple[list[str], list[str | None]]:
    """Renderings (and formats) of up to `n` unlabelled records of the group's member sources, spread
    by token share like the labels, less the `exclude`d (source, id) pairs: what the students will score,
    without the teacher's labels."""
    from mira.corpus.records import render
    from mira.corpus.sources import sample_source
    from mira.text.tokens import get_tokenizer

    if n <= 0 or not members:
        return [], []
    tokenizer = get_tokenizer(config.tokenizer.name)
    total = sum(max(m.tokens, 0) for m in members) or 1
    texts: list[str] = []
    formats: list[str | None] = []
    for info in members:
        quota = min(info.ok, max(2, int(math.ceil(n * max(info.tokens, 0) / total))))
        for record in sample_source(config, info, quota, seed):
            if (record.source, record.id) in exclude:
                continue
            texts.append(render(record, tokenizer, config.render.max_tokens, config.render.windows).text)
            formats.append(record.format)
    return texts, formats
