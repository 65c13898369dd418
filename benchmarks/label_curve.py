"""How many labels does a group need? The few-label student and the group check, by label count.

    python benchmarks/label_curve.py RUN_DIR CONFIG [--groups g0 g1] [--sizes 10 20 40] [--draws 30]

Reads a finished (or annotated) run with many labels per group — e.g. `mira annotate` with a large
`annotation.total_records` on a copy of the demo run — and, per group and label count n, draws n of
its labels (per source by their share, at least 2 a source) `--draws` times. Each draw is treated
as distill would treat it: the few-label student (:mod:`mira.students.prior`, 8 embedding components
on 400 unlabelled records of the group) is cross-fitted within the draw and the group check decides
(:func:`mira.scoring.agreement.judge_aggregate`: within-source Spearman, 90% lower bound >= 0, the
length guard); then a student fitted on the whole draw is scored on the labels *not* drawn.

Printed per (group, n): `pass` (share of draws the check passes), `test` (mean within-source
Spearman on the labels not drawn: what the student generalises to), `test|pass` (the same over the
draws that passed), `harm` (share of draws that passed with a negative test Spearman), and for a
group holding the demo's agent source, the AUC of real over degraded trajectories among the records
not drawn (`auc`, `auc|pass`). The labels not drawn are teacher labels: the figures say how far the
student reproduces the teacher, not whether the teacher is right.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(scores)
    n1, n0 = positive.sum(), (~positive).sum()
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else float("nan")


def load_group(config: Any, run: Any, group: str) -> dict[str, Any]:
    from mira.artifacts.groups import load_groups
    from mira.corpus.records import render
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.scoring.checks import background_renderings
    from mira.scoring.distillation import read_labels
    from mira.students.static import featurizer
    from mira.text.tokens import get_tokenizer

    feat = featurizer(config.embed, config.student.embed_chars)
    labels, anchors = read_labels(run.path("labels", f"{group}.parquet"))
    infos = {i.name: i for i in source_infos(run)}
    members = [infos[s] for s in load_groups(run).group(group).sources if s in infos and infos[s].ok > 0]
    sources, ids = labels["source"].to_pylist(), labels["record_id"].to_pylist()
    texts, formats = background_renderings(config, members, 400, set(zip(sources, ids, strict=True)),
                                           config.annotation.seed + 1)
    data: dict[str, Any] = {
        "X": feat(labels["text"].to_pylist(), labels["format"].to_pylist()), "Xb": feat(texts, formats),
        "Y": np.column_stack([np.array(labels[a].to_pylist(), dtype=np.float64) for a in anchors]),
        "ids": ids, "sources": np.array(sources, dtype=object), "dim": feat.embedder.dim,
        "tokens": np.array(labels["tokens"].to_pylist(), dtype=np.float64)}
    if "bfcl_agent" in infos and infos["bfcl_agent"] in members:  # the demo's planted defects
        tokenizer = get_tokenizer(config.tokenizer.name)
        records = list(iter_source_records(config, infos["bfcl_agent"]))
        data["all_X"] = feat([render(r, tokenizer, config.render.max_tokens, config.render.windows).text
                              for r in records], [r.format for r in records])
        data["all_ids"] = [r.id for r in records]
    return data


def draw_rows(rng: np.random.Generator, sources: np.ndarray, n: int) -> np.ndarray:
    """n rows spread over the sources by share, at least 2 a source (sorted row indices)."""
    return np.sort(np.concatenate([
        rng.choice(np.flatnonzero(sources == s), min(max(2, round(n * np.mean(sources == s))),
                                                     int(np.sum(sources == s))), replace=False)
        for s in sorted(set(sources))]))


def open_test_bed(run_dir: Path, config_path: Path, groups: list[str] | None) -> tuple[Any, Any, list[str]]:
    """(config, run, groups) of a run annotated with many labels: `groups` or every labelled group."""
    from mira.run.config_file import load_config
    from mira.run.rundir import RunDir

    config = load_config(config_path, [f"run_dir={run_dir.resolve()}"])
    run = RunDir(run_dir)
    return config, run, groups or sorted(p.stem for p in run.path("labels").glob("*.parquet") if "." not in p.stem)


def crossfit(fit: Any, X: np.ndarray, Y: np.ndarray, fold: np.ndarray, sources: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions and source offsets, as mira.scoring.distillation.crossfit_with_offsets."""
    pred, offsets = np.full(Y.shape, np.nan), np.full(Y.shape, np.nan)
    overall = Y.mean(axis=0)
    for f in np.unique(fold):
        train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        predict = fit(X[train], Y[train])
        shift = overall - Y[train].mean(axis=0)
        pred[held] = predict(X[held]) + shift
        fitted = predict(X[train]) + shift
        for i in held:
            same = sources[train] == sources[i]
            offsets[i] = fitted[same].mean(axis=0) if same.any() else fitted.mean(axis=0)
    return pred, offsets


