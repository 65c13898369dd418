"""Select out of core: :func:`mira.selection.decide.decide`'s decisions in memory that does not grow
with the corpus.

In memory, select holds ~55 bytes a record (the score table, the ranking key, the sort's order and
the decisions). Here it holds about ``selection.out_of_core_chunk_records`` records at a time:

1. **Scan.** The score table is read and ranked a piece of whole shards at a time
   (:func:`mira.scoring.table.score_table_chunks`, :func:`mira.selection.rankings.ranker`). Each
   piece leaves a side file in corpus order (aggregate, key, tokens, class) and a sorted run of
   its rankable records (:mod:`mira.selection.spill`): per unit the unscored records (by source,
   then the seeded id hash: the random draw's order) and the eligible ones (key descending, then
   the hash), the order decide sorts them in. Per-source and per-unit token sums are kept.
2. **Merge** the runs into one file: every unit's records, in decide's order.
3. **Decide** each unit streaming over its stretch of that file, with decide's arithmetic
   (the random share's closest prefix bounded by floor and cap, floors forced in, caps ruled
   out, the closest prefix of the rest to the budget); each decision (row, reason, rank) goes to
   the bucket of the piece its row belongs to.
4. **Read back** piece by piece: side file plus bucket give each shard its decisions.

The files live in ``selection/.<name>.spill`` (about 140 bytes a record at the peak: runs, the
merged file, side files) and are removed when select ends, or at its next start after a kill.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mira.artifacts.selection import REASON_CODE, DecisionReason
from mira.core.config import RunConfig
from mira.corpus.sources import SourceInfo
from mira.run.rundir import RunDir
from mira.scoring.table import ScoreTable, score_table_chunks
from mira.selection.decide import NO_REASON, check_bounds, nan_key_error, warn_unmet_floors
from mira.selection.decided import KEPT_CODES, Decided, ShardDecisions
from mira.selection.rankings import Ranking, ranker
from mira.selection.spill import RECORD, ascending_bits, merge_runs, sorted_records, write_records
from mira.selection.streaming import RankedUnit, Segment

log = logging.getLogger(__name__)

SIDE = np.dtype([("score", "<f8"), ("key", "<f8"), ("tokens", "<i8"), ("cls", "u1")])
DECISION = np.dtype([("row", "<i8"), ("rank", "<i8"), ("reason", "u1")])
UNSCORED, ELIGIBLE, QUARANTINED = 0, 1, 2  # a record's class; the first two are sorted in this order
_CODE = {name: REASON_CODE[name] for name in DecisionReason}


@dataclass
class _Piece:
    start: int
    rows: int
    shards: list[tuple[SourceInfo, Any, int, int, int, int]]  # info, shard, start, end, source, group


@dataclass
class OutOfCore(Decided):
    """Decisions in spill files, read back a piece of the corpus at a time."""

    folder: Path = Path()
    pieces: list[_Piece] = field(default_factory=list)
    random: bool = True

    def shards(self) -> Iterator[tuple[SourceInfo, Any, ShardDecisions]]:
        for index, piece in enumerate(self.pieces):
            side = np.fromfile(self.folder / f"side-{index:05d}", dtype=SIDE)
            if len(side) != piece.rows:
                raise RuntimeError(f"spill file {self.folder}/side-{index:05d} is incomplete; rerun select")
            reason = np.full(piece.rows, NO_REASON, dtype=np.uint8)
            rank = np.zeros(piece.rows, dtype=np.int64)
            reason[side["cls"] == QUARANTINED] = _CODE[DecisionReason.QUARANTINED]
            if not self.random:
                reason[side["cls"] == UNSCORED] = _CODE[DecisionReason.UNSCORED]
            path = self.folder / f"decisions-{index:05d}"
            decided = np.fromfile(path, dtype=DECISION) if path.exists() else np.empty(0, dtype=DECISION)
            rows = decided["row"] - piece.start
            reason[rows], rank[rows] = decided["reason"], decided["rank"]
            if (reason == NO_REASON).any():
                raise RuntimeError("selection bookkeeping error: a record got no decision")
            kept = np.isin(reason, KEPT_CODES)
            for info, shard, start, end, source, group in piece.shards:
                rows_of = slice(start, end)
                yield info, shard, ShardDecisions(source, group, kept[rows_of], reason[rows_of], rank[rows_of],
                                                  side["key"][rows_of], side["score"][rows_of],
                                                  side["tokens"][rows_of], side["cls"][rows_of] == QUARANTINED)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class _Sums:
    """Per source and per unit, what decide sums over the whole table before deciding."""

    source_tokens: np.ndarray
    usable_tokens: np.ndarray  # of records not quarantined
    unscored_tokens: np.ndarray
    unscored_records: np.ndarray
    source_unit: np.ndarray  # the unit every record of a source is in (-1: none seen)
    unit_tokens: np.ndarray
    unit_records: np.ndarray
    unit_unscored: np.ndarray  # unscored records sorted (0 unless selection.unscored is random)
    unit_eligible: np.ndarray

    @classmethod
    def empty(cls, sources: int, units: int) -> _Sums:
        def zeros(n: int) -> np.ndarray:
            return np.zeros(n, dtype=np.int64)

        return cls(zeros(sources), zeros(sources), zeros(sources), zeros(sources), np.full(sources, -1),
                   zeros(units), zeros(units), zeros(units), zeros(units))


def decide_out_of_core(config: RunConfig, run: RunDir, infos: list[SourceInfo], folder: Path) -> OutOfCore:
    """Every record's decision, as :func:`mira.selection.decide.decide` makes it, in bounded memory;
    the spill files go to `folder` (emptied first). Close the result to remove them."""
    pieces = score_table_chunks(config, run, infos, config.selection.out_of_core_chunk_records)
    return decide_pieces(config, [info.name for info in infos], pieces, ranker(config, run), folder)


def decide_pieces(config: RunConfig, sources: list[str], tables: Iterable[tuple[int, ScoreTable]],
                  rank_piece: Callable[[ScoreTable], Ranking], folder: Path) -> OutOfCore:
    """:func:`decide_out_of_core` over the score table's pieces `tables` ((first row, piece) in
    corpus order, at least one), each ranked by `rank_piece`."""
    shutil.rmtree(folder, ignore_errors=True)  # a killed select's leftovers
    folder.mkdir(parents=True)
    sel = config.selection
    check_bounds(config, sources)
    pieces: list[_Piece] = []
    runs: list[Path] = []
    sums: _Sums | None = None
    mode = key_name = ""
    groups: list[str] = []
    masks: dict[str, Any] = {}
    for start, table in tables:
        rank_by = rank_piece(table)
        mode, key_name, groups, masks = rank_by.mode, rank_by.key_name, table.groups, table.masks
        if sums is None:
            n_units = len(groups) if mode == "group" else len(sources) if mode == "source" else 1
            sums = _Sums.empty(len(sources), n_units)
        unit_of = table.group_idx if mode == "group" else table.source_idx if mode == "source" else \
            np.zeros(len(table.tokens), dtype=np.int32)
        if np.isnan(rank_by.key[rank_by.eligible]).any():
            raise nan_key_error()
        cls = np.where(rank_by.eligible, ELIGIBLE, np.where(table.quarantined, QUARANTINED, UNSCORED)).astype(np.uint8)
        if ((unit_of < 0) & (cls != QUARANTINED)).any():
            raise RuntimeError("selection bookkeeping error: a record got no decision")
        _add_sums(sums, table, unit_of, cls, sel.unscored == "random")
        side = np.empty(len(cls), dtype=SIDE)
        side["score"], side["key"], side["tokens"], side["cls"] = table.score, rank_by.key, table.tokens, cls
        write_records(folder / f"side-{len(pieces):05d}", side)
        sort = (cls == ELIGIBLE) | ((cls == UNSCORED) & (sel.unscored == "random"))
        if sort.any():
            runs.append(folder / f"run-{len(pieces):05d}")
            write_records(runs[-1], sorted_records(_sort_records(table, rank_by.key, unit_of, cls, sort, start)))
        shards = [(info, shard, s, e, int(table.source_idx[s]) if e > s else sources.index(info.name),
                   int(table.group_idx[s]) if e > s else -1) for info, shard, s, e in table.shard_rows]
        pieces.append(_Piece(start, len(cls), shards))
        del table, rank_by, side, cls, unit_of
    assert sums is not None, "no piece of the score table"
    merged = folder / "merged"
    merged.touch()
    if merge_runs(runs, merged, sel.out_of_core_chunk_records) != int(sums.unit_unscored.sum() +
                                                                       sums.unit_eligible.sum()):
        raise RuntimeError("selection bookkeeping error: the merged runs lost records")
    for path in runs:
        path.unlink()
    unit_names = groups if mode == "group" else sources if mode == "source" else ["all"]
    buckets = _Buckets(folder, [p.start for p in pieces])
    decider = _Decider(config, sources, sums, merged, buckets, sel.out_of_core_chunk_records)
    units = decider.decide_units(unit_names)
    warn_unmet_floors(config, sources, decider.kept_by_source, decider.floor_tokens,
                      sums.source_tokens.astype(np.float64))
    merged.unlink()
    return OutOfCore(sources, groups, masks, mode, key_name, units, sum(len(p.shards) for p in pieces), folder,
                     pieces, sel.unscored == "random")


def _add_sums(sums: _Sums, table: Any, unit_of: np.ndarray, cls: np.ndarray, random: bool) -> None:
    n_sources, n_units = len(sums.source_tokens), len(sums.unit_tokens)

    def total(index: np.ndarray, where: np.ndarray | None, size: int, weights: np.ndarray | None = None) -> Any:
        chosen = index if where is None else index[where]
        w = None if weights is None else (weights if where is None else weights[where])
        # int64 sums (bincount's weights are float64: exact only below 2**53)
        return np.bincount(chosen, weights=w, minlength=size).round().astype(np.int64) if w is not None else \
            np.bincount(chosen, minlength=size).astype(np.int64)

    tokens, sources = table.tokens, table.source_idx
    unscored = cls == UNSCORED
    sums.source_tokens += total(sources, None, n_sources, tokens)
    sums.usable_tokens += total(sources, ~table.quarantined, n_sources, tokens)
    sums.unscored_tokens += total(sources, unscored, n_sources, tokens)
    sums.unscored_records += total(sources, unscored, n_sources)
    for s in np.unique(sources[unit_of >= 0]):
        units = np.unique(unit_of[(sources == s) & (unit_of >= 0)])
        if len(units) != 1 or sums.source_unit[s] not in (-1, units[0]):
            raise RuntimeError("selection bookkeeping error: a source's records are in two units")
        sums.source_unit[s] = units[0]
    inside = unit_of >= 0
    sums.unit_tokens += total(unit_of, inside, n_units, tokens)
    sums.unit_records += total(unit_of, inside, n_units)
    if random:
        sums.unit_unscored += total(unit_of, inside & unscored, n_units)
    sums.unit_eligible += total(unit_of, inside & (cls == ELIGIBLE), n_units)


def _sort_records(table: Any, key: np.ndarray, unit_of: np.ndarray, cls: np.ndarray, chosen: np.ndarray,
                  start: int) -> np.ndarray:
    """The chosen rows as spill records: unscored ones sort by (source, hash), eligible ones by
    (key descending, hash), each unit's unscored before its eligible; the row breaks any tie."""
    rows = np.flatnonzero(chosen)
    out = np.zeros(len(rows), dtype=RECORD)
    c = cls[rows].astype(np.uint64)
    out["k1"] = (unit_of[rows].astype(np.uint64) + np.uint64(1)) * np.uint64(2) + c
    eligible = c == ELIGIBLE
    out["k2"] = np.where(eligible, ascending_bits(np.where(eligible, -key[rows], 0.0)),
                         table.source_idx[rows].astype(np.uint64))
    out["tie"], out["row"] = table.tie[rows], rows + start
    out["tokens"], out["key"], out["source"] = table.tokens[rows], key[rows], table.source_idx[rows]
    return out


