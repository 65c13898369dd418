"""Record ids, unique within a source: duplicates across shards, files that number their records each on their own.

Scores, labels and decisions are keyed by record id, so ids must be unique within a source. Ingest's
workers report an 8-byte hash of every usable record's id; the driver looks for repeated hashes and
reads again only the shards that hold one, comparing the ids themselves (a hash collision never
quarantines a record). A record whose id an earlier record of the source (in shard order) already
has is quarantined as a duplicate, its locator kept on its shard so every later stage does the same.

Per-file row ids are common in real shards (``id`` 0..n in every file of a folder): quarantining
them as duplicates would drop every file but the first. When the same id occurs in two files of a
source, its ids are qualified by their file instead (``b.parquet#0``, :func:`file_qualified_id`) and
the shards say so (``Shard.file_ids``); workers of a source with several files report the hashes of
those qualified ids too, so the choice costs no second pass. A source whose ids are unique keeps them
as they are, and so does a record without an id field (its id names its file already).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import RunConfig, SourceConfig
from mira.corpus.records import full_text
from mira.corpus.sources import DUPLICATE_ID, Quarantined, iter_shard_records
from mira.io.readers import Shard
from mira.text.tokens import get_tokenizer

PER_FILE_READERS = ("jsonl", "parquet")  # one file per shard; a folder of files has path ids


def may_number_per_file(shards: list[Shard]) -> bool:
    """True when a source's ids could repeat across its files: it has several data files."""
    return len({s.files[0] for s in shards if s.reader in PER_FILE_READERS and s.files}) > 1


def files_sharing_ids(shards: list[Shard], hashes: list[np.ndarray]) -> tuple[str, str] | None:
    """Two files of the source holding the same id hash, or None when no id repeats across files."""
    by_file: dict[str, list[np.ndarray]] = {}
    for shard, found in zip(shards, hashes, strict=True):
        if shard.reader in PER_FILE_READERS and shard.files:
            by_file.setdefault(shard.files[0], []).append(found)
    if len(by_file) < 2:
        return None
    names = list(by_file)
    unique = [np.unique(np.concatenate(parts)) for parts in by_file.values()]
    values = np.concatenate(unique)
    owners = np.concatenate([np.full(len(u), i) for i, u in enumerate(unique)])
    order = np.argsort(values, kind="stable")
    values, owners = values[order], owners[order]
    shared = np.flatnonzero(values[1:] == values[:-1])  # unique per file: equal neighbours are two files
    if not len(shared):
        return None
    first = int(shared[0])
    return names[int(owners[first])], names[int(owners[first + 1])]


def use_file_ids(shards: list[Shard], results: list[dict[str, Any]]) -> list[Shard]:
    """The shards with their ids qualified by file, each shard's stats switched to the hashes and
    sample of the qualified ids (which the workers reported beside the plain ones)."""
    for stats in results:
        stats["id_hashes"] = stats.pop("file_id_hashes")
    return [dataclasses.replace(s, file_ids=True) for s in shards]


def id_hash(record_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def quarantine_duplicates(config: RunConfig, source: SourceConfig, shards: list[Shard], fmt: str,
                           results: dict[tuple[str, int], dict[str, Any]], qdir: Path) -> list[Shard]:
    """Quarantine every record whose id an earlier record of the source has; returns the shards
    with their duplicate locators set, after moving those records from `ok` to `quarantined`.

    Workers report 8-byte id hashes; only shards holding a repeated hash are read again, and
    the ids themselves are compared there, so a hash collision never quarantines a record.
    """
    hashes = [results[(source.name, s.index)]["id_hashes"] for s in shards]
    if not hashes:
        return shards
    flat = np.concatenate(hashes)
    values, counts = np.unique(flat, return_counts=True)
    repeated = values[counts > 1]
    if not len(repeated):
        return shards
    wanted = {int(v) for v in repeated}
    tokenizer = get_tokenizer(config.tokenizer.name)
    first_seen: dict[str, str] = {}
    updated = list(shards)
    for i, shard in enumerate(shards):
        if not np.isin(hashes[i], repeated).any():
            continue
        stats = results[(source.name, shard.index)]
        found: list[str] = []
        lines = []
        for item in iter_shard_records(config, source, shard, fmt):
            if isinstance(item, Quarantined) or id_hash(item.id) not in wanted:
                continue
            if item.id not in first_seen:
                first_seen[item.id] = item.locator
                continue
            tokens = tokenizer.count(full_text(item))
            found.append(item.locator)
            stats["ok"] -= 1
            stats["quarantined"] += 1
            stats["tokens"] -= tokens
            stats["buckets"][max(6, math.ceil(math.log2(max(tokens, 1))))] -= 1
            stats["reasons"][DUPLICATE_ID.split(" (")[0]] += 1
            lines.append(json.dumps({"source": source.name, "locator": item.locator, "reason": DUPLICATE_ID,
                                     "id": item.id, "first": first_seen[item.id]}, ensure_ascii=False) + "\n")
        if found:
            with open(qdir / source.name / f"{shard.name}.jsonl", "a", encoding="utf-8") as handle:
                handle.writelines(lines)
            updated[i] = dataclasses.replace(shard, duplicates=tuple(found))
    return updated
