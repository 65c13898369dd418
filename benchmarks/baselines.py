"""Perplexity baseline speed and discrimination on the demo corpus, bytes vs words, in one run.

    .venv/bin/python benchmarks/baselines.py [--corpus demo-data] [--workers 1] [--orders 5,3]

Builds the demo corpus if `--corpus` does not exist, ingests it into a temporary run, then for each
token level: trains the cross-fitted reference n-gram models on the default corpus sample and
scores every record (the full `prepare` pass: parse, text, score, write). Prints train seconds,
docs/s and MB/s of the corpus pass (wall and per CPU-second of this process: the machine is
shared, so CPU time is the figure that does not depend on the load), and two discrimination
figures on held-out records: the share whose natural text gets a lower perplexity than the same
text with its words shuffled (spaces and newlines kept), and than the text with 5% of its
characters replaced by random letters (noise).
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    from mira import api
    from mira.core.config import EngineConfig
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.demo.corpus import build, demo_config
    from mira.run.rundir import RunDir
    from mira.selection.rankings import perplexity
    from mira.selection.rankings.ngram import NgramModel, token_ids
    from mira.selection.rankings.texts import record_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="demo-data")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--orders", default="5,3", help="n-gram order for bytes,words")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not corpus.exists():
        build(corpus)
    orders = dict(zip(("bytes", "words"), (int(o) for o in args.orders.split(",")), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(corpus, Path(tmp) / "run")
        config.engine = EngineConfig(workers=args.workers)
        api.run_one("ingest", config)
        run = RunDir(Path(tmp) / "run")
        infos = source_infos(run)
        records = [r for info in infos for r in iter_source_records(config, info)]
        texts = [record_text(r) for r in records]
        mb = sum(len(t.encode("utf-8", "replace")) for t in texts) / 1e6
        print(f"corpus: {len(texts):,} records, {mb:.1f} MB of text, {len(infos)} sources; "
              f"engine workers: {args.workers}")
        held_records = random.Random(0).sample(records, min(200, len(records)))
        held = [record_text(r) for r in held_records]
        for level, order in orders.items():
            config.selection.perplexity.level = level  # type: ignore[assignment]
            config.selection.perplexity.order = order
            start = time.perf_counter()
            perplexity._train(config, run, infos, perplexity.fingerprint(config, run), _null)
            trained = time.perf_counter() - start
            start, cpu = time.perf_counter(), time.process_time()
            counts = perplexity.prepare(config, run)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            # Discrimination: natural text vs corrupted copies, each record under the half-model
            # that never saw it (as the corpus pass scores it).
            models = [NgramModel.load(perplexity.folder(run) / f"model.{i}.npz") for i in (0, 1)]
            other = np.array([1 - perplexity.fold(config.selection.perplexity.seed, r.id) for r in held_records])

            def loss(docs: list[str], models=models, other=other, level=level) -> np.ndarray:
                out = np.full(len(docs), np.nan)
                for m, model in enumerate(models):
                    rows = np.flatnonzero(other == m)
                    out[rows] = model.bits_per_token([token_ids(docs[i], level) for i in rows])
                return out

            natural = loss(held)
            figures = []
            for name, corrupt in (("shuffled", _shuffled_words), ("noise", _noise)):
                junk = loss([corrupt(t, random.Random(i)) for i, t in enumerate(held)])
                ok = np.isfinite(natural) & np.isfinite(junk)
                figures.append(f"natural < {name} on {np.mean(natural[ok] < junk[ok]):.0%} "
                               f"(median {np.median(natural[ok]):.2f} vs {np.median(junk[ok]):.2f} bits/{level[:-1]})")
            docs = counts["records_scored"]
            print(f"{level:5s} order {order}: train {trained:.1f} s; corpus pass {seconds:.1f} s wall = "
                  f"{docs / seconds:,.0f} docs/s, {mb / seconds:.1f} MB/s; per CPU-second {docs / cpu:,.0f} docs, "
                  f"{mb / cpu:.1f} MB; on {len(held)} held-out records: " + "; ".join(figures))
    return 0


def _shuffled_words(text: str, rng: random.Random) -> str:
    """The same words in a random order, every space and newline left where it was."""
    pieces = re.findall(r"\S+|\s+", text)
    slots = [i for i, p in enumerate(pieces) if not p.isspace()]
    words = [pieces[i] for i in slots]
    rng.shuffle(words)
    for i, word in zip(slots, words, strict=True):
        pieces[i] = word
    return "".join(pieces)


def _noise(text: str, rng: random.Random) -> str:
    chars = list(text)
    for i in rng.sample(range(len(chars)), len(chars) // 20):
        chars[i] = rng.choice(string.ascii_letters)
    return "".join(chars)


class _Null:
    def advance(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _null(description: str, total: int | None = None) -> _Null:
    return _Null()


if __name__ == "__main__":
    sys.exit(main())
