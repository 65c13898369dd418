"""Length: longest records first, under ``selection.mode``.

"Longest first" rather than a length window because it is the simplest length prior and exactly
what MIRA must not reduce to: if MIRA's scores were a length proxy, the selections would overlap.
"""

from __future__ import annotations

import numpy as np

from mira.core.config import RunConfig
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking


def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    return Ranking(table.tokens.astype(np.float64), ~table.quarantined, config.selection.mode, "tokens")
