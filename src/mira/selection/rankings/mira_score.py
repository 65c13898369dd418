"""MIRA's own ranking: the reliability-masked aggregate score, under ``selection.mode``.

``mode: group`` is MIRA-Group (the paper's default), ``source`` MIRA-Source and ``global``
MIRA-Global (one cutoff over all sources, which starves low-scoring groups in the paper).
"""

from __future__ import annotations

import numpy as np

from mira.core.config import RunConfig
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking


def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    """Records with a NaN score (every anchor of their source masked) are not eligible."""
    eligible = ~table.quarantined & ~np.isnan(table.score)
    # The score column itself, not a copy: a NaN key is never ranked (not eligible), so it needs no -inf.
    return Ranking(table.score, eligible, config.selection.mode, "score")
