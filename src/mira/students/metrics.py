"""How well a student agrees with its teacher: Spearman and MAE per (source, anchor) and group-wide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None when undefined (fewer than 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    value = float(spearmanr(a, b).statistic)
    return value if np.isfinite(value) else None


def _cell(pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(pred) & np.isfinite(target)
    n = int(ok.sum())
    rho = spearman(pred[ok], target[ok])
    return {"mae": round(float(np.mean(np.abs(pred[ok] - target[ok]))), 4) if n else None,
            "spearman": round(rho, 4) if rho is not None else None, "n": n}


def evaluate(pred: np.ndarray, target: np.ndarray, sources: Sequence[str], anchors: list[str]) -> dict[str, Any]:
    """Per (source, anchor) and group-wide validation MAE / Spearman / n, plus the mean Spearman."""
    source_of_row = np.asarray(sources, dtype=object)
    cells = {}
    for source in sorted(set(source_of_row.tolist())):
        rows = source_of_row == source
        cells[source] = {a: _cell(pred[rows, j], target[rows, j]) for j, a in enumerate(anchors)}
    overall = {a: _cell(pred[:, j], target[:, j]) for j, a in enumerate(anchors)}
    rhos = [c["spearman"] for c in overall.values() if c["spearman"] is not None]
    return {"cells": cells, "overall": overall,
            "mean_spearman": round(float(np.mean(rhos)), 4) if rhos else None,
            "mean_mae": round(float(np.mean([c["mae"] for c in overall.values() if c["mae"] is not None])), 4)
            if any(c["mae"] is not None for c in overall.values()) else None}
