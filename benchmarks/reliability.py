"""Can the reliability mask tell a real student from noise? A simulation, in seconds.

    .venv/bin/python benchmarks/reliability.py [--trials 1000] [--seed 0]

For validation sizes n = 3 .. 80 it draws teacher labels (expected scores, mean 6, sd 1.5, on
0..10) and two students: a *null* student (predictions independent of the labels, spread around
the mean like a weak regressor's) and a student whose true Spearman with the teacher is 0.6
(bivariate normal, Pearson 2 sin(pi rho / 6)). Each cell is judged by the rule of
mira.scoring.reliability at the default ``ReliabilityConfig`` and by the old rule (point Spearman >= 0.2,
MAE <= 2.5, n >= 3), and the share of trials each rule masks the null student / passes the real
one is printed side by side.

A second table: a group of 5 sources x 8 validation rows whose teacher means differ by source,
and a student that only knows the source (predicts its mean). Pooled over the group (the old
group-wide fallback cell) it looks excellent; the new group cell combines within-source
statistics.

Goal (issue 11): at the defaults and n = 40, null masked >= 95% and Spearman-0.6 passes >= 90%.

A third table (issue 25): the power of the test select's ranking now gets, the group's aggregate
judged within sources (lower bound >= ``min_spearman``, 0 by default), against the previous group
cell (per-source Fisher z combined, lower bound >= 0.2), for n = 12/24/36/72 labels and true
Spearman 0/0.3/0.5/0.7, in one source and split evenly over three sources whose teacher means
differ.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from mira.core.config import ReliabilityConfig
from mira.scoring.agreement import judge_aggregate, spearman_lower_bound, within_source_agreement
from mira.scoring.reliability import build_mask, combine_within_sources, judge
from mira.students import evaluate

SIZES = (3, 5, 10, 20, 40, 80)


def ranks_spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.ptp(a) == 0 or np.ptp(b) == 0 or len(a) < 3:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def draw(rng: np.random.Generator, n: int, rho_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(teacher, student) for a student whose population Spearman with the teacher is `rho_s`."""
    r = 2 * math.sin(math.pi * rho_s / 6)  # Pearson of a bivariate normal with that Spearman
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    teacher = np.clip(6 + 1.5 * z1, 0, 10)
    # A regressor shrinks toward the mean: its spread (sd 1.0) is below the teacher's 1.5.
    student = np.clip(6 + 1.0 * (r * z1 + math.sqrt(1 - r * r) * z2), 0, 10)
    return teacher, student


def old_rule(n: int, mae: float, rho: float | None) -> bool:
    return n >= 3 and mae <= 2.5 and rho is not None and rho >= 0.2


def new_rule(n: int, mae: float, rho: float | None, config: ReliabilityConfig,
             teacher_mae: float | None = None) -> bool:
    return judge({"n": n, "mae": mae, "spearman": rho}, config, teacher_mae)["status"] == "reliable"


def cell_table(trials: int, seed: int, config: ReliabilityConfig, teacher_mae: float | None = None,
               sizes: tuple[int, ...] = SIZES) -> None:
    rng = np.random.default_rng(seed)
    if teacher_mae is not None:
        print(f"with a measured teacher self-consistency MAE of {teacher_mae} (MAE limit "
              f"{teacher_mae + config.mae_margin}):")
    print(f"{'n':>4} | {'null masked: old':>17} {'new':>6} | {'rho 0.6 passes: old':>20} {'new':>6} | "
          f"{'undecidable (new)':>17}")
    for n in sizes:
        counts = {"null_old": 0, "null_new": 0, "real_old": 0, "real_new": 0}
        for _ in range(trials):
            for kind, rho_s in (("null", 0.0), ("real", 0.6)):
                teacher, student = draw(rng, n, rho_s)
                mae, rho = float(np.mean(np.abs(teacher - student))), ranks_spearman(teacher, student)
                passed_old, passed_new = old_rule(n, mae, rho), new_rule(n, mae, rho, config, teacher_mae)
                if kind == "null":
                    counts["null_old"] += not passed_old
                    counts["null_new"] += not passed_new
                else:
                    counts["real_old"] += passed_old
                    counts["real_new"] += passed_new
        undecidable = "all" if n < max(config.min_support, 4) else "none"
        print(f"{n:>4} | {counts['null_old'] / trials:>17.1%} {counts['null_new'] / trials:>6.1%} | "
              f"{counts['real_old'] / trials:>20.1%} {counts['real_new'] / trials:>6.1%} | {undecidable:>17}")


