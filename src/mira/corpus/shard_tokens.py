"""Per-record token counts of a shard, counted once at ingest and reused by score.

Ingest tokenizes the full rendering of every record (:func:`mira.corpus.records.full_text`) to build
its length statistics; score needs the same count for its ``tokens`` column and to decide
whether a record fits the render budget. Tokenizing twice would dominate whole-corpus scoring, so
ingest keeps the counts: ``inventory/tokens/<source>/<shard>.npz`` holds one int64 per *input
item* of the shard, in stream order (-1 for an item ingest rejected), with what they were counted
against: the ingest fingerprint (sources, ingest and tokenizer settings, input sizes and
mtimes), the tokenizer's name and the digest of the shard's input bytes. For a long record that
render windows as one token sequence, ingest (which had to tokenize it whole) also keeps the UTF-8
byte spans of the kept windows, or for a very long one the :class:`mira.text.windows.Slices` of its cut,
valid for the render settings recorded with them. So score loads no tokenizer at all for a shard
of single-section records (loading cl100k's table costs a worker ~0.3 s).

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

from mira.core.config import RunConfig
from mira.corpus.records import Record, render_sections, windows_whole
from mira.io.files import atomic_path
from mira.io.readers import Shard
from mira.run.rundir import RunDir
from mira.text.tokens import Tokenizer
from mira.text.windows import Slices, slice_windows, sliced, window_ranges

log = logging.getLogger(__name__)

NOT_A_RECORD = -1  # the item was rejected at ingest: it has no count


Windows = list[tuple[int, int]] | Slices  # where a long record's render windows lie in its bytes


@dataclass(frozen=True)
class ShardTokens:
    counts: np.ndarray  # int64, one per input item of the shard
    input_digest: str
    # item position -> where its render windows lie; empty when the render settings differ
    windows: dict[int, Windows]


def count_record(record: Record, full: str, tokenizer: Tokenizer, max_tokens: int,
                 windows: int) -> tuple[int, Windows | None]:
    """(tokens of `full`, where :func:`mira.corpus.records.render` finds its windows, or None).

    Recorded for a long record that render windows as one sequence: it had to be tokenized whole
    to be counted, so its windows cost a few decodes here (or, for a very long one, the slices
    render would tokenize), where score would tokenize it again. None for every other record, for
    a text that is not valid UTF-8 (a lone surrogate: the tokenizer encodes a repaired copy) and
    for a tokenizer without byte offsets.
    """
    offsets = getattr(tokenizer, "byte_offsets", None)
    # A character is at most 4 UTF-8 bytes and a token at least 1: such a text fits the budget.
    fits = 4 * len(full) <= max_tokens
    if offsets is None or fits or not windows_whole(record, render_sections(record)):
        return tokenizer.count(full), None
    if sliced(full, max_tokens):  # slice_windows itself declines a text that is not valid UTF-8
        total = tokenizer.count(full)
        return total, (slice_windows(full, max_tokens, tokenizer, windows, spans=True)[2]
                       if total > max_tokens else None)
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


def write_shard_tokens(path: Path, counts: list[int], windows: dict[int, Windows], *,
                       ingest_fingerprint: str, tokenizer: str, input_digest: str, render: dict[str, int]) -> None:
    meta = json.dumps({"fingerprint": ingest_fingerprint, "tokenizer": tokenizer, "input_digest": input_digest,
                       "render": render}, sort_keys=True)
    exact = {p: w for p, w in sorted(windows.items()) if not isinstance(w, Slices)}
    cut = {p: w for p, w in sorted(windows.items()) if isinstance(w, Slices)}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, counts=np.asarray(counts, dtype=np.int64), meta=np.asarray(meta),
                 window_items=np.asarray(list(exact), dtype=np.int64),
                 window_bytes=_rows([[b for span in w for b in span] for w in exact.values()]),
                 slice_items=np.asarray(list(cut), dtype=np.int64),
                 slice_bytes=_rows([[b for span in w.spans for b in span] for w in cut.values()]),
                 slice_gaps=_rows([list(w.gaps) for w in cut.values()]))


def _rows(rows: list[list[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64) if rows else np.zeros((0, 0), np.int64)


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
            # Files written before slices were recorded have none: those records are tokenized.
            cut = data["slice_items"].tolist() if "slice_items" in data.files else []
            cut_spans = data["slice_bytes"].tolist() if cut else []
            cut_gaps = data["slice_gaps"].tolist() if cut else []
    except FileNotFoundError:
        return None  # a run ingested by an older version: score counts the tokens itself
    except (OSError, ValueError, KeyError) as exc:
        log.warning("token counts of %s/%s unreadable (%s); counting again", shard.source, shard.name, exc)
        return None
    if meta.get("fingerprint") != ingest_fingerprint or meta.get("tokenizer") != tokenizer:
        return None
    windows: dict[int, Windows] = {}
    if meta.get("render") == render:
        windows = {p: _pairs(row) for p, row in zip(items, spans, strict=True)}
        windows.update({p: Slices(tuple(_pairs(row)), tuple(gaps))
                        for p, row, gaps in zip(cut, cut_spans, cut_gaps, strict=True)})
    return ShardTokens(counts, str(meta.get("input_digest")), windows)


def _pairs(row: list[int]) -> list[tuple[int, int]]:
    return list(zip(row[::2], row[1::2], strict=True))
