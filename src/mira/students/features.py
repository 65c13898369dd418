"""Student features: a fast static embedding of the rendering plus cheap structural signals.

Whole-corpus scoring featurizes every record, so this module is written for throughput.
``model2vec``'s own ``encode`` spends nearly all its time in the WordPiece tokenizer (~860 docs/s on
2 KB texts). :class:`StaticEmbedder` computes the *same* mean-of-token-vectors embedding with
the tokenizer taken off the hot path:

- a BERT tokenizer splits at whitespace and at every ASCII punctuation character, so the text can be
  cut at those points first and each chunk tokenized on its own with an identical result;
- chunks are found and hashed for a whole batch at once with numpy (64-bit polynomial hashes over
  the concatenated UTF-8 bytes), and looked up in a sorted table of chunks seen before;
- only chunks never seen before go through the real tokenizer (``encode_batch``), once per process;
- the document vector is a sparse (documents x vocabulary) count matrix times the embedding table.

Structural features (length, code-vs-prose share, comment lines, tool-call validity, repetition,
format) come from the same byte arrays, or from one regex pass per record where that is simpler.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence

import numpy as np

from mira.core.config import FORMATS, EmbedConfig

# v2: blank/indented line shares no longer read the first byte of the next document in the batch.
# v3: compression ratio; agent calls to undeclared functions and answers given after a failed call.
FEATURE_VERSION = "features-v3"
# Byte classes: 0 separator (whitespace, controls), 1 word byte (ASCII alnum or any non-ASCII byte),
# 2 ASCII punctuation (each one its own chunk, as in BERT's pre-tokenizer).
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[[c for c in range(128) if chr(c).isalnum()]] = 1
_CLASS[128:] = 1
_CLASS[[c for c in range(33, 127) if not chr(c).isalnum()]] = 2
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32  # ASCII A-Z -> a-z; the real tokenizer lowercases the rest on a cache miss
_HASH_BASE = np.uint64(1_099_511_628_211)  # odd, so it has an inverse modulo 2**64
_HASH_BASE_INV = np.uint64(pow(1_099_511_628_211, -1, 2**64))

_COMMENT_RE = re.compile(r"^[ \t]*(?:#|//|/\*|\*|--|;|%|\"\"\"|''')", re.MULTILINE)
_CALL_RE = re.compile(r"^-> tool call: ([^\s(]+)\((.*)\)\s*$", re.MULTILINE)
_ROLE_RE = re.compile(r"^\[(?:user|assistant|system|tool|function|ipython)\b", re.MULTILINE)
_TOOL_ERROR_RE = re.compile(r"\b(?:error|exception|traceback|failed|invalid)\b", re.IGNORECASE)
# The agent renderer's header of declared tools (names separated by commas, until a blank line).
_TOOLS_HEADER = "### Tools available\n"

STRUCTURAL_NAMES = [
    "log_chars", "log_lines", "log_mean_line", "blank_line_share", "indented_line_share",
    "alpha_share", "digit_share", "upper_share", "space_share", "punct_share", "bracket_share", "non_ascii_share",
    "comment_line_share", "unique_line_share", "log_chunks", "elided",
    "log_tool_calls", "tool_args_valid_share", "tool_calls_repeated_share", "tool_error_share", "log_turns",
    "has_reasoning", "compression_ratio", "tool_calls_undeclared_share", "answer_after_tool_error",
] + [f"format_{f}" for f in FORMATS]


def clip_text(text: str, max_chars: int) -> str:
    """At most `max_chars` characters: the start (3/4) and the end (1/4) of a longer text.

    The rendering is already windowed by the renderer; this bound keeps featurization cost flat in
    record length, while the end of a long record (where an agent trace fails) stays visible.
    """
    if len(text) <= max_chars:
        return text
    head = (max_chars * 3) // 4
    return text[:head] + "\n" + text[len(text) - (max_chars - head):]


# Mutually exclusive byte codes for the per-document character statistics (one bincount).
_CODE_NAMES = ("lower", "upper", "digit", "newline", "blank", "bracket", "punct", "non_ascii", "control")
_CODE = np.full(256, 8, dtype=np.uint8)
_CODE[97:123] = 0
_CODE[65:91] = 1
_CODE[48:58] = 2
_CODE[10] = 3
_CODE[[9, 11, 12, 13, 32]] = 4
_CODE[[c for c in range(33, 127) if _CLASS[c] == 2]] = 6
_CODE[[ord(c) for c in "(){}[];=<>"]] = 5
_CODE[128:] = 7
_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """base**i and base**-i modulo 2**64 for i < n (uint64 arithmetic wraps: that is the modulus)."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 1 << 21)
        one = np.ones(1, dtype=np.uint64)
        _POWERS[:] = [np.concatenate((one, np.cumprod(np.full(size - 1, base, dtype=np.uint64), dtype=np.uint64)))
                      for base in (_HASH_BASE, _HASH_BASE_INV)]
    return _POWERS[0][:n], _POWERS[1][:n]


