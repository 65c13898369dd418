"""Per-record token counts of a shard, counted once at ingest and reused by score.

Ingest tokenizes the full rendering of every record (:func:`mira.records.full_text`) to build
its length statistics; score needs the same count for its ``tokens`` column and to decide
whether a record fits the render budget. Tokenizing twice dominated whole-corpus scoring, so
ingest keeps the counts: ``inventory/tokens/<source>/<shard>.npz`` holds one int64 per *input
item* of the shard, in stream order (-1 for an item ingest rejected), with what they were counted
against: the ingest fingerprint (sources, ingest and tokenizer settings, input sizes and
mtimes), the tokenizer's name and the digest of the shard's input bytes. For a long record that
render windows as one token sequence, ingest (which had to tokenize it whole) also keeps the UTF-8
byte spans of the kept windows, valid for the render settings recorded with them.

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

from mira.config import RunConfig
from mira.io import Shard
from mira.records import CHARS_PER_TOKEN_BOUND, Record, render_sections, window_ranges, windows_whole
from mira.rundir import RunDir, atomic_path
from mira.tokens import Tokenizer

log = logging.getLogger(__name__)

NOT_A_RECORD = -1  # the item was rejected at ingest: it has no count


@dataclass(frozen=True)
class ShardTokens:
    counts: np.ndarray  # int64, one per input item of the shard
    input_digest: str
    # item position -> byte spans of its render windows; empty when the render settings differ
    windows: dict[int, list[tuple[int, int]]]


def count_record(record: Record, full: str, tokenizer: Tokenizer, max_tokens: int,
                 windows: int) -> tuple[int, list[tuple[int, int]] | None]:
    """(tokens of `full`, the byte spans :func:`mira.records.render` keeps of it, or None).

    The spans are recorded for a record render windows as one sequence of tokens: it had to be
    tokenized whole to be counted, so its windows cost only a few decodes here, where score would
    tokenize it all again. None for every other record, for a text that is not valid UTF-8 (a
    lone surrogate: the tokenizer encodes a repaired copy) and for a tokenizer without byte offsets.
    """
    offsets = getattr(tokenizer, "byte_offsets", None)
    # A character is at most 4 UTF-8 bytes and a token at least 1: such a text fits the budget.
    fits = 4 * len(full) <= max_tokens
    if offsets is None or fits or len(full) > 2 * max_tokens * CHARS_PER_TOKEN_BOUND or \
            not windows_whole(record, render_sections(record), full, max_tokens):
        return tokenizer.count(full), None
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:
        return tokenizer.count(full), None
    tokens = tokenizer.encode(full)
    if len(tokens) <= max_tokens:
        return len(tokens), None
    ranges = window_ranges(len(tokens), max_tokens, windows)
    bounds = offsets(tokens, [p for r in ranges for p in r])
    return len(tokens), [(bounds[2 * i], bounds[2 * i + 1]) for i in range(len(ranges))]


def render_settings(config: RunConfig) -> dict[str, int]:
    """What the recorded render windows depend on besides the text (not part of ingest's fingerprint)."""
    return {"max_tokens": config.render.max_tokens, "windows": config.render.windows}


def tokens_path(run: RunDir, shard: Shard) -> Path:
    return run.path("inventory", "tokens", shard.source, f"{shard.name}.npz")


def write_shard_tokens(path: Path, counts: list[int], windows: dict[int, list[tuple[int, int]]], *,
                       ingest_fingerprint: str, tokenizer: str, input_digest: str, render: dict[str, int]) -> None:
    meta = json.dumps({"fingerprint": ingest_fingerprint, "tokenizer": tokenizer, "input_digest": input_digest,
                       "render": render}, sort_keys=True)
    positions = sorted(windows)
    spans = np.asarray([[b for span in windows[p] for b in span] for p in positions], dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, counts=np.asarray(counts, dtype=np.int64), meta=np.asarray(meta),
                 window_items=np.asarray(positions, dtype=np.int64),
                 window_bytes=spans.reshape(len(positions), -1) if positions else np.zeros((0, 0), np.int64))


def read_shard_tokens(run: RunDir, shard: Shard, *, ingest_fingerprint: str, tokenizer: str,
                      render: dict[str, int]) -> ShardTokens | None:
    """The shard's counts if they were counted by this ingest with this tokenizer, else None;
    with the render windows when they were cut with the same `render` settings."""
    path = tokens_path(run, shard)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            counts = np.asarray(data["counts"], dtype=np.int64)
            items, spans = data["window_items"].tolist(), data["window_bytes"].tolist()
    except FileNotFoundError:
        return None  # a run ingested by an older version: score counts as before
    except (OSError, ValueError, KeyError) as exc:
        log.warning("token counts of %s/%s unreadable (%s); counting again", shard.source, shard.name, exc)
        return None
    if meta.get("fingerprint") != ingest_fingerprint or meta.get("tokenizer") != tokenizer:
        return None
    windows: dict[int, list[tuple[int, int]]] = {}
    if meta.get("render") == render:
        windows = {p: list(zip(row[::2], row[1::2], strict=True)) for p, row in zip(items, spans, strict=True)}
    return ShardTokens(counts, str(meta.get("input_digest")), windows)
