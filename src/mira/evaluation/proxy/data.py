"""Byte streams for proxy training and evaluation: a seeded draw of a byte budget, fixed eval windows.

The proxy model reads raw UTF-8 bytes. Documents are joined with one NUL byte (:data:`DOC_END`), the
model's end-of-document mark, in training and evaluation alike.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

DOC_END = b"\x00"


@dataclass(frozen=True)
class TrainDraw:
    """The training stream drawn from a selection, and how it relates to the selection."""

    data: bytes
    # Bytes of the whole selection (documents plus one DOC_END each) and its document count.
    selection_bytes: int
    selection_docs: int
    # Pieces that made up `data` (with repeats when the selection was cycled).
    pieces_used: int

    @property
    def epochs(self) -> float:
        """Passes over the selection: < 1 when the budget is a sample, > 1 when it was cycled."""
        return len(self.data) / self.selection_bytes


def draw_training_bytes(texts: Iterable[str], n_bytes: int, seed: int, piece_bytes: int = 4_096) -> TrainDraw:
    """Exactly ``n_bytes`` bytes of ``texts`` in a seeded random order of pieces.

    Documents are cut into pieces of at most ``piece_bytes`` (the unit of sampling, so that one
    huge file cannot decide a whole draw and the seed-to-seed spread stays that of the selection's
    content). One pass, memory bounded by the budget: every piece gets a seeded random key (by its
    position in the stream, so the draw is a function of the texts and the seed alone) and only
    the smallest-key pieces that cover the budget are kept. That equals shuffling the whole
    selection and taking its prefix, without holding the selection. A selection smaller than the
    budget is cycled, reshuffled each pass, so every method trains on the same number of bytes.
    """
    if n_bytes < 1 or piece_bytes < 1:
        raise ValueError("n_bytes and piece_bytes must be positive")
    rng = np.random.default_rng(seed)
    # Max-heap on key (negated) of the pieces kept so far.
    heap: list[tuple[float, int, bytes]] = []
    kept_bytes = 0
    total_bytes = 0
    total_docs = 0
    position = 0
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"training text {index} is {type(text).__name__}, not str")
        doc = text.encode("utf-8", errors="replace") + DOC_END
        total_bytes += len(doc)
        total_docs += 1
        for start in range(0, len(doc), piece_bytes):
            piece = doc[start:start + piece_bytes]
            heapq.heappush(heap, (-float(rng.random()), position, piece))
            position += 1
            kept_bytes += len(piece)
            # Drop the largest key while the rest still covers the budget.
            while kept_bytes - len(heap[0][2]) >= n_bytes:
                kept_bytes -= len(heapq.heappop(heap)[2])
    if total_docs == 0 or total_bytes == total_docs:
        from mira.core.config import ConfigError

        raise ConfigError("proxy training: the selection has no text to train on")
    ordered = [piece for _, _, piece in sorted(heap, key=lambda item: (-item[0], item[1]))]
    parts = list(ordered)
    size = kept_bytes
    while size < n_bytes:
        # Cycling: another pass over the (whole) selection in a fresh seeded order.
        for index in rng.permutation(len(ordered)):
            parts.append(ordered[index])
            size += len(ordered[index])
            if size >= n_bytes:
                break
    return TrainDraw(b"".join(parts)[:n_bytes], total_bytes, total_docs, len(parts))


def eval_bytes(texts: Sequence[str], n_bytes: int) -> bytes:
    """The first ``n_bytes + 1`` bytes of an eval set (``n_bytes`` predicted bytes, plus the first
    byte, which is only context): the same bytes for every method and seed."""
    parts: list[bytes] = []
    size = 0
    for text in texts:
        if size > n_bytes:
            break
        if not isinstance(text, str):
            raise TypeError(f"eval text is {type(text).__name__}, not str")
        doc = text.encode("utf-8", errors="replace") + DOC_END
        parts.append(doc)
        size += len(doc)
    return b"".join(parts)[: n_bytes + 1]


def windows(data: bytes, context: int) -> np.ndarray:
    """Non-overlapping windows of ``context + 1`` bytes (input plus shifted target) sharing one
    boundary byte; the last window is dropped when it is shorter (see :func:`tail`)."""
    array = np.frombuffer(data, dtype=np.uint8)
    count = (len(array) - 1) // context
    if count == 0:
        return np.empty((0, context + 1), dtype=np.uint8)
    index = np.arange(count)[:, None] * context + np.arange(context + 1)[None, :]
    return array[index]


def tail(data: bytes, context: int) -> np.ndarray:
    """The bytes after the last full window (with its boundary byte), or an empty array."""
    count = (len(data) - 1) // context
    rest = data[count * context:]
    return np.frombuffer(rest, dtype=np.uint8).copy() if len(rest) > 1 else np.empty(0, dtype=np.uint8)
