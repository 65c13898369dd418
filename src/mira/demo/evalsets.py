"""Held-out evaluation sets for the demo's `mira compare` proxy training, from local files not in the corpus.

A proxy model must be judged on text it never trained on, and not on a public benchmark (none can be
downloaded here, and a benchmark's format would say little about this mixture). So the demo takes
more of the same local material the corpus was sampled from, minus everything the corpus took:

- ``heldout_code``: Python standard-library modules the ``stdlib_code`` sampler did not take;
- ``heldout_docs``: sections of the Python reST documentation that ``python_docs`` did not take;
- ``heldout_headers``: C headers from /usr/include that ``c_headers`` did not take (another language
  and another writer than the two Python sets, as a mixture's held-out code would be).

A candidate that duplicates any corpus record or an earlier eval record is dropped: the same text,
the same text up to whitespace and case, or a near-duplicate (``mira.evaluation.overlap``, the test
`mira compare` applies; /usr/include holds per-architecture copies of one header, and the same
module can sit in two places).
"""

from __future__ import annotations

import random
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mira.demo import sources
from mira.evaluation.overlap import TextIndex

FOLDER = "eval"


@dataclass(frozen=True)
class EvalSet:
    name: str
    format: str
    count: int  # records at scale 1.0 (~25 KB of code each; the proxy reads ~100 KB per set by default)
    build: Callable[[random.Random, int, set[str], TextIndex], list[dict]]

    @property
    def file(self) -> str:
        return f"{FOLDER}/{self.name}.jsonl"


def fresh(record: dict | None, taken: TextIndex) -> dict | None:
    """`record` unless its text duplicates a taken one; a fresh record is taken from then on."""
    if record is None:
        return None
    text = record_text(record)
    if text is None or taken.matches(text):
        return None
    taken.add(record["id"], text)
    return record


def heldout_code(rng: random.Random, n: int, taken_ids: set[str], taken: TextIndex) -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources._require(root, "Python standard library")
    candidates = [rel for rel in sources._walk(root, lambda name: name.endswith(".py"))
                  if f"stdlib_code/{rel}" not in taken_ids]
    load = sources._code_loader(root, "heldout_code")
    return sources._take(candidates, n, rng, lambda rel: fresh(load(rel), taken))


def heldout_docs(rng: random.Random, n: int, taken_ids: set[str], taken: TextIndex) -> list[dict]:
    chunks = [{**c, "id": "heldout_docs/" + c["id"].removeprefix("python_docs/")}
              for c in sources.python_doc_chunks() if c["id"] not in taken_ids]
    return sources._take(chunks, n, rng, lambda chunk: fresh(chunk, taken))


def heldout_headers(rng: random.Random, n: int, taken_ids: set[str], taken: TextIndex) -> list[dict]:
    root = sources.INCLUDE_ROOT
    sources._require(root, "C headers, e.g. apt-get install libc6-dev")
    candidates = [rel for rel in sources._walk(root, lambda name: name.endswith(".h"), {"__pycache__"})
                  if f"c_headers/{rel}" not in taken_ids]

    def load(rel: str) -> dict | None:
        text = sources._read(root / rel)
        if text is None or len(text) < sources.MIN_FILE_BYTES:
            return None
        return fresh({"id": f"heldout_headers/{rel}", "path": rel, "language": "c", "content": text}, taken)

    return sources._take(candidates, n, rng, load)


EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("heldout_code", "code", 40, heldout_code),
    EvalSet("heldout_docs", "text", 150, heldout_docs),
    EvalSet("heldout_headers", "code", 60, heldout_headers),
)


def record_text(row: dict) -> str | None:
    """The text-bearing field of a demo record (code content, a header's bytes, prose, an answer)."""
    for field in ("content", "text", "answer", "bytes"):
        value = row.get(field)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            return value
    return None


def take_corpus(rows: list[dict], taken_ids: set[str], taken: TextIndex) -> None:
    """Add corpus records to what eval sets must not hold: their ids and their texts."""
    for row in rows:
        taken_ids.add(str(row.get("id")))
        text = record_text(row)
        if text is not None:
            taken.add(str(row.get("id")), text)
