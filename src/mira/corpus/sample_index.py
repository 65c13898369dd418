"""The sample index: where the records that later stages sample are, found once at ingest.

group, discover and annotate each take a seeded sample of a source: the `n` usable records with
the smallest stable rank (:func:`mira.corpus.sources.stable_rank` of the seed and the record id). Finding
them by streaming every record of the source would make each of those stages parse the whole corpus.
Ingest reads every record anyway, so it keeps, per source and per configured seed, the records
with the smallest ranks and where they are: the shard, the position in the shard's stream and
(plain JSONL) the byte offset. ``inventory/sample/<source>.json``::

    {"fingerprint": <ingest's>, "usable": 500,
     "seeds": {"0": {"complete": true, "entries": [[rank, shard, position, offset, locator], ...]}}}

Entries are sorted by rank, duplicates (quarantined ids) are left out, and the list is exact: it
holds the smallest ranks of the source's usable records (``complete``: all of them). A sample of
`n` is its first `n` entries, read with :func:`mira.io.sampled.read_items`: the same records the streaming
sampler chooses. The index keeps at least ``INDEX_FLOOR`` records per source (or the largest
sample any stage asks for, if larger), so raising a sample size later is still served by it; a
larger sample, another seed, or a run ingested by an older mira (no index) falls back to
streaming, with a note naming ``mira ingest --force``, which writes the index and changes nothing
else (the ingest fingerprint stays the same).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mira.core.config import RunConfig
from mira.core.hashing import stable_rank
from mira.io.files import atomic_write_json, read_json
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)

# Records kept per source and seed at least. 1,024 entries of a few dozen bytes each: a small file,
# and any sample size up to it (annotation.records_per_group is 40 by default) needs no new ingest.
INDEX_FLOOR = 1_024


def index_seeds(config: RunConfig) -> list[int]:
    """The seeds the sampling stages draw with (one list of ranks per seed)."""
    return sorted({config.grouping.seed, config.discovery.seed, config.annotation.seed})


def index_size(config: RunConfig) -> int:
    """Records per source and seed the index keeps: the largest sample a stage asks of one source
    (a group's whole sample, in the worst case, comes from one source), at least INDEX_FLOOR."""
    return max(INDEX_FLOOR, config.grouping.sample_per_source, config.discovery.records_per_group,
               config.annotation.records_per_group)


def index_path(run: RunDir, source: str) -> Path:
    return run.path("inventory", "sample", f"{source}.json")


class ShardCandidates:
    """The `size` smallest-ranked usable records of one shard, per seed (an ingest worker's share)."""

    def __init__(self, seeds: list[int], size: int) -> None:
        self.size = size
        self.heaps: dict[int, list[tuple[int, int, int, str]]] = {seed: [] for seed in seeds}
        self.usable = 0

    def add(self, record_id: str, position: int, offset: int, locator: str) -> None:
        self.usable += 1
        for seed, heap in self.heaps.items():
            item = (-stable_rank(seed, record_id), position, offset, locator)
            if len(heap) < self.size:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (the Ray engine returns worker results as JSON)."""
        return {"usable": self.usable, "truncated": self.usable > self.size,
                "seeds": {str(seed): sorted([-r, p, o, loc] for r, p, o, loc in heap)
                          for seed, heap in self.heaps.items()}}


def build_index(shards: list[Any], candidates: dict[int, dict[str, Any]], size: int) -> dict[str, Any]:
    """Merge the shards' candidates of one source (shard index -> `ShardCandidates.to_json()`)
    into its index, leaving out the duplicates ingest found (``Shard.duplicates``)."""
    merger = IndexMerger(size)
    for index, found in candidates.items():
        merger.add(index, found)
    return merger.index(shards)


def _entry_order(entry: list[Any]) -> tuple[int, int, int]:
    return entry[0], entry[1], entry[2]  # rank, then shard and position: one order whatever the arrival


class IndexMerger:
    """:func:`build_index` as the shards' candidates arrive, holding per seed only the entries that
    can still be in the index: holding every shard's candidates (1,024 per shard, ~250 bytes each)
    until the end would cost the driver ~100 bytes per record of the corpus.

    Kept after each prune: the entries up to the seed's cutoff whose rank is among the `size`
    smallest *distinct* ranks. Duplicates (known only once every shard is in) share their first
    occurrence's rank (the rank is a hash of the id), so dropping them at the end still leaves
    `size` entries wherever the index had them.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.usable = 0
        self.seeds: dict[str, dict[str, Any]] = {}  # seed -> {"entries": [...], "cutoff": rank | None}

    def add(self, shard_index: int, found: dict[str, Any]) -> None:
        self.usable += found["usable"]
        for seed, items in found["seeds"].items():
            state = self.seeds.setdefault(seed, {"entries": [], "cutoff": None})
            state["entries"] += [[rank, shard_index, pos, off, loc] for rank, pos, off, loc in items]
            if found["truncated"] and items:
                # Beyond this shard's largest kept rank, records of the shard are missing.
                top = items[-1][0]
                state["cutoff"] = top if state["cutoff"] is None else min(state["cutoff"], top)
            if state["cutoff"] is not None and len(state["entries"]) > 2 * self.size:
                state["entries"] = self._pruned(state["entries"], state["cutoff"])

    def _pruned(self, entries: list[list[Any]], cutoff: int) -> list[list[Any]]:
        entries = sorted((e for e in entries if e[0] <= cutoff), key=_entry_order)
        distinct, last = 0, None
        for end, entry in enumerate(entries):
            if entry[0] != last:
                distinct, last = distinct + 1, entry[0]
                if distinct > self.size:
                    return entries[:end]
        return entries

    def index(self, shards: list[Any]) -> dict[str, Any]:
        """The source's index (as :func:`build_index` returns it) once every shard has been added."""
        dropped = {shard.index: set(shard.duplicates) for shard in shards if shard.duplicates}
        seeds: dict[str, Any] = {}
        for seed in sorted(self.seeds, key=int):
            state = self.seeds[seed]
            entries = [e for e in state["entries"] if e[4] not in dropped.get(e[1], ())]
            entries.sort(key=_entry_order)
            cutoff = state["cutoff"]
            if cutoff is not None:
                entries = [e for e in entries if e[0] <= cutoff][:self.size]
            seeds[seed] = {"complete": cutoff is None, "entries": entries}
        return {"usable": self.usable - sum(len(s.duplicates) for s in shards), "seeds": seeds}


def write_index(run: RunDir, source: str, index: dict[str, Any], ingest_fingerprint: str) -> None:
    atomic_write_json(index_path(run, source), {"fingerprint": ingest_fingerprint, **index})


@dataclass(frozen=True)
class Entry:
    rank: int
    shard: int
    position: int
    offset: int
    locator: str


@dataclass
class SampleIndex:
    source: str
    seeds: dict[str, Any]

    def take(self, seed: int, n: int) -> list[Entry] | None:
        """The first `n` entries for `seed` (fewer when the source has fewer records), or None
        when the index cannot say which records a sample of `n` holds."""
        ranks = self.seeds.get(str(seed))
        if ranks is None:
            return None
        entries = ranks["entries"]
        if n > len(entries) and not ranks["complete"]:
            return None
        return [Entry(*e) for e in entries[:n]]


def load_index(run: RunDir, source: str) -> SampleIndex | None:
    """The source's index when it was written by the ingest that is done now, else None."""
    path = index_path(run, source)
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("sample index of %s unreadable (%s); sampling streams the source", source, exc)
        return None
    if data.get("fingerprint") != run.stage_fingerprint("ingest"):
        return None
    return SampleIndex(source, data.get("seeds", {}))
