"""What a student learns from tens of labels: the few-label student against the full-feature choice.

Two real-text tasks with teacher-like targets (weak, low-variance, noisy, as the bundled teacher's):
- agent: the demo's BFCL trajectories, 50 real and 50 degraded copies; the target is about 5.75 for
  a real trajectory and 5.45 for a degraded one, plus noise of 0.15 (the spread the teacher's
  expectations showed on the demo). Scored: AUC of real over degraded on the records not labelled.
- code: Python stdlib windows; the target is the share of comment lines (ranked to 0..10), squeezed
  to +-0.4 around 5.6 and noised. Scored: Spearman on the records not labelled.
Each cell is the mean over `--draws` label draws. "full" is the previous default (ridge or LightGBM
over every feature, chosen by cross-validation inside the labels); "prior" is the few-label
regressor with 400 unlabelled background records.

    python benchmarks/few_labels.py [--draws 10]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(scores)
    n1, n0 = positive.sum(), (~positive).sum()
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def agent_task() -> tuple[list[str], np.ndarray, np.ndarray]:
    from mira.core.config import SourceConfig
    from mira.corpus.records import make_record, render
    from mira.demo.agent import build_records
    from mira.io.readers import RawItem
    from mira.text.tokens import get_tokenizer

    records = build_records(50, 50, random.Random(0))
    tokenizer = get_tokenizer("cl100k_base")
    source = SourceConfig(name="bfcl_agent", path="x", format="agent")
    texts = [render(make_record(RawItem(f"bfcl.jsonl:{i}", data), source, "agent"), tokenizer, 256, 3).text
             for i, data in enumerate(records)]
    good = np.array([data.get("demo_perturbation") is None for data in records])
    rng = np.random.default_rng(0)
    target = np.where(good, 5.75, 5.45) + rng.normal(0, 0.15, len(texts))
    return texts, target, good


def code_task() -> tuple[list[str], np.ndarray, np.ndarray]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.students.student_data import planted_labels, stdlib_texts

    texts = stdlib_texts(300)
    signal, _ = planted_labels(texts)
    rng = np.random.default_rng(1)
    target = 5.6 + (signal - 5.0) * 0.08 + rng.normal(0, 0.15, len(texts))
    return texts, target, signal


def run_task(name: str, texts: list[str], target: np.ndarray, truth: np.ndarray, fmt: str, n_labels: int,
             draws: int) -> None:
    from mira.core.config import EmbedConfig, StudentConfig
    from mira.students import train

    embed = EmbedConfig()
    results: dict[str, list[float]] = {"full": [], "prior": []}
    seconds: dict[str, float] = {"full": 0.0, "prior": 0.0}
    for draw in range(draws):
        rng = np.random.default_rng(100 + draw)
        order = rng.permutation(len(texts))
        labelled, rest = order[:n_labels], order[n_labels:]
        background_idx = rest[: min(400, len(rest))]
        for kind in ("full", "prior"):
            config = StudentConfig(prior_below=0 if kind == "full" else 10_000,
                                   regressors=["ridge", "lightgbm"] if kind == "full" else ["prior_ridge"])
            background = ([texts[i] for i in background_idx], [fmt] * len(background_idx)) if kind == "prior" else None
            started = time.perf_counter()
            student, _ = train(config, embed, ["a00"], texts, [fmt] * len(texts), target[:, None], labelled,
                               background)
            pred = student.predict([fmt] * len(rest), [texts[i] for i in rest])[:, 0]
            seconds[kind] += time.perf_counter() - started
            if truth.dtype == bool:
                results[kind].append(auc(pred, truth[rest]))
            else:
                from scipy.stats import spearmanr

                results[kind].append(float(spearmanr(pred, truth[rest]).statistic))
    metric = "AUC real>degraded" if truth.dtype == bool else "Spearman"
    for kind in ("full", "prior"):
        values = np.array(results[kind])
        print(f"{name:6s} {n_labels:3d} labels  {kind:5s}  {metric} on unlabelled: mean {np.nanmean(values):.3f} "
              f"(min {np.nanmin(values):.3f}, max {np.nanmax(values):.3f})  {seconds[kind] / draws:.2f} s a fit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    texts, target, good = agent_task()
    for n in (6, 12, 24):
        run_task("agent", texts, target, good, "agent", n, args.draws)
    texts, target, signal = code_task()
    for n in (12, 24, 36):
        run_task("code", texts, target, signal, "code", n, args.draws)


if __name__ == "__main__":
    main()
