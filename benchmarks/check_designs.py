"""Two designs the group check could take, measured on a run with many labels per group.

    python benchmarks/check_designs.py RUN_DIR CONFIG [--groups g0 g1] [--plans 40:12 40:16 20:8] [--draws 30]
    python benchmarks/check_designs.py RUN_DIR CONFIG --zero-shot

Same test bed as benchmarks/label_curve.py (a copy of the demo run annotated with many labels), same
draws, same few-label student. Per group and plan N:m, each of `--draws` draws compares

- **A, today's check**: N labels drawn at random (per source by share), the student cross-fitted on
  them and the aggregate judged within sources (:func:`mira.scoring.agreement.judge_aggregate`);
- **B, a targeted confirmation**: N - m random labels train the student; then, among the labelled
  records it never saw, its m most extreme (per source by share: the k it ranks highest and the k it
  ranks lowest) have their teacher labels read, and a stratified Mann-Whitney test (sum over sources
  of U, normal approximation) asks whether the teacher puts the student's top above its bottom; the
  group passes at one-sided p < 0.10, the same 90% as A's bound. Under a useless student the two
  ends are exchangeable, so B's false-pass rate is 10% whatever the labels look like;
- **C**: B's z and A's (Fisher z of the cross-fitted Spearman on the N - m) combined by Stouffer,
  with A's length guard.

Printed per (group, N, m): each design's pass rate, `harm` (passed while the student's Spearman on
all labels it never saw, within sources, is < 0) and `test` (that Spearman, mean over draws). The
pool B picks from is the labelled records only (~60 for code at N = 40): a real confirmation would
pick from the group's hundreds of unlabelled records, whose extremes lie further apart, so B is
understated here. `--zero-shot` prints instead, per anchor, the within-source Spearman of the
teacher's labels with a feature no label fits: cos(record, the anchor's `high` guide + definition)
- cos(record, its `low` guide), in the students' static embedding.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from label_curve import crossfit, draw_rows, load_group, open_test_bed  # noqa: E402  (a sibling script)


def targeted_z(scores: np.ndarray, target: np.ndarray, sources: np.ndarray, m: int, rng: np.random.Generator
               ) -> float:
    """z of the stratified Mann-Whitney test: teacher `target` of the student's top k vs its bottom k
    per source (k by the source's share of `m`, at least 1), pooled over sources."""
    from scipy.stats import rankdata

    u = expected = variance = 0.0
    for source in sorted(set(sources)):
        rows = np.flatnonzero(sources == source)
        k = min(max(1, round(m * len(rows) / len(sources) / 2)), len(rows) // 2)
        if k < 1:
            continue
        order = rows[np.argsort(scores[rows] + 1e-9 * rng.random(len(rows)))]  # ties broken at random
        ranks = rankdata(np.concatenate([target[order[-k:]], target[order[:k]]]))
        u += ranks[:k].sum() - k * (k + 1) / 2
        expected += k * k / 2
        variance += k * k * (2 * k + 1) / 12
    return (u - expected) / math.sqrt(variance) if variance > 0 else 0.0


def designs(data: dict[str, Any], n: int, m: int, draws: int, reliability: Any) -> dict[str, dict[str, float]]:
    from scipy.stats import norm

    from mira.scoring.agreement import fisher_z, judge_aggregate, within_source_agreement
    from mira.scoring.checks import aggregate_check, length_crossfit
    from mira.scoring.distillation import folds
    from mira.students.prior import PriorRidge

    X, Y, sources, ids = data["X"], data["Y"], data["sources"], data["ids"]
    mean_z = ((Y - Y.mean(axis=0)) / np.maximum(Y.std(axis=0), 1e-6)).mean(axis=1)

    def fit(Xt: np.ndarray, Yt: np.ndarray) -> Any:
        return PriorRidge.fit(Xt, Yt, 0, data["dim"], background=data["Xb"], n_components=8).predict

    rng = np.random.default_rng(0)
    out: dict[str, list[tuple[bool, float]]] = {"A": [], "B": [], "C": []}
    bound = norm.ppf(0.90)
    for draw in range(draws):
        for design, n_train in (("A", n), ("B", n - m)):
            pick = draw_rows(rng, sources, n_train)
            rest = np.setdiff1d(np.arange(len(ids)), pick)
            fold = folds([ids[i] for i in pick], list(sources[pick]), min(5, len(pick)), draw)
            pred, offsets = crossfit(fit, X[pick], Y[pick], fold, sources[pick])
            length = length_crossfit(data["tokens"][pick], Y[pick].mean(axis=1), fold)
            check = aggregate_check(pred, Y[pick], list(sources[pick]), np.arange(len(pick)), length, offsets)
            scores = fit(X[pick], Y[pick])(X[rest]).mean(axis=1)
            test, _ = within_source_agreement(scores, mean_z[rest], list(sources[rest]))
            test = np.nan if test is None else test
            if design == "A":
                out["A"].append((judge_aggregate(check, reliability)["status"] == "reliable", test))
                continue
            z = targeted_z(scores, mean_z[rest], sources[rest], m, rng)
            rho, n_eff = check["spearman"], int(check["n_eff"])
            z_check = fisher_z(rho) * math.sqrt(n_eff - 3) if rho is not None and n_eff > 3 else 0.0
            length_ok = check.get("length_spearman") is None or (rho is not None and rho > check["length_spearman"])
            out["B"].append((z > bound, test))
            out["C"].append(((z + z_check) / math.sqrt(2) > bound and length_ok, test))
    summary = {}
    for design, rows in out.items():
        passed = np.array([p for p, _ in rows])
        tests = np.array([t for _, t in rows], dtype=np.float64)
        summary[design] = {"pass": float(passed.mean()), "harm": float(np.mean(passed & (tests < 0))),
                           "test": float(np.nanmean(tests)) if np.isfinite(tests).any() else float("nan")}
    return summary


def zero_shot(config: Any, run: Any, group: str, data: dict[str, Any]) -> list[str]:
    from mira.artifacts.anchors import load_rubric
    from mira.scoring.agreement import within_source_agreement
    from mira.students.static import featurizer

    feat = featurizer(config.embed, config.student.embed_chars)
    d = data["dim"]

    def unit(v: np.ndarray) -> np.ndarray:
        return np.asarray(v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9))

    records = unit(data["X"][:, :d])
    lines, total = [], np.zeros(len(records))
    for i, anchor in enumerate(load_rubric(run, group)):
        high = unit(feat([f"{anchor.high} {anchor.definition}"], ["text"])[0, :d])
        low = unit(feat([anchor.low], ["text"])[0, :d])
        score = records @ high - records @ low
        total += (score - score.mean()) / (score.std() + 1e-9)
        rho, _ = within_source_agreement(score, data["Y"][:, i], list(data["sources"]))
        lines.append(f"{group} {anchor.id} {anchor.name[:40]:40s} {rho:+.3f}")
    Y = data["Y"]
    mean_z = ((Y - Y.mean(axis=0)) / np.maximum(Y.std(axis=0), 1e-6)).mean(axis=1)
    rho, _ = within_source_agreement(total, mean_z, list(data["sources"]))
    lines.append(f"{group} aggregate {'':40s} {rho:+.3f}  ({len(Y)} labels)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--groups", nargs="*")
    parser.add_argument("--plans", nargs="+", default=["20:8", "40:12", "40:16", "60:16"],
                        help="N:m, labels in all : of them targeted")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--zero-shot", action="store_true")
    args = parser.parse_args()
    config, run, groups = open_test_bed(args.run, args.config, args.groups)
    for group in groups:
        data = load_group(config, run, group)
        if args.zero_shot:
            print("\n".join(zero_shot(config, run, group, data)), flush=True)
            continue
        for plan in args.plans:
            n, m = (int(v) for v in plan.split(":"))
            if n >= len(data["ids"]) - 8:
                continue  # too few labels left to pick extremes from and test on
            r = designs(data, n, m, args.draws, config.reliability)
            print(f"{group:4s} N={n:3d} m={m:2d} | " + " | ".join(
                f"{d}: pass {v['pass']:.2f} harm {v['harm']:.2f} test {v['test']:+.2f}" for d, v in r.items()),
                flush=True)


if __name__ == "__main__":
    main()