def pooled_table(trials: int, seed: int, config: ReliabilityConfig) -> None:
    rng = np.random.default_rng(seed + 1)
    sources = np.repeat([f"s{i}" for i in range(5)], 8)
    means = np.repeat(np.array([3.0, 4.5, 6.0, 7.0, 8.5]), 8)
    pooled_rhos, old_pass, new_pass = [], 0, 0
    for _ in range(trials):
        teacher = np.clip(means + rng.normal(0, 1.0, len(means)), 0, 10)
        student = means + rng.normal(0, 0.05, len(means))  # the source's mean, nothing else
        metrics = {"anchors": ["a"], **evaluate(student[:, None], teacher[:, None], sources, ["a"])}
        pooled = metrics["overall"]["a"]
        pooled_rhos.append(pooled["spearman"])
        old_pass += old_rule(pooled["n"], pooled["mae"], pooled["spearman"])
        group = build_mask(metrics, ReliabilityConfig(**{**config.model_dump(), "min_support": 20}))
        new_pass += not group["cells"]["*"]["a"]["masked"]
    print(f"source-only student, 5 sources x 8 rows: pooled Spearman {np.mean(pooled_rhos):.2f} on average; "
          f"group cell passes: old (pooled) {old_pass / trials:.1%}, new (within-source) {new_pass / trials:.1%}")


def aggregate_table(trials: int, seed: int, config: ReliabilityConfig) -> None:
    rng = np.random.default_rng(seed + 2)
    print("passes of the group test (share of trials): previous group cell (bound >= 0.2) / aggregate within "
          f"sources (bound >= {config.min_spearman})")
    print(f"{'labels':>6} {'sources':>7} | " + " | ".join(f"rho {rho:.1f}".rjust(13) for rho in (0.0, 0.3, 0.5, 0.7)))
    for n in (12, 24, 36, 72):
        for k in (1, 3):
            cells = []
            for rho_s in (0.0, 0.3, 0.5, 0.7):
                old = new = 0
                for _ in range(trials):
                    per = [n // k + (1 if i < n % k else 0) for i in range(k)]
                    teacher, student, sources, stats = [], [], [], []
                    for i, m in enumerate(per):
                        t_i, s_i = draw(rng, m, rho_s)
                        t_i, s_i = t_i + 1.5 * i, s_i + 1.5 * i  # sources differ in level
                        teacher.append(t_i)
                        student.append(s_i)
                        sources += [f"s{i}"] * m
                        stats.append({"n": m, "spearman": ranks_spearman(t_i, s_i),
                                      "mae": float(np.mean(np.abs(t_i - s_i)))})
                    combined = combine_within_sources(stats)
                    old += combined["weight"] > 0 and combined["spearman"] is not None and spearman_lower_bound(
                        combined["spearman"], combined["weight"], config.confidence) >= 0.2
                    rho, n_eff = within_source_agreement(np.concatenate(student), np.concatenate(teacher), sources)
                    verdict = judge_aggregate({"spearman": rho, "n_eff": n_eff, "mae": 0.0}, config)
                    new += verdict["status"] == "reliable"
                cells.append(f"{old / trials:>5.0%} / {new / trials:>5.0%}")
            print(f"{n:>6} {k:>7} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = ReliabilityConfig()
    start = time.perf_counter()
    print(f"defaults: min_spearman {config.min_spearman} on the {config.confidence:.0%} lower bound, "
          f"min_support {config.min_support}, max_mae {config.max_mae}; old rule: point Spearman >= 0.2, "
          f"MAE <= 2.5, n >= 3; {args.trials} trials per row")
    cell_table(args.trials, args.seed, config)
    cell_table(args.trials // 2, args.seed, config, teacher_mae=0.5, sizes=(40,))
    pooled_table(max(200, args.trials // 10), args.seed, config)
    aggregate_table(max(200, args.trials // 2), args.seed, config)
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
