"""Does a held-out eval set overlap the corpus? Exact, whitespace-normalised and near-duplicate records.

A proxy model evaluated on records it trained on rewards the selection that kept them, so an eval
set must be held out. Three tests, strongest first: the same text (``exact``); the same text once
whitespace runs are collapsed and case is folded (``normalised``: a reformatted or re-indented
copy); a near-duplicate (``near``: MinHash over word 5-grams, estimated Jaccard similarity >= 0.8,
found through locality-sensitive hashing: 16 bands of 4 hashes, so a pair at 0.8 shares a band with
probability 1 - (1 - 0.8^4)^16 > 0.999 and one at 0.3 with ~0.12, then checked on all 64 hashes).
Hashes are CRC-32 of words combined with fixed multipliers, the same in every process, so a demo
build that filters with it gives the same bytes every time.

:func:`eval_overlap` streams the corpus once against the (small) eval sets; `mira compare` flags
the counts in its summary and refuses a set whose overlap is above :data:`MAX_SHARE`.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from mira.core.config import ConfigError, RunConfig
from mira.corpus.records import Record, full_text
from mira.corpus.sources import SourceInfo, iter_shard_records

SHINGLE = 5
HASHES = 64
ROWS = 4  # hashes per band: 16 bands
THRESHOLD = 0.8
MAX_SHARE = 0.10  # more of an eval set than this in the corpus: refused
KINDS = ("exact", "normalised", "near")

_rng = np.random.default_rng(20_260_101)
# Odd multipliers and offsets of the 64 hash functions (multiply-shift over 64-bit words).
_MUL = _rng.integers(1, 2**63, size=HASHES, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_ADD = _rng.integers(0, 2**63, size=HASHES, dtype=np.uint64)
_GRAM = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
                  0x85EBCA77C2B2AE63], dtype=np.uint64)


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=16).digest()


def signature(text: str) -> np.ndarray:
    """64 MinHash values (uint32) of the text's word 5-grams (fewer words: the words as one gram)."""
    words = np.fromiter((zlib.crc32(w.encode("utf-8", errors="replace")) for w in text.casefold().split()),
                        dtype=np.uint64)
    if len(words) == 0:
        words = np.zeros(1, dtype=np.uint64)
    width = min(SHINGLE, len(words))
    grams = np.zeros(len(words) - width + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(width):  # a 5-gram's hash: its words' hashes times fixed odd numbers, summed
            grams += words[offset:len(words) - width + 1 + offset] * _GRAM[offset]
        mixed = grams[:, None] * _MUL[None, :] + _ADD[None, :]
    return (mixed >> np.uint64(32)).min(axis=0).astype(np.uint32)


class TextIndex:
    """Texts by key, looked up by exact, normalised or near-duplicate text."""

    def __init__(self) -> None:
        self._exact: dict[bytes, list[str]] = {}
        self._normal: dict[bytes, list[str]] = {}
        self._bands: dict[tuple[int, bytes], list[str]] = {}
        self._signatures: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def add(self, key: str, text: str) -> None:
        self._exact.setdefault(_digest(text), []).append(key)
        self._normal.setdefault(_digest(normalise(text)), []).append(key)
        sig = signature(text)
        self._signatures[key] = sig
        for band, chunk in enumerate(_bands(sig)):
            self._bands.setdefault((band, chunk), []).append(key)

    def matches(self, text: str) -> dict[str, str]:
        """Indexed key -> how `text` duplicates it ("exact", "normalised" or "near"); empty if it does not."""
        found = dict.fromkeys(self._exact.get(_digest(text), []), "exact")
        for key in self._normal.get(_digest(normalise(text)), []):
            found.setdefault(key, "normalised")
        sig = signature(text)
        candidates = {key for band, chunk in enumerate(_bands(sig)) for key in self._bands.get((band, chunk), [])}
        for key in candidates - set(found):
            if float(np.mean(self._signatures[key] == sig)) >= THRESHOLD:
                found[key] = "near"
        return found


def _bands(sig: np.ndarray) -> Iterable[bytes]:
    return (sig[i:i + ROWS].tobytes() for i in range(0, HASHES, ROWS))


def eval_overlap(config: RunConfig, infos: list[SourceInfo], eval_sets: dict[str, list[str]]) -> dict[str, Any]:
    """Per eval set: how many of its records (those the proxy evaluates) duplicate a usable corpus
    record, by kind, with a few example pairs. One pass over the corpus."""
    index = TextIndex()
    for name, texts in eval_sets.items():
        for i, text in enumerate(texts):
            index.add(f"{name}\0{i}", text)
    strongest: dict[str, tuple[str, str]] = {}  # eval key -> (kind, corpus record id)
    for info in infos:
        source = config.source(info.name)
        for shard in info.shards:
            for item in iter_shard_records(config, source, shard, info.format):
                if not isinstance(item, Record):
                    continue
                for key, kind in index.matches(full_text(item)).items():
                    if key not in strongest or KINDS.index(kind) < KINDS.index(strongest[key][0]):
                        strongest[key] = (kind, f"{info.name}/{item.id}")
    out: dict[str, Any] = {}
    for name, texts in eval_sets.items():
        mine = {int(key.split("\0")[1]): hit for key, hit in strongest.items() if key.split("\0")[0] == name}
        counts = {kind: sum(kind == hit[0] for hit in mine.values()) for kind in KINDS}
        out[name] = {"records": len(texts), **counts, "overlapping": len(mine),
                     "share": round(len(mine) / len(texts), 6) if texts else 0.0,
                     "examples": [{"record": i, "kind": hit[0], "corpus": hit[1]}
                                  for i, hit in sorted(mine.items())[:5]]}
    return out


def check_overlap(overlap: dict[str, Any]) -> None:
    """Refuse (one line) an eval set more than MAX_SHARE of whose records are in the corpus."""
    for name, entry in overlap.items():
        if entry["share"] > MAX_SHARE:
            kinds = ", ".join(f"{entry[k]} {k}" for k in KINDS if entry[k])
            raise ConfigError(f"compare.eval_sets {name!r}: {entry['overlapping']} of its {entry['records']} records "
                              f"({entry['share']:.0%}) duplicate corpus records ({kinds}; at most {MAX_SHARE:.0%} "
                              "may): an eval set must be held out from the corpus")