def curve(data: dict[str, Any], n: int, draws: int, reliability: Any, components: int = 8) -> dict[str, float]:
    from mira.scoring.agreement import judge_aggregate, within_source_agreement
    from mira.scoring.checks import aggregate_check, length_crossfit
    from mira.scoring.distillation import folds
    from mira.students.prior import PriorRidge

    X, Y, sources, ids = data["X"], data["Y"], data["sources"], data["ids"]

    def fit(Xt: np.ndarray, Yt: np.ndarray) -> Any:
        return PriorRidge.fit(Xt, Yt, 0, data["dim"], background=data["Xb"], n_components=components).predict

    mean_z = ((Y - Y.mean(axis=0)) / np.maximum(Y.std(axis=0), 1e-6)).mean(axis=1)
    rng = np.random.default_rng(0)
    rows = []
    for draw in range(draws):
        pick = draw_rows(rng, sources, n)
        rest = np.setdiff1d(np.arange(len(ids)), pick)
        fold = folds([ids[i] for i in pick], list(sources[pick]), min(5, len(pick)), draw)
        pred, offsets = crossfit(fit, X[pick], Y[pick], fold, sources[pick])
        length = length_crossfit(data["tokens"][pick], Y[pick].mean(axis=1), fold)
        check = aggregate_check(pred, Y[pick], list(sources[pick]), np.arange(len(pick)), length, offsets)
        passed = judge_aggregate(check, reliability)["status"] == "reliable"
        predict = fit(X[pick], Y[pick])
        test, _ = within_source_agreement(predict(X[rest]).mean(axis=1), mean_z[rest], list(sources[rest]))
        row = {"pass": passed, "test": np.nan if test is None else test}
        if "all_X" in data:
            drawn = {ids[i] for i in pick}
            keep = np.array([i not in drawn for i in data["all_ids"]])
            bad = np.array([i.count("/") > 1 for i in data["all_ids"]])  # <real id>/<perturbation>
            row["auc"] = auc(predict(data["all_X"]).mean(axis=1)[keep], ~bad[keep])
        rows.append(row)
    passed = np.array([r["pass"] for r in rows])
    test = np.array([r["test"] for r in rows], dtype=np.float64)
    out = {"pass": passed.mean(), "test": np.nanmean(test),
           "test|pass": np.nanmean(test[passed]) if passed.any() else np.nan,
           "harm": float(np.mean(passed & (test < 0)))}
    if "auc" in rows[0]:
        values = np.array([r["auc"] for r in rows])
        out |= {"auc": values.mean(), "auc|pass": values[passed].mean() if passed.any() else np.nan}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--groups", nargs="*")
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 20, 40])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--components", type=int, default=8)
    args = parser.parse_args()
    config, run, groups = open_test_bed(args.run, args.config, args.groups)
    print("group  labels  n   pass  test   test|pass harm   auc   auc|pass")
    for group in groups:
        data = load_group(config, run, group)
        for n in args.sizes:
            if n >= len(data["ids"]) - 4:
                continue  # too few labels left over to test on
            r = curve(data, n, args.draws, config.reliability, args.components)
            print(f"{group:6s} {len(data['ids']):6d} {n:3d}  {r['pass']:.2f}  {r['test']:+.2f}  "
                  f"{r['test|pass']:+.2f}     {r['harm']:.2f}   {r.get('auc', float('nan')):.2f}  "
                  f"{r.get('auc|pass', float('nan')):.2f}", flush=True)


if __name__ == "__main__":
    main()
