"""Held-out evaluation sets for the demo's `mira compare` proxy training, from local files not in the corpus.

A proxy model must be judged on text it never trained on, and not on a public benchmark (none can be
downloaded here, and a benchmark's format would say little about this mixture). So the demo takes
more of the same local material the corpus was sampled from, minus everything the corpus took:

- ``heldout_code``: Python standard-library modules the ``stdlib_code`` sampler did not take;
- ``heldout_docs``: sections of the Python reST documentation that ``python_docs`` did not take.

Files whose content equals any corpus record are dropped too (the same module can sit in two places).
"""

from __future__ import annotations

import hashlib
import random
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mira.demo import sources

FOLDER = "eval"


@dataclass(frozen=True)
class EvalSet:
    name: str
    format: str
    count: int  # records at scale 1.0 (~25 KB of code each; the proxy reads ~100 KB per set by default)
    build: Callable[[random.Random, int, set[str], set[str]], list[dict]]

    @property
    def file(self) -> str:
        return f"{FOLDER}/{self.name}.jsonl"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()


def heldout_code(rng: random.Random, n: int, taken_ids: set[str], taken_hashes: set[str]) -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources._require(root, "Python standard library")
    candidates = [rel for rel in sources._walk(root, lambda name: name.endswith(".py"))
                  if f"stdlib_code/{rel}" not in taken_ids]
    load = sources._code_loader(root, "heldout_code")

    def fresh(rel: str) -> dict | None:
        record = load(rel)
        return None if record is None or content_hash(record["content"]) in taken_hashes else record

    return sources._take(candidates, n, rng, fresh)


def heldout_docs(rng: random.Random, n: int, taken_ids: set[str], taken_hashes: set[str]) -> list[dict]:
    chunks = [c for c in sources.python_doc_chunks()
              if c["id"] not in taken_ids and content_hash(c["text"]) not in taken_hashes]
    picked = rng.sample(chunks, min(n, len(chunks)))
    return sorted(({**c, "id": "heldout_docs/" + c["id"].removeprefix("python_docs/")} for c in picked),
                  key=lambda r: r["id"])


EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("heldout_code", "code", 40, heldout_code),
    EvalSet("heldout_docs", "text", 150, heldout_docs),
)


def corpus_keys(rows: list[dict]) -> tuple[set[str], set[str]]:
    """Ids and content hashes of corpus records (the text-bearing field of each demo format)."""
    ids, hashes = set(), set()
    for row in rows:
        ids.add(str(row.get("id")))
        for field in ("content", "text", "answer"):
            if isinstance(row.get(field), str):
                hashes.add(content_hash(row[field]))
    return ids, hashes
