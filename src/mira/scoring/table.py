"""The score table: the columns of every score file that rankings and selection need, in corpus order.

Selection (:mod:`mira.stages.select`) and every ranking (:mod:`mira.selection.rankings`) read the corpus
through this one table, so they agree on the row order (source, shard, row within the shard) and
on the seeded tie-break. It owns no model call: it is a join over ``scores/``.

The aggregate is computed here, at join time, from the per-anchor scores with the group's mask
under the current ``reliability`` config (:func:`mira.scoring.reliability.current_mask`) and
:func:`aggregate_scores`, the one function the report uses too. So a new threshold or aggregator
re-selects in seconds: no student is loaded and no record is read again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mira.artifacts.scores import SCORES_SUMMARY
from mira.core.config import ReliabilityConfig, RunConfig
from mira.core.hashing import stable_rank
from mira.corpus.sources import SourceInfo
from mira.run.rundir import RunDir
from mira.scoring.corpus_scores import shard_scores_path

log = logging.getLogger(__name__)


@dataclass
class ScoreTable:
    """The columns of every score file selection needs, in corpus order (source, shard, row)."""

    run_root: Path
    sources: list[str]
    groups: list[str]
    source_idx: np.ndarray
    group_idx: np.ndarray
    tokens: np.ndarray
    score: np.ndarray  # the reliability-masked aggregate (NaN: quarantined or every anchor masked)
    quarantined: np.ndarray
    tie: np.ndarray  # seeded hash of the id: the deterministic tie-break
    shard_rows: list[tuple[SourceInfo, Any, int, int]]  # (source, shard, first row, end row)
    # Each group's mask the aggregate used (None: no rubric), so select's outputs need not rebuild it.
    masks: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def aggregate_scores(table: Any, mask: dict[str, Any] | None, reliability: ReliabilityConfig) -> np.ndarray:
    """The aggregate of every row of a score file (a pyarrow table with ``source``, ``quarantine``
    and the mask's anchor columns): NaN for quarantined rows and where every anchor is masked."""
    from mira.scoring.reliability import aggregate

    out = np.full(table.num_rows, np.nan)
    if mask is None or table.num_rows == 0:
        return out
    missing = [a for a in mask["anchors"] if a not in table.column_names]
    if missing:
        raise RuntimeError(f"score file lacks anchors {', '.join(missing)} of the mask; rerun `mira score`")
    ok = ~table.column("quarantine").is_valid().to_numpy(zero_copy_only=False)
    if ok.any():
        scores = np.column_stack([table.column(a).to_numpy(zero_copy_only=False).astype(np.float64)
                                  for a in mask["anchors"]])
        sources = np.asarray(table.column("source").to_pylist(), dtype=object)
        out[ok] = aggregate(scores[ok], sources[ok], mask, reliability, warn=False)
    return out


def current_masks(config: RunConfig, run: RunDir, infos: list[SourceInfo],
                  groups_of: dict[str, str | None]) -> dict[str, dict[str, Any] | None]:
    """Each group's mask under the current reliability config (see :func:`mira.scoring.reliability.current_mask`),
    carrying its anchors' statistics over the group's score files under ``anchor_scale: group``."""
    from mira.scoring.anchor_scale import for_config
    from mira.scoring.reliability import current_mask

    return {group: for_config(current_mask(run, group, config.reliability), config.reliability,
                              [shard_scores_path(run, shard) for info in infos if groups_of.get(info.name) == group
                               for shard in info.shards])
            for group in sorted({g for g in groups_of.values() if g is not None})}


def load_score_table(config: RunConfig, run: RunDir, infos: list[SourceInfo]) -> ScoreTable:
    import pyarrow.parquet as pq

    groups_of = {name: s.group for name, s in SCORES_SUMMARY.load(run).sources.items()}
    group_names = sorted({g for g in groups_of.values() if g is not None})
    masks = current_masks(config, run, infos, groups_of)
    # Every column is allocated once for the whole corpus and filled shard by shard: per-shard
    # pieces joined at the end held the table twice, and their small blocks stayed in the heap.
    total = sum(info.records for info in infos)  # score checked that its files hold exactly these rows
    source_idx, group_idx = np.empty(total, dtype=np.int32), np.empty(total, dtype=np.int32)
    tokens, score = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.float64)
    quarantined, tie = np.empty(total, dtype=bool), np.empty(total, dtype=np.uint64)
    seed = config.selection.seed
    shard_rows = []
    row = 0
    for s_index, info in enumerate(infos):
        group = groups_of.get(info.name)
        g_index = group_names.index(group) if group is not None else -1
        mask = masks.get(group) if group is not None else None
        anchors = mask["anchors"] if mask is not None else []
        for shard in info.shards:
            table = pq.read_table(shard_scores_path(run, shard), columns=["id", "source", "tokens", "quarantine",
                                                                        *anchors])
            end = row + table.num_rows
            if end > total:
                raise RuntimeError(f"score files hold more rows than ingest counted ({total}); rerun `mira score`")
            rows = slice(row, end)
            source_idx[rows], group_idx[rows] = s_index, g_index
            tokens[rows] = table.column("tokens").to_numpy()
            score[rows] = aggregate_scores(table, mask, config.reliability)
            quarantined[rows] = table.column("quarantine").is_valid().to_numpy(zero_copy_only=False)
            tie[rows] = [stable_rank(seed, rid) for rid in table.column("id").to_pylist()]
            shard_rows.append((info, shard, row, end))
            row = end
    if row != total:
        raise RuntimeError(f"score files hold {row} rows, ingest counted {total}; rerun `mira score`")
    unscored = int((np.isnan(score) & ~quarantined).sum())
    if unscored:
        # Info, not a warning: every method loads this table, and a baseline that never reads the score
        # (length, random) must not warn about masked anchors. A selection ranked by the score says it
        # once, as shares of its tokens (mira.selection.notes).
        log.info("%d of %d records have every anchor masked: their aggregate is NaN (reliability.*)",
                 unscored, len(score))
    return ScoreTable(run.root, [i.name for i in infos], group_names, source_idx, group_idx, tokens, score,
                      quarantined, tie, shard_rows, masks)
