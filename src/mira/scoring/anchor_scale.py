"""One scale for a group's anchors before they are averaged (``reliability.anchor_scale: group``).

MIRA-Group ranks all of a group's records with one cutoff, but the mask is per (source, anchor):
a source's aggregate averages the anchors reliable *for that source*. Two sources whose reliable
anchors differ are then compared on averages of different anchors, and the students of different
anchors sit at different levels (one predicts ~5.9, another ~6.2 for the same records): that offset,
not quality, decides the cut, and can leave one source none of its tokens while another keeps
most of its own.

``group`` first moves every anchor's scores to the group's common location and spread: a z-score
over the group's scored records (every source of the group, masked or not, so a source that is
better than the others *on that anchor* stays better), re-expressed as ``center + spread * z``
with the group's mean anchor mean and mean anchor standard deviation, so aggregates stay on the
familiar 0-10 scale. Within a source whose reliable anchors are the same for all its records
this changes the order only through the weights of the anchors; across sources it removes the
offset. ``raw`` (the paper) averages the scores as the students wrote them.

The statistics are one pass over the group's score files (anchor columns only), made at join
time like the mask, so switching the option re-selects without scoring again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# An anchor whose scores vary less than this over the group carries no order: it is set to the center.
MIN_STD = 1e-9


def anchor_stats(paths: Iterable[Path], anchors: list[str]) -> dict[str, Any]:
    """Count, mean and standard deviation of each anchor's scores over the score files `paths`
    (quarantined rows and missing scores left out), and the group's center and spread."""
    import pyarrow.parquet as pq

    count = np.zeros(len(anchors))
    total = np.zeros(len(anchors))
    squares = np.zeros(len(anchors))
    for path in paths:
        table = pq.read_table(path, columns=["quarantine", *anchors])
        ok = ~table.column("quarantine").is_valid().to_numpy(zero_copy_only=False)
        for j, anchor in enumerate(anchors):
            values = table.column(anchor).to_numpy(zero_copy_only=False).astype(np.float64)[ok]
            values = values[~np.isnan(values)]
            count[j] += len(values)
            total[j] += values.sum()
            squares[j] += np.square(values).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    usable = count > 1
    return {"anchors": list(anchors), "records": count.astype(int).tolist(),
            "mean": np.where(usable, mean, np.nan).tolist(), "std": np.where(usable, std, np.nan).tolist(),
            "center": float(np.nanmean(mean[usable])) if usable.any() else float("nan"),
            "spread": float(np.nanmean(std[usable])) if usable.any() else float("nan")}


def for_config(mask: dict[str, Any] | None, reliability: Any, paths: Iterable[Path]) -> dict[str, Any] | None:
    """The mask as selection and the report use it: carrying the statistics of the group's score
    files `paths` under ``anchor_scale: group``, unchanged otherwise (the files are not read)."""
    if mask is None or reliability.anchor_scale != "group":
        return mask
    return with_scale(mask, anchor_stats(paths, mask["anchors"]))


def with_scale(mask: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The mask, carrying the group's anchor statistics: :func:`mira.scoring.reliability.aggregate` then
    aggregates scaled scores (:func:`scaled`)."""
    if stats["anchors"] != mask["anchors"]:
        raise ValueError("anchor statistics were computed for other anchors than the mask's")
    return {**mask, "scale": stats}


def scaled(scores: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """`scores` (n, anchors) moved to one scale: center + spread * (score - anchor mean) / anchor std.

    An anchor without statistics (no scored record) keeps NaN; a constant one gets the center."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    center, spread = float(stats["center"]), float(stats["spread"])
    if not np.isfinite(spread) or spread < MIN_STD:
        spread = 1.0  # every anchor constant: only the offsets are removed
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > MIN_STD, (scores - mean) / std, 0.0)
    return np.where(np.isnan(scores) | np.isnan(mean), np.nan, center + spread * z)
