"""Per-record token counts of a shard, counted once at ingest and reused by score.

Ingest tokenizes the full rendering of every record (:func:`mira.records.full_text`) to build
its length statistics; score needs the same count for its ``tokens`` column and to decide
whether a record fits the render budget. Tokenizing twice dominated whole-corpus scoring, so
ingest keeps the counts: ``inventory/tokens/<source>/<shard>.npz`` holds one int64 per *input
item* of the shard, in stream order (-1 for an item ingest rejected), with what they were counted
against: the ingest fingerprint (sources, ingest and tokenizer settings, input sizes and
mtimes), the tokenizer's name and the digest of the shard's input bytes.

A reader trusts the counts only when the fingerprint and tokenizer match; the input digest is
compared by score after it has read the shard (the digest is only known at the end of the
stream), and a shard whose bytes changed since ingest is scored again with counting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mira.io import Shard
from mira.rundir import RunDir, atomic_path

log = logging.getLogger(__name__)

NOT_A_RECORD = -1  # the item was rejected at ingest: it has no count


@dataclass(frozen=True)
class ShardTokens:
    counts: np.ndarray  # int64, one per input item of the shard
    input_digest: str


def tokens_path(run: RunDir, shard: Shard) -> Path:
    return run.path("inventory", "tokens", shard.source, f"{shard.name}.npz")


def write_shard_tokens(path: Path, counts: list[int], *, ingest_fingerprint: str, tokenizer: str,
                       input_digest: str) -> None:
    meta = json.dumps({"fingerprint": ingest_fingerprint, "tokenizer": tokenizer, "input_digest": input_digest},
                      sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, counts=np.asarray(counts, dtype=np.int64), meta=np.asarray(meta))


def read_shard_tokens(run: RunDir, shard: Shard, *, ingest_fingerprint: str, tokenizer: str) -> ShardTokens | None:
    """The shard's counts if they were counted by this ingest with this tokenizer, else None."""
    path = tokens_path(run, shard)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            counts = np.asarray(data["counts"], dtype=np.int64)
    except FileNotFoundError:
        return None  # a run ingested by an older version: score counts as before
    except (OSError, ValueError, KeyError) as exc:
        log.warning("token counts of %s/%s unreadable (%s); counting again", shard.source, shard.name, exc)
        return None
    if meta.get("fingerprint") != ingest_fingerprint or meta.get("tokenizer") != tokenizer:
        return None
    return ShardTokens(counts, str(meta.get("input_digest")))
