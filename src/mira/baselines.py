"""Old home of the rankings; kept so ``mira.baselines.ranking(config, table)`` still works.

New code imports :mod:`mira.rankings` (one module per method, behind a registry).
"""

from __future__ import annotations

from mira.rankings import UNSCORED, Ranking, ranking

__all__ = ["UNSCORED", "Ranking", "ranking"]
