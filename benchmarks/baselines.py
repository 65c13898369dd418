"""Perplexity baseline speed and discrimination on the demo corpus, bytes vs words, in one run.

    .venv/bin/python benchmarks/baselines.py [--corpus demo-data] [--workers 1] [--orders 5,3]

Builds the demo corpus if `--corpus` does not exist, ingests it into a temporary run, then for each
token level: trains the cross-fitted reference n-gram models on the default corpus sample and
scores every record (the full `prepare` pass: parse, text, score, write). Prints train seconds,
docs/s and MB/s of the corpus pass, and a discrimination figure: the share of held-out records
whose natural text gets a lower perplexity than the same text with its words shuffled.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    from mira import api
    from mira.config import EngineConfig
    from mira.corpus import iter_source_records, source_infos
    from mira.demo.corpus import build, demo_config
    from mira.rankings import perplexity
    from mira.rankings.ngram import NgramModel, token_ids
    from mira.rankings.texts import record_text
    from mira.rundir import RunDir

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
        texts = [record_text(r) for info in infos for r in iter_source_records(config, info)]
        mb = sum(len(t.encode("utf-8", "replace")) for t in texts) / 1e6
        print(f"corpus: {len(texts):,} records, {mb:.1f} MB of text, {len(infos)} sources; "
              f"engine workers: {args.workers}")
        rng = random.Random(0)
        held = rng.sample(texts, min(200, len(texts)))
        for level, order in orders.items():
            config.selection.perplexity.level = level  # type: ignore[assignment]
            config.selection.perplexity.order = order
            start = time.perf_counter()
            perplexity._train(config, run, infos, perplexity.fingerprint(config, run), _null)
            trained = time.perf_counter() - start
            start = time.perf_counter()
            counts = perplexity.prepare(config, run)
            seconds = time.perf_counter() - start
            # Discrimination: natural text vs the same words shuffled, under one half-model.
            model = NgramModel.load(perplexity.folder(run) / "model.0.npz")
            shuffled = []
            for text in held:
                words = text.split()
                rng.shuffle(words)
                shuffled.append(" ".join(words))
            natural = model.bits_per_token([token_ids(t, level) for t in held])
            junk = model.bits_per_token([token_ids(t, level) for t in shuffled])
            ok = np.isfinite(natural) & np.isfinite(junk)
            wins = float(np.mean(natural[ok] < junk[ok]))
            print(f"{level:5s} order {order}: train {trained:.1f} s; corpus pass {seconds:.1f} s = "
                  f"{counts['records_scored'] / seconds:,.0f} docs/s, {mb / seconds:.1f} MB/s; "
                  f"natural < shuffled on {wins:.0%} of {ok.sum()} held-out records "
                  f"(median {np.median(natural[ok]):.2f} vs {np.median(junk[ok]):.2f} bits/{level[:-1]})")
    return 0


class _Null:
    def advance(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def _null(description: str, total: int | None = None) -> _Null:
    return _Null()


if __name__ == "__main__":
    sys.exit(main())
