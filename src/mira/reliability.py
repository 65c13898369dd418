"""Reliability-aware aggregation: which student scores to trust, and how to combine them.

On the validation split, every (source, anchor) cell has a student-vs-teacher MAE and Spearman
(``students/<group>/metrics.json``). A cell that misses the thresholds is *masked*: its anchor is
left out of that source's aggregate. The mask is applied after scoring, never by changing the
student, so thresholds can change without retraining or rescoring. A source with too few
validation rows is judged by the group-wide cell ``"*"`` instead, and the mask says so.

A record's aggregate is the trimmed mean (paper default) or the reliability-weighted mean of its
unmasked anchor scores. A record whose every anchor is masked gets NaN, and the count is logged:
an unknown quality is never silently turned into a zero.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mira.config import ReliabilityConfig
from mira.rundir import RunDir, atomic_write_json, read_json

log = logging.getLogger(__name__)
GROUP_CELL = "*"


def mask_path(run: RunDir, group: str) -> Path:
    return run.path("students", group, "mask.json")


def _reason(cell: dict[str, Any], config: ReliabilityConfig) -> str | None:
    """Why a cell is masked, or None if it passes."""
    n, mae, rho = int(cell.get("n") or 0), cell.get("mae"), cell.get("spearman")
    if n < config.min_support:
        return f"too few validation rows (n={n} < min_support {config.min_support})"
    if mae is None or not math.isfinite(mae):
        return "no MAE"
    if mae > config.max_mae:
        return f"MAE {mae:.2f} > max_mae {config.max_mae}"
    if rho is None or not math.isfinite(rho):
        return "Spearman undefined (constant teacher labels or student predictions)"
    if rho < config.min_spearman:
        return f"Spearman {rho:.2f} < min_spearman {config.min_spearman}"
    return None


def cell_weight(cell: dict[str, Any]) -> float:
    """Weight for the reliability-weighted mean: max(Spearman, 0) / (1 + MAE)."""
    mae, rho = cell.get("mae"), cell.get("spearman")
    if mae is None or rho is None or not math.isfinite(mae) or not math.isfinite(rho):
        return 0.0
    return max(rho, 0.0) / (1.0 + mae)


def build_mask(metrics: dict[str, Any], config: ReliabilityConfig) -> dict[str, Any]:
    """The mask (``mask.json`` content) from a student's validation metrics.

    Every source cell with fewer than ``min_support`` validation rows is judged by the group-wide
    cell ``"*"`` (metrics' ``overall``); ``basis`` says which one decided.
    """
    anchors = list(metrics["anchors"])
    overall = metrics.get("overall") or {}
    cells: dict[str, dict[str, Any]] = {}
    group_cells = {}
    for anchor in anchors:
        cell = overall.get(anchor) or {"n": 0}
        reason = _reason(cell, config)
        group_cells[anchor] = {"masked": reason is not None, "reason": reason,
                               "weight": 0.0 if reason else cell_weight(cell), "basis": GROUP_CELL,
                               "n": int(cell.get("n") or 0)}
    cells[GROUP_CELL] = group_cells
    fallbacks = 0
    for source, by_anchor in sorted((metrics.get("cells") or {}).items()):
        if source == GROUP_CELL:
            continue
        out = {}
        for anchor in anchors:
            cell = by_anchor.get(anchor) or {"n": 0}
            n = int(cell.get("n") or 0)
            if n < config.min_support:
                fallbacks += 1
                group = group_cells[anchor]
                note = f"n={n} < min_support {config.min_support}: judged by the group-wide cell"
                reason = f"{note} ({group['reason']})" if group["masked"] else None
                out[anchor] = {"masked": group["masked"], "reason": reason, "weight": group["weight"],
                               "basis": GROUP_CELL, "n": n, "note": note}
            else:
                reason = _reason(cell, config)
                out[anchor] = {"masked": reason is not None, "reason": reason,
                               "weight": 0.0 if reason else cell_weight(cell), "basis": "source", "n": n}
        cells[source] = out
    masked = sum(c["masked"] for s, by in cells.items() if s != GROUP_CELL for c in by.values())
    total = sum(len(by) for s, by in cells.items() if s != GROUP_CELL)
    return {"anchors": anchors, "cells": cells,
            "thresholds": config.model_dump(mode="json"),
            "summary": {"cells": total, "masked": masked, "fallback_to_group": fallbacks,
                        "group_masked": sum(c["masked"] for c in group_cells.values())}}


def write_mask(run: RunDir, group: str, mask: dict[str, Any]) -> None:
    atomic_write_json(mask_path(run, group), mask)


def load_mask(run: RunDir, group: str) -> dict[str, Any]:
    return read_json(mask_path(run, group))


def _source_tables(mask: dict[str, Any], sources: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep (n, A) bool, weight (n, A), index of each record's source row) via unique sources."""
    anchors = mask["anchors"]
    cells = mask["cells"]
    names, inverse = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True)
    keep = np.zeros((len(names), len(anchors)), dtype=bool)
    weight = np.zeros((len(names), len(anchors)), dtype=np.float64)
    default = cells.get(GROUP_CELL, {})
    for i, name in enumerate(names):
        by_anchor = cells.get(name, default)  # a source without validation rows: the group-wide cell
        for j, anchor in enumerate(anchors):
            cell = by_anchor.get(anchor) or default.get(anchor) or {"masked": True, "weight": 0.0}
            keep[i, j] = not cell["masked"]
            weight[i, j] = float(cell.get("weight") or 0.0)
    return keep, weight, inverse.reshape(-1)


