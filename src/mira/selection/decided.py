"""What select decided, shard by shard: the one view the selection's files are written from.

Select decides in memory (:func:`mira.selection.decide.decide` over the whole score table) or out
of core (:mod:`mira.selection.out_of_core`, over sorted runs on disk); both hand the writer a
:class:`Decided`, whose :meth:`Decided.shards` yields each shard's decisions in corpus order, so
the two write the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mira.artifacts.selection import REASON_CODE, DecisionReason
from mira.corpus.sources import SourceInfo
from mira.scoring.table import ScoreTable
from mira.selection.decide import Decisions
from mira.selection.rankings import Ranking

KEPT_CODES = [REASON_CODE[r] for r in (DecisionReason.KEPT, DecisionReason.KEPT_FLOOR, DecisionReason.UNSCORED_KEPT)]


@dataclass
class ShardDecisions:
    """One shard's rows: their decisions, ranking key and aggregate score, in the shard's order."""

    source: int  # index into Decided.sources
    group: int  # index into Decided.groups; -1: none (or a shard without rows)
    kept: np.ndarray
    reason: np.ndarray  # uint8 codes of REASONS
    rank: np.ndarray  # 0 where not ranked
    key: np.ndarray
    score: np.ndarray
    tokens: np.ndarray
    quarantined: np.ndarray


@dataclass
class Decided:
    """Every record's decision, readable shard by shard, and the figures of the whole selection."""

    sources: list[str]
    groups: list[str]
    masks: dict[str, dict[str, Any] | None]
    mode: str
    key_name: str
    units: dict[str, dict[str, Any]]
    shard_count: int

    def shards(self) -> Iterator[tuple[SourceInfo, Any, ShardDecisions]]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class InMemory(Decided):
    """Decisions held for the whole corpus (select in memory): shards are slices of its arrays."""

    table: ScoreTable | None = None
    ranking: Ranking | None = None
    decisions: Decisions | None = None

    @classmethod
    def of(cls, table: ScoreTable, rank_by: Ranking, decisions: Decisions) -> InMemory:
        return cls(table.sources, table.groups, table.masks, rank_by.mode, rank_by.key_name, decisions.units,
                   len(table.shard_rows), table, rank_by, decisions)

    def shards(self) -> Iterator[tuple[SourceInfo, Any, ShardDecisions]]:
        table, rank_by, decisions = self.table, self.ranking, self.decisions
        assert table is not None and rank_by is not None and decisions is not None
        for info, shard, start, end in table.shard_rows:
            rows = slice(start, end)
            source = int(table.source_idx[start]) if end > start else table.sources.index(info.name)
            group = int(table.group_idx[start]) if end > start else -1
            yield info, shard, ShardDecisions(source, group, decisions.kept[rows], decisions.reason[rows],
                                              decisions.rank[rows], rank_by.key[rows], table.score[rows],
                                              table.tokens[rows], table.quarantined[rows])
