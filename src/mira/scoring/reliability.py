"""Reliability-aware aggregation: which student scores to trust, and how to combine them.

On the validation split — rows the student never trained on and that never chose its model —
every (source, anchor) cell has a student-vs-teacher MAE and Spearman
(``students/<group>/metrics.json``). A cell is *reliable* only when

- it has at least :func:`needed_rows` validation rows (fewer: *undecidable*, masked, and said so);
- the lower bound of a one-sided confidence interval (``reliability.confidence``) of its Spearman
  clears ``min_spearman``. The interval is Fisher's z with the Spearman variance 1.06/(n-3)
  (Fieller, Hartley & Pearson 1957), reasonable from about n = 10; a sample coefficient is capped
  at ``MAX_RHO`` first, since a perfect ranking of a few rows proves no perfect correlation;
- its MAE is within ``mae_margin`` of the teacher's own self-consistency MAE (when annotate
  measured it), and never above ``max_mae``.

Everything else is *masked*: its anchor is left out of that source's aggregate. The mask is
applied after scoring, never by changing the student, so thresholds can change without
retraining or rescoring.

A source with too few validation rows is judged by the group cell ``"*"``, which combines the
*within-source* statistics of the group's sources (a fixed-effect meta-analysis: Fisher z weighted
by n-3, MAE weighted by n). It never pools rows across sources: pooled, a student that only knows
which source a record comes from ranks the group's records well (Spearman up to ~0.95) while
ranking nothing inside any source.

A record's aggregate is the trimmed mean (paper default) or the reliability-weighted mean of its
unmasked anchor scores (see :func:`trim_count`). A record whose every anchor is masked gets NaN,
and the count is logged: an unknown quality is never silently turned into a zero.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import ReliabilityConfig
from mira.run.rundir import RunDir
from mira.scoring.agreement import (
    FISHER_MIN_ROWS,
    fisher_z,
    judge_aggregate,
    spearman_lower_bound,
)

log = logging.getLogger(__name__)
GROUP_CELL = "*"
# The basis of a cell decided by the group's aggregate score (what select ranks by).
AGGREGATE = "aggregate"



def mask_path(run: RunDir, group: str) -> Path:
    return run.path("students", group, "mask.json")


# --- statistics ----------------------------------------------------------------------------------

def needed_rows(config: ReliabilityConfig) -> int:
    """Validation rows a cell needs before the rule can decide it (``min_support``, and at least
    the 4 rows Fisher's z needs unless ``min_spearman`` is -1, i.e. the Spearman test is off)."""
    return max(config.min_support, FISHER_MIN_ROWS if config.min_spearman > -1 else 1)


def combine_within_sources(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One group statistic from per-source cells, never pooling rows across sources.

    Spearman: tanh of the mean Fisher z weighted by n - 3 (sources with n <= 3 carry no weight; a
    source whose labels or predictions are constant counts as z = 0: it showed no ranking). MAE:
    mean weighted by n. Returns ``{"spearman", "mae", "n", "weight", "sources"}``.
    """
    z_sum = weight = mae_sum = 0.0
    n_total = sources = 0
    for cell in cells:
        n = int(cell.get("n") or 0)
        if n <= 0:
            continue
        sources += 1
        n_total += n
        if cell.get("mae") is not None and math.isfinite(cell["mae"]):
            mae_sum += cell["mae"] * n
        if n > 3:
            rho = cell.get("spearman")
            rho = 0.0 if rho is None or not math.isfinite(rho) else rho
            z_sum += fisher_z(rho) * (n - 3)
            weight += n - 3
    return {"spearman": round(math.tanh(z_sum / weight), 4) if weight > 0 else None,
            "mae": round(mae_sum / n_total, 4) if n_total else None, "n": n_total, "weight": weight,
            "sources": sources}


def mae_limit(config: ReliabilityConfig, teacher_mae: float | None) -> tuple[float, str]:
    """The MAE a cell may have, and a label saying where the limit comes from."""
    if teacher_mae is not None and math.isfinite(teacher_mae) and teacher_mae + config.mae_margin < config.max_mae:
        return teacher_mae + config.mae_margin, (f"teacher self-consistency MAE {teacher_mae:.2f} "
                                                 f"+ margin {config.mae_margin}")
    return config.max_mae, "max_mae"


def judge(cell: dict[str, Any], config: ReliabilityConfig, teacher_mae: float | None = None,
          weight: float | None = None) -> dict[str, Any]:
    """Decide one cell: ``{"status": reliable|unreliable|undecidable, "reason", "lower"}``.

    `weight` overrides n - 3 (for combined cells); `teacher_mae` is the teacher's self-consistency.
    """
    n, mae, rho = int(cell.get("n") or 0), cell.get("mae"), cell.get("spearman")
    need = needed_rows(config)
    if n < need:
        return {"status": "undecidable", "lower": None,
                "reason": f"undecidable for lack of labels (n={n}, needs >= {need})"}
    if mae is None or not math.isfinite(mae):
        return {"status": "unreliable", "lower": None, "reason": "no MAE"}
    lower = None
    if config.min_spearman > -1:
        if rho is None or not math.isfinite(rho):
            return {"status": "unreliable", "lower": None,
                    "reason": "Spearman undefined (constant teacher labels or student predictions)"}
        lower = spearman_lower_bound(rho, n - 3 if weight is None else weight, config.confidence)
        if lower < config.min_spearman:
            return {"status": "unreliable", "lower": round(lower, 4),
                    "reason": f"Spearman {rho:.2f}, {config.confidence:.0%} lower bound {lower:.2f} "
                              f"< min_spearman {config.min_spearman} (n={n})"}
    limit, source = mae_limit(config, teacher_mae)
    if mae > limit:
        return {"status": "unreliable", "lower": None if lower is None else round(lower, 4),
                "reason": f"MAE {mae:.2f} > {limit:.2f} ({source})"}
    return {"status": "reliable", "lower": None if lower is None else round(lower, 4), "reason": None}


def cell_weight(cell: dict[str, Any]) -> float:
    """Weight for the reliability-weighted mean: max(Spearman, 0) / (1 + MAE)."""
    mae, rho = cell.get("mae"), cell.get("spearman")
    if mae is None or rho is None or not math.isfinite(mae) or not math.isfinite(rho):
        return 0.0
    return max(rho, 0.0) / (1.0 + mae)


def _decided(cell: dict[str, Any], verdict: dict[str, Any], basis: str) -> dict[str, Any]:
    masked = verdict["status"] != "reliable"
    return {"masked": masked, "status": verdict["status"], "reason": verdict["reason"],
            "weight": 0.0 if masked else cell_weight(cell), "basis": basis, "n": int(cell.get("n") or 0),
            "spearman": cell.get("spearman"), "mae": cell.get("mae"), "lower": verdict["lower"]}


def build_mask(metrics: dict[str, Any], config: ReliabilityConfig) -> dict[str, Any]:
    """The mask (``mask.json`` content) from a student's validation metrics.

    A source with at least ``cell_rows`` validation rows is judged cell by cell (its own Spearman
    and MAE per anchor). Every other source, and a source without labels (the group cell ``"*"``),
    is judged by the group's aggregate (:func:`judge_aggregate`): what select ranks by, tested within
    sources. ``basis`` says which decided. Metrics of an older mira (no aggregate) fall back to the
    per-anchor group cell, combined within sources.
    """
    anchors = list(metrics["anchors"])
    source_cells = {s: by for s, by in (metrics.get("cells") or {}).items() if s != GROUP_CELL}
    teacher_mae = (metrics.get("teacher_consistency") or {}).get("mae")
    need = max(needed_rows(config), config.cell_rows)
    aggregate = metrics.get("aggregate")
    aggregate_verdict = judge_aggregate(aggregate, config) if aggregate is not None else None
    cells: dict[str, dict[str, Any]] = {}
    group_cells = {}
    for anchor in anchors:
        combined = combine_within_sources([by.get(anchor) or {"n": 0} for by in source_cells.values()])
        if aggregate_verdict is not None:
            stats = aggregate or {}
            cell = {"n": int(stats.get("n_eff") or 0), "spearman": stats.get("spearman"), "mae": stats.get("mae")}
            decided = _decided(cell, aggregate_verdict, AGGREGATE)
            decided["weight"] = 0.0 if decided["masked"] else 1.0
            group_cells[anchor] = {**decided, "sources": combined["sources"]}
            continue
        verdict = judge(combined, config, teacher_mae, weight=combined["weight"])
        if verdict["status"] != "undecidable" and config.min_spearman > -1 and combined["weight"] < need - 3:
            verdict = {"status": "undecidable", "lower": None,
                       "reason": f"undecidable for lack of labels (n={combined['n']} over {combined['sources']} "
                                 f"sources, too few rows within each; needs >= {need} in one source)"}
        group_cells[anchor] = {**_decided(combined, verdict, GROUP_CELL), "sources": combined["sources"]}
    cells[GROUP_CELL] = group_cells
    fallbacks = 0
    for source, by_anchor in sorted(source_cells.items()):
        out = {}
        for anchor in anchors:
            cell = by_anchor.get(anchor) or {"n": 0}
            n = int(cell.get("n") or 0)
            if n < need:
                fallbacks += 1
                group = group_cells[anchor]
                what = "the group's aggregate (within sources)" if aggregate_verdict is not None else \
                    "the group cell (within-source statistics combined)"
                note = f"n={n} < {need}: judged by {what}"
                reason = f"{note}: {group['reason']}" if group["masked"] else None
                out[anchor] = {**group, "reason": reason, "n": n, "note": note}
            else:
                out[anchor] = _decided(cell, judge(cell, config, teacher_mae), "source")
        cells[source] = out
    source_items = [c for s, by in cells.items() if s != GROUP_CELL for c in by.values()]
    return {"anchors": anchors, "cells": cells, "needed_rows": need,
            "thresholds": config.model_dump(mode="json"), "teacher_mae": teacher_mae,
            "aggregate": None if aggregate_verdict is None else {**(aggregate or {}), **aggregate_verdict},
            "summary": {"cells": len(source_items), "masked": sum(c["masked"] for c in source_items),
                        "undecidable": sum(c["status"] == "undecidable" for c in source_items),
                        "fallback_to_group": fallbacks,
                        "group_masked": sum(c["masked"] for c in group_cells.values())}}


def write_mask(run: RunDir, group: str, mask: dict[str, Any]) -> None:
    from mira.artifacts.students import MASK

    MASK.save(run, mask, group=group)


def load_mask(run: RunDir, group: str) -> dict[str, Any]:
    """``mask.json`` as stored, validated by its catalogue schema (``mira.artifacts.students.Mask``)."""
    from mira.artifacts.students import MASK
    from mira.run.artifact import dump

    return dump(MASK.load(run, group=group), as_read=True)


def load_metrics(run: RunDir, group: str) -> dict[str, Any]:
    """``metrics.json`` as stored, validated by its catalogue schema (``mira.artifacts.students.Metrics``)."""
    from mira.artifacts.students import METRICS
    from mira.run.artifact import dump

    return dump(METRICS.load(run, group=group), as_read=True)


def current_mask(run: RunDir, group: str, config: ReliabilityConfig) -> dict[str, Any] | None:
    """The group's mask under `config`: the one place selection and the report get a mask from.

    ``mask.json`` when distill built it under these thresholds (or it records none: written by
    hand); otherwise rebuilt from ``metrics.json`` (cheap, no student is loaded), so changing a
    threshold re-selects without rerunning distill or score. ``reliability.exclude`` is applied
    to either (:func:`excluded`).
    """
    mask = _mask_under(run, group, config)
    return None if mask is None else excluded(mask, config)


def _mask_under(run: RunDir, group: str, config: ReliabilityConfig) -> dict[str, Any] | None:
    mask = load_mask(run, group) if mask_path(run, group).exists() else None
    if mask is not None and mask.get("thresholds") in (None, config.model_dump(mode="json")):
        return mask
    metrics = run.path("students", group, "metrics.json")
    if metrics.exists():
        return build_mask(load_metrics(run, group), config)
    if mask is None:
        from mira.artifacts.anchors import rubric_is_empty
        from mira.core.errors import StageNotReady

        if rubric_is_empty(run, group):
            return None  # discover left the group without a rubric: its records are unscored

        raise StageNotReady(f"group {group} has no students/{group}/mask.json or metrics.json; rerun `mira distill`")
    return mask


def excluded(mask: dict[str, Any], config: ReliabilityConfig) -> dict[str, Any]:
    """The mask with the cells of ``reliability.exclude`` masked (the group cell too, for a source
    that falls back to it); the others untouched."""
    if not config.exclude:
        return mask
    rules = [tuple(entry.split("/", 1)) for entry in config.exclude]
    group = mask["cells"].get(GROUP_CELL, {})
    named = {s for s, _ in rules if s != "*" and s not in mask["cells"]}  # they fall back to the group cell
    cells = {}
    for source, by_anchor in [*mask["cells"].items(), *((s, group) for s in sorted(named))]:
        out = {}
        for anchor, cell in by_anchor.items():
            hit = next((f"{s}/{a}" for s, a in rules if s in ("*", source) and a in ("*", anchor)), None)
            out[anchor] = cell if hit is None else {**cell, "masked": True, "status": "unreliable", "weight": 0.0,
                                                    "reason": f"excluded by reliability.exclude ({hit})"}
        cells[source] = out
    return {**mask, "cells": cells}


def mask_inputs(run: RunDir) -> list[Path]:
    """The files :func:`current_mask` reads, for the fingerprints of what depends on masks."""
    folder = run.path("students")
    if not folder.exists():
        return []
    return sorted(p for name in ("mask.json", "metrics.json") for p in folder.glob(f"*/{name}"))


def source_cell(mask: dict[str, Any], source: str, anchor: str) -> dict[str, Any]:
    """The cell that decides `source` on `anchor`: its own, else the group-wide one (a source
    without validation rows); masked when the mask has neither."""
    default = mask["cells"].get(GROUP_CELL, {})
    return (mask["cells"].get(source, default).get(anchor) or default.get(anchor)
            or {"masked": True, "weight": 0.0})


def _source_tables(mask: dict[str, Any], sources: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep (n, A) bool, weight (n, A), index of each record's source row) via unique sources."""
    anchors = mask["anchors"]
    names, inverse = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True)
    keep = np.zeros((len(names), len(anchors)), dtype=bool)
    weight = np.zeros((len(names), len(anchors)), dtype=np.float64)
    for i, name in enumerate(names):
        for j, anchor in enumerate(anchors):
            cell = source_cell(mask, name, anchor)
            keep[i, j] = not cell["masked"]
            weight[i, j] = float(cell.get("weight") or 0.0)
    return keep, weight, inverse.reshape(-1)


def aggregate(scores: np.ndarray, sources: Any, mask: dict[str, Any], config: ReliabilityConfig, *,
              warn: bool = True) -> np.ndarray:
    """One score per record from its unmasked anchor scores; NaN where none is usable.

    `scores` is (n, len(mask["anchors"])) in the mask's anchor order; `sources` holds each record's
    source name. NaN inputs (e.g. quarantined rows) count as missing. A mask carrying ``scale``
    (:func:`mira.scoring.anchor_scale.with_scale`) has its anchors put on one scale first. ``trimmed_mean`` cuts
    :func:`trim_count` scores from each end of a record's m usable scores; ``weighted_mean``
    weights each cell by ``max(Spearman, 0)/(1+MAE)`` (equal weights if every usable weight is zero).
    `warn` False: the caller counts NaN results itself (a join over many shards warns once).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if scores.ndim != 2 or scores.shape[1] != len(mask["anchors"]):
        raise ValueError(f"scores must have shape (n, {len(mask['anchors'])}), got {scores.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if mask.get("scale") is not None:  # reliability.anchor_scale: group (mira.scoring.anchor_scale)
        from mira.scoring.anchor_scale import scaled

        scores = scaled(scores, mask["scale"])
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
        cut = trim_count(usable, config)
        csum = np.concatenate((np.zeros((n, 1)), np.cumsum(np.where(np.isinf(ordered), 0.0, ordered), axis=1)), axis=1)
        rows = np.arange(n)
        kept = usable - 2 * cut
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (csum[rows, usable - cut] - csum[rows, cut]) / kept
    out = np.where(usable > 0, out, np.nan)
    missing = int((usable == 0).sum())
    if missing and warn:
        log.warning("%d of %d records have every anchor masked or missing: aggregate is NaN", missing, n)
    return out


def trim_count(usable: np.ndarray, config: ReliabilityConfig) -> np.ndarray:
    """Scores cut from each end of a record's `usable` anchor scores.

    ``floor(trim_fraction * m)`` (as scipy.stats.trim_mean), which is 0 below 1/trim_fraction
    anchors (10 at the default 0.1) — groups have 5-15 anchors. So from ``trim_min_anchors`` usable
    scores up at least one is cut from each end; ``trim_fraction: 0`` turns trimming off.
    """
    usable = np.asarray(usable, dtype=np.int64)
    if config.trim_fraction <= 0:
        return np.zeros_like(usable)
    cut = np.floor(usable * config.trim_fraction).astype(np.int64)
    cut = np.where(usable >= config.trim_min_anchors, np.maximum(cut, 1), cut)
    return np.minimum(cut, np.maximum((usable - 1) // 2, 0))  # always keep at least one score


def masked_records(scores: np.ndarray, sources: Any, mask: dict[str, Any]) -> int:
    """How many records have no usable anchor (their aggregate is NaN)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return 0
    keep_table, _, index = _source_tables(mask, np.asarray(sources))
    return int(((keep_table[index] & ~np.isnan(scores)).sum(axis=1) == 0).sum())
