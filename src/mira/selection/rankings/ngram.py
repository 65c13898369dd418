"""A hashed n-gram language model with interpolated Kneser-Ney smoothing, in numpy.

What CCNet did with KenLM at web scale, small enough to train on a reference sample in seconds
and to score a whole corpus on CPU: every order k = 1..n keeps three tables of 2**bits uint32
buckets indexed by a 64-bit rolling hash — the k-gram counts, the context totals and the number
of distinct continuations of each context. The highest order counts occurrences; lower orders
count distinct left extensions (Kneser-Ney continuation counts). A token's probability is

    p_k(w | ctx) = (max(c_k(ctx w) - D, 0) + D * types_k(ctx) * p_{k-1}(w | ctx')) / c_k(ctx)

(p_{k-1} alone where the context was never seen), starting from a uniform p_0. Hash collisions
make it approximate, never wrong by more than a shared bucket. Tokens are UTF-8 bytes (``bytes``)
or words and single punctuation marks (``words``, hashed ids). Texts are scored in batches: one
concatenated array per batch, so the cost is a few vectorised passes per order, not per record.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DISCOUNT = 0.75  # the usual single Kneser-Ney discount
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of h * MIX are the bucket
_PRIME = np.uint64(0x100000001B3)
_WORDS = re.compile(r"\w+|[^\w\s]")
# Beginning-of-text marker, outside every token id range (bytes 0..255, crc32 words 0..2**32-1).
BOS = 2 ** 32 + 7


def token_ids(text: str, level: str) -> np.ndarray:
    """The text as uint64 token ids."""
    if level == "bytes":
        return np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8).astype(np.uint64)
    words = _WORDS.findall(text)
    return np.fromiter((zlib.crc32(w.encode("utf-8", "replace")) for w in words), dtype=np.uint64, count=len(words))


def _sequence(docs: Sequence[np.ndarray], order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, mask of real tokens, start of each doc's real tokens among the real ones): each
    doc is preceded by order-1 BOS marks, so no n-gram spans two docs."""
    pad = order - 1
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    parts: list[np.ndarray] = []
    for doc in docs:
        parts.append(np.full(pad, BOS, dtype=np.uint64))
        parts.append(doc)
    seq = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    real = np.ones(len(seq), dtype=bool)
    starts = np.concatenate([[0], np.cumsum(lengths + pad)[:-1]]) if len(docs) else np.zeros(0, dtype=np.int64)
    for start in starts:
        real[start:start + pad] = False
    first_real = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(docs) else np.zeros(0, dtype=np.int64)
    return seq, real, first_real


def _next_hash(previous: np.ndarray | None, seq: np.ndarray) -> np.ndarray:
    """Hashes of the k-grams ending at each position, from those of the (k-1)-grams."""
    with np.errstate(over="ignore"):
        if previous is None:
            return (seq + np.uint64(1)) * _MIX
        shifted = np.empty_like(previous)
        shifted[:1] = 0
        shifted[1:] = previous[:-1]
        return shifted * _PRIME + (seq + np.uint64(1)) * _MIX