def aggregate(scores: np.ndarray, sources: Any, mask: dict[str, Any], config: ReliabilityConfig) -> np.ndarray:
    """One score per record from its unmasked anchor scores; NaN where none is usable.

    `scores` is (n, len(mask["anchors"])) in the mask's anchor order; `sources` holds each record's
    source name. NaN inputs (e.g. quarantined rows) count as missing. ``trimmed_mean`` cuts
    ``floor(trim_fraction * m)`` scores from each end of a record's m usable scores (as
    scipy.stats.trim_mean does); ``weighted_mean`` weights each cell by ``max(Spearman, 0)/(1+MAE)``
    (equal weights if every usable weight is zero).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if scores.ndim != 2 or scores.shape[1] != len(mask["anchors"]):
        raise ValueError(f"scores must have shape (n, {len(mask['anchors'])}), got {scores.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    keep_table, weight_table, index = _source_tables(mask, np.asarray(sources))
    keep = keep_table[index] & ~np.isnan(scores)
    usable = keep.sum(axis=1)
    if config.aggregate == "weighted_mean":
        weight = np.where(keep, weight_table[index], 0.0)
        total = weight.sum(axis=1)
        weight = np.where((total > 0)[:, None], weight, keep.astype(np.float64))  # all-zero weights: equal
        total = weight.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (np.where(keep, scores, 0.0) * weight).sum(axis=1) / total
    else:
        ordered = np.sort(np.where(keep, scores, np.inf), axis=1)  # usable scores first, ascending
        cut = np.floor(usable * config.trim_fraction).astype(np.int64)
        csum = np.concatenate((np.zeros((n, 1)), np.cumsum(np.where(np.isinf(ordered), 0.0, ordered), axis=1)), axis=1)
        rows = np.arange(n)
        kept = usable - 2 * cut
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (csum[rows, usable - cut] - csum[rows, cut]) / kept
    out = np.where(usable > 0, out, np.nan)
    missing = int((usable == 0).sum())
    if missing:
        log.warning("%d of %d records have every anchor masked or missing: aggregate is NaN", missing, n)
    return out


def masked_records(scores: np.ndarray, sources: Any, mask: dict[str, Any]) -> int:
    """How many records have no usable anchor (their aggregate is NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return 0
    keep_table, _, index = _source_tables(mask, np.asarray(sources))
    return int(((keep_table[index] & ~np.isnan(scores)).sum(axis=1) == 0).sum())
