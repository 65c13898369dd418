"""decide's arithmetic over a stretch of a sorted spill file, a block at a time.

:func:`mira.selection.decide.decide` cuts a unit's records with running token sums over arrays
the size of the unit. Here the same sums are taken block by block, with the same integer and
float operations in the same order, so every cut falls on the same record: a :class:`Segment`
answers ``searchsorted`` on its running sum from one pass's per-block totals plus one block read;
:class:`RankedUnit` decides a unit's ranked records in one streaming pass (two with floors or caps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mira.artifacts.selection import REASON_CODE, DecisionReason
from mira.selection.spill import iter_records

_KEPT = REASON_CODE[DecisionReason.KEPT]
_FLOOR = REASON_CODE[DecisionReason.KEPT_FLOOR]
_BELOW = REASON_CODE[DecisionReason.BELOW_CUTOFF]
_CAP = REASON_CODE[DecisionReason.SOURCE_CAP]

Emit = Callable[[np.ndarray, np.ndarray, np.ndarray], None]  # (records, reason codes, ranks)


class Segment:
    """Records [start, end) of a spill file and the running sum of their tokens."""

    def __init__(self, path: Path, start: int, end: int, block: int) -> None:
        self.path, self.start, self.end, self.block = path, start, end, block
        self.n = end - start
        self._ends: np.ndarray | None = None

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(position of its first record in the segment, records) of each block."""
        for index, records in enumerate(iter_records(self.path, self.start, self.end, self.block)):
            yield index * self.block, records

    def ends(self) -> np.ndarray:
        """The running sum at the end of each block (one pass, then kept: n / block numbers)."""
        if self._ends is None:
            totals = [int(records["tokens"].sum()) for _, records in self.blocks()]
            self._ends = np.cumsum(np.asarray(totals, dtype=np.int64))
        return self._ends

    def _running(self, index: int) -> np.ndarray:
        base = self.ends()[index - 1] if index else np.int64(0)
        first = self.start + index * self.block
        records = next(iter_records(self.path, first, min(first + self.block, self.end), self.block))
        running = records["tokens"].astype(np.int64)
        np.cumsum(running, out=running)
        return running + base

    def count(self, value: float, side: str) -> int:
        """``np.searchsorted(running, value, side)`` of the whole segment's running sum."""
        ends = self.ends()
        index = int(np.searchsorted(ends, value, side=side))  # type: ignore[call-overload]
        if index == len(ends):
            return self.n
        return index * self.block + int(np.searchsorted(self._running(index), value, side=side))  # type: ignore[call-overload]

    def at(self, k: int) -> Any:
        """running[k] (an int64, as decide reads it)."""
        return self._running(k // self.block)[k % self.block]

    def prefix(self, k: int) -> Any:
        """The tokens of the first k records (``tokens[idx[:k]].sum()``)."""
        return self.at(k - 1) if k else np.int64(0)

    def closest_prefix(self, budget: float) -> int:
        """decide's _closest_prefix over the segment."""
        if budget <= 0 or self.n == 0:
            return 0
        within = self.count(budget, "right")
        if within < self.n:
            before = self.at(within - 1) if within else 0
            if self.at(within) - budget < budget - before:
                within += 1
        return within

    def within(self, taken: int, floor: float, cap: float) -> int:
        """decide's _within over the segment."""
        if floor > 0 and (self.at(taken - 1) if taken else 0) < floor - 1e-9:
            taken = min(self.count(floor - 1e-9, "left") + 1, self.n)
        return min(taken, self.count(cap + 1e-9, "right"))


def source_running(sources: np.ndarray, tokens: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """Each record's running token sum within its source (inclusive), continuing the sums in
    `carried` (one per source), which are moved on to the block's end."""
    if not len(sources):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(sources, kind="stable")
    s, t = sources[order], tokens[order].astype(np.int64)
    running = np.cumsum(t)
    new = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new)
    before = running[starts] - t[starts]  # the block's sum before each source's first record
    inclusive = running - before[np.cumsum(new) - 1] + carried[s]
    last = np.r_[starts[1:], len(s)] - 1
    carried[s[last]] = inclusive[last]
    out = np.empty_like(inclusive)
    out[order] = inclusive
    return out


class RankedUnit:
    """A unit's eligible records, best first: floors forced in, caps ruled out, the closest prefix
    of the rest to what the budget leaves (decide's loop body after the random share)."""

    def __init__(self, segment: Segment, floor_tokens: np.ndarray, cap_tokens: np.ndarray, bounded: bool) -> None:
        self.segment, self.floor, self.cap, self.bounded = segment, floor_tokens, cap_tokens, bounded

    def _forced_capped(self, records: np.ndarray, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.bounded:
            none = np.zeros(len(records), dtype=bool)
            return none, none
        sources, tokens = records["source"], records["tokens"]
        running = source_running(sources, tokens, carried)
        capped = running > self.cap[sources] + 1e-9
        # A floor is a guarantee: keep the source's best records until the floor is reached.
        forced = ((running - tokens) < self.floor[sources] - 1e-9) & ~capped
        return forced, capped

    def decide(self, budget: float, random_share: float, emit: Emit) -> tuple[float | None, int]:
        """Emit every record's reason and rank; returns (the cutoff key, the tokens kept)."""
        forced_tokens = np.int64(0)
        if self.bounded:
            carried = np.zeros(len(self.floor), dtype=np.int64)
            for _, records in self.segment.blocks():
                forced, _ = self._forced_capped(records, carried)
                forced_tokens += records["tokens"][forced].sum()
        room = budget - random_share - forced_tokens
        carried = np.zeros(len(self.floor), dtype=np.int64)
        taking = bool(room > 0)  # _closest_prefix keeps nothing of a budget <= 0
        before: Any = 0  # the running sum of the candidates kept so far (0 until one is)
        candidate_running = np.int64(0)
        cutoff: float | None = None
        kept_tokens = 0
        for first, records in self.segment.blocks():
            forced, capped = self._forced_capped(records, carried)
            candidate = ~forced & ~capped
            running = records["tokens"][candidate].astype(np.int64)
            np.cumsum(running, out=running)
            running += candidate_running
            kept = np.zeros(len(running), dtype=bool)
            if taking:
                within = int(np.searchsorted(running, room, side="right"))
                kept[:within] = True
                if within < len(running):
                    previous = running[within - 1] if within else before
                    if running[within] - room < room - previous:
                        kept[within] = True
                    taking = False
                elif within:
                    before = running[within - 1]
            if len(running):
                candidate_running = running[-1]
            reasons = np.full(len(records), _BELOW, dtype=np.uint8)
            chosen = np.flatnonzero(candidate)[kept]
            reasons[chosen] = _KEPT
            reasons[forced] = _FLOOR
            reasons[capped] = _CAP
            if len(chosen):
                cutoff = float(records["key"][chosen[-1]])
            kept_tokens += int(records["tokens"][chosen].sum()) + int(records["tokens"][forced].sum())
            emit(records, reasons, np.arange(first + 1, first + len(records) + 1, dtype=np.int64))
        return cutoff, kept_tokens
