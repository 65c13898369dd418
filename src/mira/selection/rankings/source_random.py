"""Source-preserving random (the paper's strong baseline): each source keeps the same token
share, chosen by a seeded hash of the record id. Always per source, whatever ``selection.mode``."""

from __future__ import annotations

import numpy as np

from mira.core.config import RunConfig
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking

MODE = "source"


def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    # The tie-break hash is already a seeded uniform draw per record id: use it as the key.
    return Ranking(-table.tie.astype(np.float64), ~table.quarantined, MODE, "seeded random rank")