class NgramModel:
    """Train with :meth:`fit`, score with :meth:`bits_per_token`; save/load as one .npz."""

    def __init__(self, level: str, order: int, bits: int, vocab: int = 256) -> None:
        self.level, self.order, self.bits, self.vocab = level, order, bits, vocab
        size = 2 ** bits
        self.counts = np.zeros((order, size), dtype=np.uint32)
        # Per context bucket: [total count, distinct continuations], side by side so one cache
        # line serves both lookups (scoring is bound by random memory reads).
        self.contexts = np.zeros((order, size, 2), dtype=np.uint32)

    def _bucket(self, hashes: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            # Below 2**bits, so viewing as int64 (a valid index type) is exact and copies nothing.
            return ((hashes * _MIX) >> np.uint64(64 - self.bits)).view(np.int64)

    def _hashes(self, seq: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for _ in range(self.order):
            out.append(_next_hash(out[-1] if out else None, seq))
        return out

    def fit(self, docs: Sequence[np.ndarray]) -> NgramModel:
        """Count every order over `docs` (token id arrays); one call, the whole reference."""
        seq, real, _ = _sequence(docs, self.order)
        positions = np.flatnonzero(real)
        hashes = self._hashes(seq)
        size = 2 ** self.bits
        if self.level == "words":
            self.vocab = max(256, len(np.unique(seq[positions])) + 1)
        for k in range(1, self.order + 1):
            if k == self.order:
                at = positions  # the highest order counts occurrences
            else:  # lower orders count distinct left extensions: one per distinct (k+1)-gram
                _, first = np.unique(hashes[k][positions], return_index=True)
                at = positions[first]
            grams = hashes[k - 1][at]
            contexts = hashes[k - 2][at - 1] if k > 1 else np.zeros(len(at), dtype=np.uint64)
            _, distinct = np.unique(grams, return_index=True)
            self.counts[k - 1] = _add(self.counts[k - 1], np.bincount(self._bucket(grams), minlength=size))
            self.contexts[k - 1, :, 0] = _add(self.contexts[k - 1, :, 0],
                                              np.bincount(self._bucket(contexts), minlength=size))
            self.contexts[k - 1, :, 1] = _add(self.contexts[k - 1, :, 1],
                                              np.bincount(self._bucket(contexts[distinct]), minlength=size))
        return self

    def bits_per_token(self, docs: Sequence[np.ndarray]) -> np.ndarray:
        """Mean -log2 p per token of each doc (NaN for an empty doc)."""
        seq, real, first_real = _sequence(docs, self.order)
        positions = np.flatnonzero(real)
        # float32 throughout: half the memory traffic, and 7 significant digits are plenty for a loss.
        prob = np.full(len(positions), 1.0 / self.vocab, dtype=np.float32)
        discount = np.float32(DISCOUNT)
        previous: np.ndarray | None = None  # hashes of the (k-1)-grams ending at every position
        for k in range(1, self.order + 1):
            current = _next_hash(previous, seq)
            if previous is None:
                total, types = (np.full(len(positions), v, dtype=np.float32) for v in self.contexts[0, 0])
            else:
                pair = self.contexts[k - 1][self._bucket(previous[positions - 1])]
                total, types = pair[:, 0].astype(np.float32), pair[:, 1].astype(np.float32)
            count = self.counts[k - 1][self._bucket(current[positions])].astype(np.float32)
            mixed = (np.maximum(count - discount, 0) + discount * types * prob) / np.maximum(total, 1)
            prob = np.where(total > 0, mixed, prob)
            previous = current
        # A shared bucket can push an estimate past 1; clip so a loss is never negative.
        loss = -np.log2(np.clip(prob, 1e-12, 1.0)).astype(np.float64)  # float64 sums over long docs
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        sums = np.add.reduceat(loss, first_real[lengths > 0]) if len(loss) else np.zeros(0)
        out = np.full(len(docs), np.nan)
        out[lengths > 0] = sums / lengths[lengths > 0]
        return out

    def save(self, path: Path) -> None:
        from mira.io.files import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            # Compressed: most buckets of a small reference are empty (120 MB of tables -> a few MB).
            np.savez_compressed(handle, counts=self.counts, contexts=self.contexts,
                     meta=np.array([self.order, self.bits, self.vocab]), level=np.array(self.level))

    @classmethod
    def load(cls, path: Path) -> NgramModel:
        with np.load(path, allow_pickle=False) as data:
            order, bits, vocab = (int(v) for v in data["meta"])
            model = cls(str(data["level"]), order, bits, vocab)
            model.counts, model.contexts = data["counts"], data["contexts"]
        return model


def _add(table: np.ndarray, increments: np.ndarray) -> np.ndarray:
    # Saturate instead of wrapping: a huge reference must not turn a frequent bucket into a rare one.
    return np.minimum(table.astype(np.uint64) + increments.astype(np.uint64), np.iinfo(np.uint32).max).astype(np.uint32)
