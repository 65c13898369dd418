"""The corpus as later stages see it: sources, shards, records and seeded samples.

Ingest decides each source's shards and format once and writes them to ``inventory.json``;
every later stage reads records through :func:`iter_shard_records`, so all stages agree on what
a record is, what its id is, and why a bad one is quarantined.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mira.config import RunConfig, SourceConfig
from mira.io import RawItem, Shard, iter_shard
from mira.records import Record, RecordError, make_record
from mira.rundir import RunDir, read_json


@dataclass
class Rejected:
    """A raw item that could not become a record, with the reason."""

    locator: str
    reason: str
    nbytes: int = 0


DUPLICATE_ID = "duplicate id (an earlier record of the source has it)"


def iter_shard_records(config: RunConfig, source: SourceConfig, shard: Shard, fmt: str,
                       digest: Any = None) -> Iterator[Record | Rejected]:
    """Every item of a shard as a Record or a Rejected with its reason; `digest` as in `iter_shard`."""
    duplicates = set(shard.duplicates)
    for raw in iter_shard(shard, config.ingest.max_record_bytes, digest, config.storage):
        item = to_record(raw, source, fmt, config.ingest.min_chars)
        if duplicates and isinstance(item, Record) and item.locator in duplicates:
            item = Rejected(item.locator, DUPLICATE_ID, raw.nbytes)
        yield item


def to_record(raw: RawItem, source: SourceConfig, fmt: str, min_chars: int) -> Record | Rejected:
    try:
        return make_record(raw, source, fmt, min_chars)
    except RecordError as exc:
        return Rejected(raw.locator, str(exc), raw.nbytes)


@dataclass
class SourceInfo:
    name: str
    format: str
    shards: list[Shard]
    records: int
    ok: int
    tokens: int
    fields: list[str] = field(default_factory=list)  # top-level field names seen at ingest


def load_inventory(run: RunDir) -> dict[str, Any]:
    run.require("ingest")
    return read_json(run.inventory_path)


def source_infos(run: RunDir) -> list[SourceInfo]:
    inventory = load_inventory(run)
    return [
        SourceInfo(name, s["format"], [Shard.from_dict(d) for d in s["shards"]], s["records"], s["ok"], s["tokens"],
                   s.get("fields", []))
        for name, s in inventory["sources"].items()
    ]


def iter_source_records(config: RunConfig, info: SourceInfo) -> Iterator[Record]:
    source = config.source(info.name)
    for shard in info.shards:
        for item in iter_shard_records(config, source, shard, info.format):
            if isinstance(item, Record):
                yield item


def stable_rank(seed: int, record_id: str) -> int:
    """A seeded pseudo-random rank of a record id, stable across runs and machines."""
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sample_source(config: RunConfig, info: SourceInfo, n: int, seed: int,
                  exclude: set[str] | None = None) -> list[Record]:
    """A seeded sample of `n` usable records of a source, in one streaming pass (bounded memory).

    The sample is the `n` records with the smallest seeded hash rank, so it does not depend on
    shard order or worker count, and growing `n` keeps the earlier records.
    """
    heap: list[tuple[int, int, Record]] = []
    for i, record in enumerate(iter_source_records(config, info)):
        if exclude and record.id in exclude:
            continue
        rank = -stable_rank(seed, record.id)
        if len(heap) < n:
            heapq.heappush(heap, (rank, i, record))
        elif rank > heap[0][0]:
            heapq.heapreplace(heap, (rank, i, record))
    return [r for _, _, r in sorted(heap, key=lambda t: (-t[0], t[1]))]


def sample_stratified(config: RunConfig, infos: list[SourceInfo], n: int, seed: int,
                      exclude: set[str] | None = None) -> list[Record]:
    """About `n` records spread evenly over the given sources (small sources give what they have)."""
    if not infos:
        return []
    quotas = {info.name: 0 for info in infos}
    available = {info.name: info.ok for info in infos}
    left = n
    while left > 0 and any(quotas[k] < available[k] for k in quotas):
        for name in quotas:
            if left and quotas[name] < available[name]:
                quotas[name] += 1
                left -= 1
    out: list[Record] = []
    for info in infos:
        if quotas[info.name]:
            out.extend(sample_source(config, info, quotas[info.name], seed, exclude))
    return out