class _Batch:
    """The concatenated bytes of a batch of texts and their chunk boundaries."""

    def __init__(self, texts: Sequence[str]) -> None:
        encoded = [t.encode("utf-8", "replace") for t in texts]
        # One separator byte after every text, so no chunk crosses a document boundary.
        self.data = np.frombuffer(b"\n".join(encoded) + b"\n", dtype=np.uint8)
        lengths = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
        self.doc_start = np.concatenate(([0], np.cumsum(lengths)))  # n + 1 bounds, separators included
        self.n_bytes = lengths - 1
        cls = _CLASS[self.data]
        word = cls == 1
        punct = cls == 2
        boundary = np.empty_like(word)
        boundary[0] = True
        np.not_equal(word[1:], word[:-1], out=boundary[1:])
        # A chunk starts at every punctuation byte and where a word run begins, and ends likewise.
        self.starts = np.flatnonzero(punct | (word & boundary))
        ends_at = np.empty_like(word)
        ends_at[-1] = True
        np.not_equal(word[:-1], word[1:], out=ends_at[:-1])
        self.ends = np.flatnonzero(punct | (word & ends_at)) + 1
        self.doc_of_chunk = np.searchsorted(self.doc_start, self.starts, side="right") - 1

    def byte_codes(self) -> np.ndarray:
        """(n, len(_CODE_NAMES)) byte counts per document (the separators are not counted)."""
        # One small bincount per document: cheaper than any whole-batch trick (cache-resident slices).
        codes = _CODE[self.data]
        k, bounds = len(_CODE_NAMES), self.doc_start
        return np.array([np.bincount(codes[bounds[i]:bounds[i + 1] - 1], minlength=k)
                         for i in range(len(self.n_bytes))], dtype=np.int64).reshape(-1, k)

    def line_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """(document, first byte) of every line after the first: what follows each newline.

        Each document's separator newline is included (it counts the document's last line), with 0
        as its byte: what follows it is the next document of the batch, and a feature that read it
        would depend on the batch a record was scored in.
        """
        newline = np.flatnonzero(self.data == 10)
        after = self.data[np.minimum(newline + 1, len(self.data) - 1)]
        after[np.searchsorted(newline, self.doc_start[1:] - 1)] = 0  # every separator is a newline
        return np.searchsorted(self.doc_start, newline, side="right") - 1, after

    def hashes(self) -> np.ndarray:
        powers, inv_powers = _powers(len(self.data))
        lowered = _LOWER[self.data].astype(np.uint64)
        lowered += np.uint64(1)
        lowered *= powers
        prefix = np.empty(len(lowered) + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(lowered, dtype=np.uint64, out=prefix[1:])
        with np.errstate(over="ignore"):
            raw = (prefix[self.ends] - prefix[self.starts]) * inv_powers[self.starts]
            length = (self.ends - self.starts).astype(np.uint64)
            return raw ^ (length * np.uint64(0x9E3779B97F4A7C15))


class StaticEmbedder:
    """model2vec mean-of-token embeddings, computed without tokenizing every chunk every time."""

    def __init__(self, config: EmbedConfig, max_cache: int = 2_000_000) -> None:
        from mira.text.embed import static_table

        model = static_table(config)
        self.table = model.embedding
        self.dim = self.table.shape[1]
        self.tokenizer = model.tokenizer
        self.tokenizer.no_truncation()  # chunks are short; the model's 512-token cap would only hide bugs
        self.unk = model.unk_token_id
        self.max_cache = max_cache
        self._reset()

    def _reset(self) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)       # sorted chunk hashes
        self._offset = np.zeros(0, dtype=np.int64)      # where each chunk's token ids start in _flat
        self._count = np.zeros(0, dtype=np.int64)       # how many token ids it has
        self._flat = np.zeros(0, dtype=np.int32)

    def _learn(self, batch: _Batch, hashes: np.ndarray, first: np.ndarray) -> None:
        chunks = [bytes(batch.data[batch.starts[i]:batch.ends[i]]).decode("utf-8", "replace") for i in first]
        encodings = self.tokenizer.encode_batch(chunks, add_special_tokens=False)
        ids = [[t for t in e.ids if t != self.unk] for e in encodings]
        counts = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(counts.sum()))
        if len(self._keys) + len(hashes) > self.max_cache:
            self._reset()  # bounded memory on endless identifier streams; relearning is cheap
        offsets = len(self._flat) + np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        keys = np.concatenate((self._keys, hashes))
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._offset = np.concatenate((self._offset, offsets))[order]
        self._count = np.concatenate((self._count, counts))[order]
        self._flat = np.concatenate((self._flat, flat))

    def _lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self._keys, hashes)
        pos = np.minimum(pos, max(len(self._keys) - 1, 0))
        return pos, (self._keys[pos] == hashes) if len(self._keys) else np.zeros(len(hashes), dtype=bool)

    def embed_batch(self, batch: _Batch) -> np.ndarray:
        """Unit-normalised vectors (n, dim)."""
        from scipy.sparse import csr_matrix

        n_docs = len(batch.n_bytes)
        hashes = batch.hashes()
        unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        pos, found = self._lookup(unique)
        if not found.all():
            self._learn(batch, unique[~found], first[~found])
            pos, found = self._lookup(unique)
        offset, count = self._offset[pos][inverse], self._count[pos][inverse]
        total = int(count.sum())
        # Expand every chunk occurrence into its token ids (chunks are in document order).
        run_start = np.repeat(np.cumsum(count) - count, count)
        token_ids = self._flat[np.repeat(offset, count) + np.arange(total) - run_start]
        tokens_per_doc = np.bincount(batch.doc_of_chunk, weights=count, minlength=n_docs).astype(np.int64)
        indptr = np.concatenate(([0], np.cumsum(tokens_per_doc)))
        counts = csr_matrix((np.ones(total, dtype=np.float32), token_ids, indptr), shape=(n_docs, len(self.table)))
        vectors = np.asarray(counts @ self.table, dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
        return vectors

    def embed(self, texts: Sequence[str], max_chars: int = 2_048) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_batch(_Batch([clip_text(t, max_chars) for t in texts]))


def _tool_call_features(text: str) -> tuple[float, float, float, float, float, float]:
    """(log calls, share of calls whose arguments are one JSON object, share repeating an earlier call,
    share of tool results that read like errors, share of calls to functions the record does not
    declare (when it declares any), whether the last answer follows a tool result that failed)."""
    calls = _CALL_RE.findall(text)
    if not calls:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    valid = 0
    for _, args in calls:
        try:
            valid += isinstance(json.loads(args), dict) if args.strip() else 0
        except ValueError:
            pass
    repeated = len(calls) - len(set(calls))
    results = text.split("\n[tool")[1:]
    failed = [bool(_TOOL_ERROR_RE.search(r.split("\n[assistant]", 1)[0][:400])) for r in results]
    errors = sum(failed) / len(results) if results else 0.0
    undeclared = 0.0
    start = text.find(_TOOLS_HEADER)
    if start >= 0:
        block = text[start + len(_TOOLS_HEADER):].split("\n\n", 1)[0]
        declared = {name.strip() for line in block.split("\n") for name in line.split(",") if name.strip()}
        if declared:
            undeclared = sum(name not in declared for name, _ in calls) / len(calls)
    # The last tool result failed and an assistant turn follows it: an answer the tools did not give.
    answer_after_error = 1.0 if failed and failed[-1] and "\n[assistant]" in results[-1] else 0.0
    n = len(calls)
    return float(np.log1p(n)), valid / n, repeated / n, errors, undeclared, answer_after_error


def structural_features(batch: _Batch, texts: Sequence[str], formats: Sequence[str | None]) -> np.ndarray:
    """(n, len(STRUCTURAL_NAMES)) cheap features of each rendering."""
    n = len(texts)
    codes = batch.byte_codes().astype(np.float64)
    n_bytes = np.maximum(batch.n_bytes, 1).astype(np.float64)
    line_doc, after_newline = batch.line_starts()
    lines = np.bincount(line_doc, minlength=n + 1)[:n].astype(np.float64)  # newlines; +1 below for the last line
    lines = np.maximum(lines, 1.0)
    blank = np.bincount(line_doc, weights=after_newline == 10, minlength=n + 1)[:n]
    indented = np.bincount(line_doc, weights=(after_newline == 32) | (after_newline == 9), minlength=n + 1)[:n]
    chunks = np.bincount(batch.doc_of_chunk, minlength=n).astype(np.float64)
    alpha = codes[:, 0] + codes[:, 1]

    out = np.zeros((n, len(STRUCTURAL_NAMES)), dtype=np.float32)
    out[:, 0] = np.log1p(n_bytes)
    out[:, 1] = np.log1p(lines)
    out[:, 2] = np.log1p(n_bytes / lines)
    out[:, 3] = np.minimum(blank / lines, 1.0)
    out[:, 4] = np.minimum(indented / lines, 1.0)
    out[:, 5] = alpha / n_bytes
    out[:, 6] = codes[:, 2] / n_bytes
    out[:, 7] = codes[:, 1] / np.maximum(alpha, 1)
    out[:, 8] = np.minimum((codes[:, 3] + codes[:, 4]) / n_bytes, 1.0)
    out[:, 9] = (codes[:, 5] + codes[:, 6]) / n_bytes
    out[:, 10] = codes[:, 5] / n_bytes
    out[:, 11] = codes[:, 7] / n_bytes
    out[:, 14] = np.log1p(chunks)
    format_index = {f: i for i, f in enumerate(FORMATS)}
    base = STRUCTURAL_NAMES.index("format_text")
    for i, text in enumerate(texts):
        split = text.split("\n")
        out[i, 12] = len(_COMMENT_RE.findall(text)) / len(split)
        # Repeated lines: a looping agent, a boilerplate-padded file.
        out[i, 13] = len(set(split)) / len(split)
        out[i, 15] = 1.0 if "tokens elided ...]" in text else 0.0
        fmt = formats[i] if i < len(formats) else None
        if fmt in ("chat", "agent") or "-> tool call:" in text:
            calls, valid, repeated, errors, undeclared, after_error = _tool_call_features(text)
            out[i, 16:20] = calls, valid, repeated, errors
            out[i, 23:25] = undeclared, after_error
            out[i, 20] = np.log1p(len(_ROLE_RE.findall(text)))
        out[i, 21] = 1.0 if "### Reasoning" in text else 0.0
        # Compressibility (zlib, fast level): boilerplate, repetition and padding compress well.
        raw = text.encode("utf-8", "surrogatepass")
        out[i, 22] = len(zlib.compress(raw, 1)) / max(len(raw), 1)
        if fmt in format_index:
            out[i, base + format_index[fmt]] = 1.0
    return out


class Featurizer:
    """Rendering text (+ record format) -> feature matrix: static embedding then structural features."""

    def __init__(self, config: EmbedConfig, max_chars: int = 2_048) -> None:
        self.embedder = StaticEmbedder(config)
        self.max_chars = max_chars

    @property
    def names(self) -> list[str]:
        return [f"emb_{i}" for i in range(self.embedder.dim)] + STRUCTURAL_NAMES

    def __call__(self, texts: Sequence[str], formats: Sequence[str | None] | None = None) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.zeros((0, len(self.names)), dtype=np.float32)
        clipped = [clip_text(t, self.max_chars) for t in texts]
        batch = _Batch(clipped)
        vectors = self.embedder.embed_batch(batch)
        structure = structural_features(batch, clipped, list(formats) if formats is not None else [None] * n)
        return np.hstack([vectors, structure])

