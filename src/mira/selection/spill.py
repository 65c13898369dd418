"""Sorting more records than memory holds: sorted runs on disk, merged through bounded buffers.

Select out of core (:mod:`mira.selection.out_of_core`) orders every record of a unit as
:func:`mira.selection.decide.decide` does in memory. Each record is one fixed-size :data:`RECORD`
whose first 32 bytes are its sort key, big-endian: ``k1`` (unit and class), ``k2`` (the negated
ranking key, or the source), ``tie`` (the seeded id hash) and ``row`` (its place in the corpus:
no two records are equal, so the order is total and the same as the in-memory stable sort's).
Compared as bytes those 32 bytes order like the tuple, so a run is sorted with one ``argsort``
and merged with ``searchsorted``.

Files are read with plain reads (``numpy.fromfile`` at an offset), never memory-mapped: pages
of a mapped file count in the process's resident memory as it reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

RECORD = np.dtype([("k1", ">u8"), ("k2", ">u8"), ("tie", ">u8"), ("row", ">u8"), ("tokens", "<i8"),
                   ("key", "<f8"), ("source", "<i4"), ("pad", "<i4")])
_KEY = np.dtype({"names": ["k"], "formats": ["S32"], "offsets": [0], "itemsize": RECORD.itemsize})
_SIGN = np.uint64(1 << 63)
# Below this many records a merge reads each run in blocks of at least this size anyway: a smaller
# block makes the merge a loop of tiny numpy calls (memory then grows with the number of runs).
MIN_BLOCK = 256


def sort_keys(records: np.ndarray) -> np.ndarray:
    """The records' sort keys as one contiguous bytes array (compared as the key tuple)."""
    return np.ascontiguousarray(records.view(_KEY)["k"])


def ascending_bits(values: np.ndarray) -> np.ndarray:
    """uint64 codes that sort as the float64 `values` do (no NaN); -0.0 and 0.0 get one code, as
    they compare equal (the in-memory sort leaves them to the tie-break too)."""
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)  # + 0.0: -0.0 becomes 0.0
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def sorted_records(records: np.ndarray) -> np.ndarray:
    """`records` in key order."""
    # numpy's concatenate hands back native byte order: the key bytes are only big-endian in RECORD.
    records = records.astype(RECORD, copy=False)
    order = np.argsort(sort_keys(records), kind="stable")
    return records.view("V56")[order].view(RECORD)


def write_records(path: Path, records: np.ndarray) -> None:
    with open(path, "ab") as handle:
        records.tofile(handle)


def read_records(path: Path, start: int, count: int) -> np.ndarray:
    """`count` records from record `start` of `path` (fewer at its end)."""
    with open(path, "rb") as handle:
        handle.seek(start * RECORD.itemsize)
        return np.fromfile(handle, dtype=RECORD, count=count)


def iter_records(path: Path, start: int, end: int, block: int) -> Iterator[np.ndarray]:
    """Records [start, end) of `path`, `block` at a time."""
    for first in range(start, end, block):
        records = read_records(path, first, min(block, end - first))
        if len(records) != min(block, end - first):
            raise RuntimeError(f"spill file {path} is shorter than written; rerun select")
        yield records


class _Run:
    """One sorted run being merged: the block of it in memory and where the next one starts."""

    def __init__(self, path: Path, block: int) -> None:
        self.path, self.block = path, block
        self.size = path.stat().st_size // RECORD.itemsize
        self.next = 0
        self.head = np.empty(0, dtype=RECORD)
        self.refill()

    def refill(self) -> None:
        if len(self.head) == 0 and self.next < self.size:
            self.head = read_records(self.path, self.next, self.block)
            self.next += len(self.head)

    def take_until(self, bound: bytes) -> np.ndarray:
        """The records of the block up to `bound` (inclusive), removed from it."""
        cut = int(np.searchsorted(sort_keys(self.head), np.bytes_(bound), side="right"))
        taken, self.head = self.head[:cut], self.head[cut:]
        self.refill()
        return taken


def merge_runs(runs: list[Path], out: Path, buffer_records: int) -> int:
    """Merge the sorted `runs` into `out` (appended), holding about `buffer_records` records at
    once (twice that while a batch is sorted); returns the records written.

    Each round takes, from every run's block, the records up to the smallest of the blocks' last
    keys: no record still on disk can sort before them, and that block empties, so every round
    reads at least one block further."""
    block = max(buffer_records // max(len(runs), 1), MIN_BLOCK)
    live = [run for run in (_Run(path, block) for path in runs) if len(run.head)]
    written = 0
    with open(out, "ab") as handle:
        while live:
            bound = min(bytes(sort_keys(run.head[-1:])[0]) for run in live)
            batch = np.concatenate([run.take_until(bound) for run in live])
            sorted_records(batch).tofile(handle)
            written += len(batch)
            live = [run for run in live if len(run.head)]
    return written
