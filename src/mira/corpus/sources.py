"""The corpus as later stages see it: sources, shards, records and seeded samples.

Ingest decides each source's shards and format once and writes them to ``inventory.json``;
every later stage reads records through :func:`iter_shard_records`, so all stages agree on what
a record is, what its id is, and why a bad one is quarantined.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mira.core.config import RunConfig, SourceConfig
from mira.core.hashing import stable_rank
from mira.corpus.records import Record, RecordError, file_qualified_id, make_record
from mira.io.files import read_json
from mira.io.readers import RawItem, Shard, file_label, iter_shard
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Quarantined:
    """A raw item that could not become a record, with the reason: it goes to quarantine/, never silently dropped."""

    locator: str
    reason: str
    nbytes: int = 0


DUPLICATE_ID = "duplicate id (an earlier record of the source has it)"


def iter_shard_records(config: RunConfig, source: SourceConfig, shard: Shard, fmt: str,
                       digest: Any = None) -> Iterator[Record | Quarantined]:
    """Every item of a shard as a Record or a Quarantined with its reason; `digest` as in `iter_shard`."""
    for _, _, item in iter_positioned(config, source, shard, fmt, digest):
        yield item


def iter_positioned(config: RunConfig, source: SourceConfig, shard: Shard, fmt: str,
                    digest: Any = None) -> Iterator[tuple[int, int, Record | Quarantined]]:
    """(position in the shard's stream, byte offset, item) for every item of a shard; the offset
    is where a plain JSONL item starts (what :func:`mira.io.sampled.read_items` seeks to)."""
    duplicates = set(shard.duplicates)
    offset = shard.offset if shard.reader == "jsonl" else 0
    for position, raw in enumerate(iter_shard(shard, config.ingest.max_record_bytes, digest, config.storage)):
        item = _checked(raw, source, fmt, config, shard, duplicates)
        yield position, offset, item
        offset += raw.nbytes


def _checked(raw: RawItem, source: SourceConfig, fmt: str, config: RunConfig, shard: Shard,
             duplicates: set[str]) -> Record | Quarantined:
    item = to_record(raw, source, fmt, config.ingest.min_chars)
    if isinstance(item, Record) and shard.file_ids:
        item.id = file_qualified_id(item, file_label(shard.files[0], shard.base))
    if duplicates and isinstance(item, Record) and item.locator in duplicates:
        item = Quarantined(item.locator, DUPLICATE_ID, raw.nbytes)
    return item


def to_record(raw: RawItem, source: SourceConfig, fmt: str, min_chars: int) -> Record | Quarantined:
    try:
        return make_record(raw, source, fmt, min_chars)
    except RecordError as exc:
        return Quarantined(raw.locator, str(exc), raw.nbytes)


@dataclass
class SourceInfo:
    name: str
    format: str
    shards: list[Shard]
    records: int
    ok: int
    tokens: int
    fields: list[str] = field(default_factory=list)  # top-level field names seen at ingest
    run: RunDir | None = None  # where its sample index is (mira.corpus.sample_index)


def load_inventory(run: RunDir) -> dict[str, Any]:
    run.require("ingest")
    return read_json(run.inventory_path)


def source_infos(run: RunDir) -> list[SourceInfo]:
    inventory = load_inventory(run)
    return [
        SourceInfo(name, s["format"], [Shard.from_dict(d) for d in s["shards"]], s["records"], s["ok"], s["tokens"],
                   s.get("fields", []), run)
        for name, s in inventory["sources"].items()
    ]


def iter_source_records(config: RunConfig, info: SourceInfo) -> Iterator[Record]:
    source = config.source(info.name)
    for shard in info.shards:
        for item in iter_shard_records(config, source, shard, info.format):
            if isinstance(item, Record):
                yield item


def sample_source(config: RunConfig, info: SourceInfo, n: int, seed: int,
                  exclude: set[str] | None = None) -> list[Record]:
    """A seeded sample of `n` usable records of a source.

    The sample is the `n` records with the smallest seeded hash rank, so it does not depend on
    shard order or worker count, and growing `n` keeps the earlier records. They are read from
    ingest's sample index (only the sampled records are parsed) where it covers the sample, else
    found in one streaming pass over the source (bounded memory).
    """
    indexed = _from_index(config, info, n + len(exclude or ()), seed)
    if indexed is not None:
        return [r for r in indexed if not exclude or r.id not in exclude][:n]
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


def source_quotas(available: dict[str, int], n: int) -> dict[str, int]:
    """Records per source in a group sample of `n`: the even spread of :func:`sample_stratified`.

    The spread is water-filling (small sources give what they have, the rest share the remainder),
    which already maximises the smallest source's share: if any split of `n` gives every source
    its minimum, this one does. So the minimum below is a check and a hint, not another sampler.
    """
    quotas = dict.fromkeys(available, 0)
    left = n
    while left > 0 and any(quotas[k] < available[k] for k in quotas):
        for name in quotas:
            if left and quotas[name] < available[name]:
                quotas[name] += 1
                left -= 1
    return quotas


def sample_stratified(config: RunConfig, infos: list[SourceInfo], n: int, seed: int,
                      exclude: set[str] | None = None) -> list[Record]:
    """About `n` records spread evenly over the given sources (small sources give what they have)."""
    if not infos:
        return []
    quotas = source_quotas({info.name: info.ok for info in infos}, n)
    out: list[Record] = []
    for info in infos:
        if quotas[info.name]:
            out.extend(sample_source(config, info, quotas[info.name], seed, exclude))
    return out


def _from_index(config: RunConfig, info: SourceInfo, n: int, seed: int) -> list[Record] | None:
    """The sample read from the sample index, or None when the index does not cover it."""
    from mira.corpus.sample_index import load_index
    from mira.io.sampled import read_items

    index = load_index(info.run, info.name) if info.run is not None and n > 0 else None
    entries = index.take(seed, n) if index is not None else None
    if entries is None:
        return None
    source = config.source(info.name)
    shards = {s.index: s for s in info.shards}
    found: dict[tuple[int, int], Record] = {}
    for shard_index in sorted({e.shard for e in entries}):
        shard = shards[shard_index]
        wanted = {e.position: e.offset for e in entries if e.shard == shard_index}
        for position, raw in read_items(shard, wanted, config.ingest.max_record_bytes, config.storage):
            item = _checked(raw, source, info.format, config, shard, set(shard.duplicates))
            if isinstance(item, Record):
                found[(shard_index, position)] = item
    records = [found.get((e.shard, e.position)) for e in entries]
    # An input edited in place since ingest (same size and mtime) would hand back other records.
    if any(r is None or stable_rank(seed, r.id) != e.rank for r, e in zip(records, entries, strict=True)):
        log.warning("source %s changed since ingest; sampling streams it (`mira ingest --force` indexes it again)",
                    info.name)
        return None
    return [r for r in records if r is not None]


def index_note(infos: list[SourceInfo], seed: int) -> str | None:
    """A one-line note naming the sources whose samples must stream every record (no index for
    this seed: ingested by an older mira, or another seed), None when every source has one."""
    from mira.corpus.sample_index import load_index

    missing = []
    for info in infos:
        index = load_index(info.run, info.name) if info.run is not None and info.ok else None
        if info.ok and (index is None or str(seed) not in index.seeds):
            missing.append(info.name)
    if not missing:
        return None
    return (f"no sample index for {', '.join(missing)} (seed {seed}): sampling reads every record of "
            "them; `mira ingest --force` writes the index (nothing else reruns)")