class _Buckets:
    """Decisions, appended to the file of the piece their row is in."""

    def __init__(self, folder: Path, starts: list[int]) -> None:
        self.folder, self.starts = folder, np.asarray(starts, dtype=np.int64)

    def add(self, rows: np.ndarray, reasons: np.ndarray, ranks: np.ndarray) -> None:
        if not len(rows):
            return
        out = np.empty(len(rows), dtype=DECISION)
        out["row"], out["reason"], out["rank"] = rows, reasons, ranks
        piece = np.searchsorted(self.starts, out["row"], side="right") - 1
        order = np.argsort(piece, kind="stable")
        out, piece = out[order], piece[order]
        edges = np.flatnonzero(np.diff(piece)) + 1
        for part, index in zip(np.split(out, edges), piece[np.r_[0, edges]], strict=True):
            write_records(self.folder / f"decisions-{int(index):05d}", part)


class _Decider:
    """decide()'s per-unit rule, streaming over the merged file."""

    def __init__(self, config: RunConfig, sources: list[str], sums: _Sums, merged: Path, buckets: _Buckets,
                 block: int) -> None:
        sel = config.selection
        self.sel, self.sums, self.merged, self.buckets, self.block = sel, sums, merged, buckets, block
        n = len(sums.source_tokens)
        total = int(sums.source_tokens.sum())
        self.fraction = sel.budget_share(total)
        source_tokens = sums.source_tokens.astype(np.float64)
        usable = sums.usable_tokens.astype(np.float64)
        floor_share = np.array([sel.floor.get(s, 0.0) for s in sources])
        cap_share = np.array([sel.cap.get(s, 1.0) for s in sources])
        self.random_kept = np.zeros(n)  # tokens of each source its random share kept
        self.kept_by_source = np.zeros(n)
        self.floor_tokens, self.cap_tokens = floor_share * source_tokens, cap_share * source_tokens
        scale = np.divide(source_tokens, usable, out=np.ones_like(source_tokens), where=usable > 0)
        self.bounds = (floor_share * scale, cap_share * scale)

    def decide_units(self, unit_names: list[str]) -> dict[str, dict[str, Any]]:
        units: dict[str, dict[str, Any]] = {}
        position = 0
        for u, name in enumerate(unit_names):
            unit_tokens = int(self.sums.unit_tokens[u])
            budget = self.fraction * unit_tokens
            kept_tokens = 0
            random_share = 0.0
            if self.sel.unscored == "random":
                random_share, kept_tokens = self._random_share(u, position)
            position += int(self.sums.unit_unscored[u])
            eligible = int(self.sums.unit_eligible[u])
            unit = RankedUnit(Segment(self.merged, position, position + eligible, self.block),
                              self.floor_tokens - self.random_kept, self.cap_tokens - self.random_kept,
                              bool(self.sel.floor or self.sel.cap))
            cutoff, ranked_tokens = unit.decide(budget, random_share, self._emit)
            position += eligible
            units[name] = {"tokens_in": unit_tokens, "budget_tokens": round(budget, 1),
                           "unscored_share_tokens": round(random_share, 1),
                           "kept_tokens": kept_tokens + ranked_tokens, "cutoff": cutoff,
                           "eligible_records": eligible, "records_in": int(self.sums.unit_records[u])}
        return units

    def _emit(self, records: np.ndarray, reasons: np.ndarray, ranks: np.ndarray) -> None:
        kept = np.isin(reasons, KEPT_CODES)
        self.kept_by_source += np.bincount(records["source"][kept], weights=records["tokens"][kept],
                                           minlength=len(self.kept_by_source))
        self.buckets.add(records["row"].astype(np.int64), reasons, ranks)

    def _random_share(self, unit: int, position: int) -> tuple[float, int]:
        """decide's _random_share for one unit: (tokens taken from its budget, tokens kept)."""
        floor_share, cap_share = self.bounds
        used, kept = 0.0, 0
        for s in range(len(self.random_kept)):
            count = int(self.sums.unscored_records[s])
            if self.sums.source_unit[s] != unit or count == 0:
                continue
            segment = Segment(self.merged, position, position + count, self.block)
            position += count
            unscored_tokens = float(self.sums.unscored_tokens[s])
            share = self.fraction * unscored_tokens
            taken = segment.closest_prefix(share)
            bounded = segment.within(taken, floor_share[s] * unscored_tokens, cap_share[s] * unscored_tokens)
            if bounded != taken:  # a floor or cap moved it: the budget pays for what is really kept
                taken, share = bounded, float(segment.prefix(bounded))
            for first, records in segment.blocks():
                drawn = np.arange(first, first + len(records)) < taken
                reasons = np.where(drawn, _CODE[DecisionReason.UNSCORED_KEPT], _CODE[DecisionReason.UNSCORED_BELOW])
                self._emit(records, reasons.astype(np.uint8), np.zeros(len(records), dtype=np.int64))
            kept_tokens = segment.prefix(taken)
            self.random_kept[s] += float(kept_tokens)
            kept += int(kept_tokens)
            used += share
        return used, kept

