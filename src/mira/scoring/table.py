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
from collections.abc import Iterator
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
    """The whole corpus's score table (select in memory; see :func:`score_table_chunks` for out of core)."""
    total = sum(info.records for info in infos)  # score checked that its files hold exactly these rows
    reader = _TableReader(config, run, infos)
    table = reader.read([(s, info, shard) for s, info in enumerate(infos) for shard in info.shards], total)
    reader.finish(table.shard_rows[-1][3] if table.shard_rows else 0, total, int((np.isnan(table.score) &
                                                                                  ~table.quarantined).sum()))
    return table


def score_table_chunks(config: RunConfig, run: RunDir, infos: list[SourceInfo],
                       max_records: int) -> Iterator[tuple[int, ScoreTable]]:
    """The score table in pieces of whole shards, at most `max_records` rows each (a bigger shard is
    a piece of its own), in corpus order: (first row of the piece in the whole table, the piece,
    whose ``shard_rows`` count from 0). Every piece has every source and group; always one piece."""
    reader = _TableReader(config, run, infos)
    total = sum(info.records for info in infos)
    row, unscored, size = 0, 0, 0
    pending: list[tuple[int, SourceInfo, Any]] = []
    shards = [(s, info, shard) for s, info in enumerate(infos) for shard in info.shards]
    counts = [reader.rows(shard) for _, _, shard in shards]
    for index, entry in enumerate(shards):
        pending.append(entry)
        size += counts[index]
        if index + 1 == len(shards) or size + counts[index + 1] > max_records:
            table = reader.read(pending, total - row)
            unscored += int((np.isnan(table.score) & ~table.quarantined).sum())
            yield row, table
            row += len(table.tokens)
            pending, size = [], 0
    if not shards:
        yield 0, reader.read([], 0)
    reader.finish(row, total, unscored)


class _TableReader:
    """Reads score files into :class:`ScoreTable` columns, under one set of masks and group names."""

    def __init__(self, config: RunConfig, run: RunDir, infos: list[SourceInfo]) -> None:
        self.config, self.run, self.infos = config, run, infos
        self.groups_of = {name: s.group for name, s in SCORES_SUMMARY.load(run).sources.items()}
        self.group_names = sorted({g for g in self.groups_of.values() if g is not None})
        self.masks = current_masks(config, run, infos, self.groups_of)

    def read(self, shards: list[tuple[int, SourceInfo, Any]], room: int) -> ScoreTable:
        """The rows of `shards` ((source index, info, shard) in corpus order); `room`: how many rows
        ingest counted from the first of them to the end of the corpus."""
        import pyarrow.parquet as pq

        n = sum(self.rows(shard) for _, _, shard in shards)
        if n > room:
            total = sum(info.records for info in self.infos)
            raise RuntimeError(f"score files hold more rows than ingest counted ({total}); rerun `mira score`")
        # Every column is allocated once and filled shard by shard: per-shard pieces joined at the
        # end held the table twice, and their small blocks stayed in the heap.
        source_idx, group_idx = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32)
        tokens, score = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64)
        quarantined, tie = np.empty(n, dtype=bool), np.empty(n, dtype=np.uint64)
        seed = self.config.selection.seed
        shard_rows = []
        row = 0
        for s_index, info, shard in shards:
            group = self.groups_of.get(info.name)
            g_index = self.group_names.index(group) if group is not None else -1
            mask = self.masks.get(group) if group is not None else None
            anchors = mask["anchors"] if mask is not None else []
            table = pq.read_table(shard_scores_path(self.run, shard),
                                  columns=["id", "source", "tokens", "quarantine", *anchors])
            rows = slice(row, row + table.num_rows)
            source_idx[rows], group_idx[rows] = s_index, g_index
            tokens[rows] = table.column("tokens").to_numpy()
            score[rows] = aggregate_scores(table, mask, self.config.reliability)
            quarantined[rows] = table.column("quarantine").is_valid().to_numpy(zero_copy_only=False)
            tie[rows] = [stable_rank(seed, rid) for rid in table.column("id").to_pylist()]
            shard_rows.append((info, shard, row, rows.stop))
            row = rows.stop
        return ScoreTable(self.run.root, [i.name for i in self.infos], self.group_names, source_idx, group_idx,
                          tokens, score, quarantined, tie, shard_rows, self.masks)

    def rows(self, shard: Any) -> int:
        """Rows of a shard's score file, from its footer (no row is read)."""
        import pyarrow.parquet as pq

        return int(pq.read_metadata(shard_scores_path(self.run, shard)).num_rows)

    def finish(self, rows: int, total: int, unscored: int) -> None:
        """Check that the score files held exactly the rows ingest counted; say how many lack a score."""
        if rows != total:
            raise RuntimeError(f"score files hold {rows} rows, ingest counted {total}; rerun `mira score`")
        if unscored:
            # Info, not a warning: every method loads this table, and a baseline that never reads the score
            # (length, random) must not warn about masked anchors. A selection ranked by the score says it
            # once, as shares of its tokens (mira.selection.notes).
            log.info("%d of %d records have every anchor masked: their aggregate is NaN (reliability.*)",
                     unscored, rows)
