"""Small statistics in numpy alone (importing scipy.stats costs seconds, more than a whole report)."""

from __future__ import annotations

import math
from typing import Any


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined.

    Implemented here because importing scipy.stats costs seconds, more than the whole report.
    """
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def ranks(values: Any) -> Any:
    """0-based ranks, ties given their average rank."""
    import numpy as np

    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]
