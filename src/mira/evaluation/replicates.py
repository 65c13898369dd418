"""Verdicts over annotation draws: is MIRA's result a property of the method or of one label draw?

The proxy seeds of `mira compare` vary the training, not which records the teacher labelled: one
cell of a 72-label run moved MIRA-Source by 0.24 bits per byte between two annotation samples.
With ``compare.replicates: N`` MIRA's chain runs on N annotation draws (draw 0 is the run's own
labels; draw r labels the sample of ``annotation.seed + r``; :mod:`mira.pipeline.replicates` runs
them) and this module judges every MIRA selection per draw and pooled over the draws.

Per draw, the selection is measured as compare measures any selection (kept tokens, per-source
range, length ratio, overlap with random, known-bad kept) plus how far it agrees with draw 0's
(overlap of the kept tokens, Spearman of the ranking keys); with proxy training, its per-seed bits
per byte are paired with random's on the same seeds (the draw's own verdict, plain p).

**The pooled verdict treats the draw as the unit.** For draw r the paired difference averaged over
the seeds is d_r = mean_k (a_rk - b_k); the pooled difference is the mean of the d_r (the mean over
all (draw, seed) pairs, as every draw has every seed) and its interval and p are a t-test of the d_r
against 0 with N - 1 degrees of freedom, Holm-corrected over every (MIRA selection, eval set) pooled
test. Why not the other two readings: averaging the draws per seed and testing over seeds leaves the
label-draw effect out of the error (it is the same in every seed's average, so it cancels from the
spread): a verdict conditional on these N draws, the luck this is meant to expose. Testing all N x K
pairs as independent counts each draw's effect K times and each random seed N times: its interval
is too narrow by up to sqrt(K). The draw-level test is honest and, with 3 draws (2 degrees of
freedom), wide; ``replicates_needed`` says how many draws the observed difference would need for
80% power, and ``draws_better`` / ``draws_worse`` how many single draws called it.
"""

from __future__ import annotations

import math
from typing import Any

from mira.core.config import RunConfig
from mira.corpus.sources import SourceInfo
from mira.evaluation import metrics
from mira.evaluation.metrics import Decisions
from mira.evaluation.proxy.verdict import holm, verdict

VERSION = "replicates-v1"
POOLING = ("draw-level: the paired per-seed difference averaged per draw, then a t-test over the draws "
           "(N - 1 degrees of freedom), Holm over every MIRA selection x eval set")


def draw_label(name: str, draw: int) -> str:
    return f"{name}@r{draw}"


def selection_metrics(config: RunConfig, infos: list[SourceInfo], names: list[str], random_name: str | None,
                      draws: list[dict[str, Any]]) -> dict[str, Any]:
    """Per MIRA selection: its metrics in each draw (``draws[i]``: ``decisions`` and ``summaries`` by
    selection name) and pooled (mean, min, max over the draws)."""
    random_decisions = draws[0]["random_decisions"]
    every: dict[str, Decisions] = {draw_label(n, i): d["decisions"][n] for i, d in enumerate(draws) for n in names}
    if random_name is not None:
        every[random_name] = random_decisions
    metrics.check_aligned(every)
    sources = [info.name for info in infos]
    overlap = metrics.overlap(every)
    agreement = metrics.rank_agreement(every)
    bias = metrics.length_bias(every, sources)
    known = metrics.known_records(config, infos, every, config.compare.known_bad) or {}
    out: dict[str, Any] = {}
    for name in names:
        rows = []
        for i, draw in enumerate(draws):
            label = draw_label(name, i)
            retention = metrics.retention(draw["summaries"][name])
            shares = [e["token_share"] for e in retention["sources"].values() if e.get("token_share") is not None]
            rows.append({
                "draw": i, "token_share": retention["totals"]["token_share"],
                "source_low": min(shares) if shares else None, "source_high": max(shares) if shares else None,
                "sources": {s: e.get("token_share") for s, e in retention["sources"].items()},
                "length_ratio": bias[label]["mean_ratio"],
                "overlap_random": _cell(overlap, label, random_name),
                "overlap_first": _cell(overlap, label, draw_label(name, 0)),
                "rank_agreement_first": _cell(agreement, label, draw_label(name, 0)),
                "known_bad_kept": ((known.get("methods") or {}).get(label) or {}).get("record_share"),
                "fingerprint": draw["summaries"][name].get("fingerprint")})
        out[name] = {"draws": rows, "pooled": _pooled(rows)}
    return out


def _cell(block: dict[str, Any], row: str, column: str | None) -> float | None:
    names = block.get("methods") or []
    if column is None or row not in names or column not in names:
        return None
    return block["matrix"][names.index(row)][names.index(column)]


def _pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("token_share", "source_low", "source_high", "length_ratio", "overlap_random", "overlap_first",
                "rank_agreement_first", "known_bad_kept"):
        # Draw 0 agrees with itself: its 1.0 would flatter the mean of the agreement columns.
        values = [r[key] for r in rows if r[key] is not None and not (key.endswith("_first") and r["draw"] == 0)]
        out[key] = ({"mean": sum(values) / len(values), "min": min(values), "max": max(values)} if values
                    else None)
    return out


def proxy_verdicts(api: Any, names: list[str], random_names: list[str], eval_names: list[str],
                   values: list[dict[str, dict[str, list[float]]]], alpha: float = 0.05) -> list[dict[str, Any]]:
    """Each MIRA selection against each random selection per eval set, per draw and pooled.

    ``values[i][name][eval_set]`` is draw i's bits per byte per seed (random's are draw 0's: random
    does not depend on the draw). The draw verdicts come from `api` (the same test as compare's
    table, plain p); the pooled one is the draw-level test of the module docstring."""
    out: list[dict[str, Any]] = []
    for b in random_names:
        for a in names:
            for eval_name in eval_names:
                baseline = values[0][b][eval_name]
                per_draw = []
                for i, draw in enumerate(values):
                    v = api.verdict(draw[a][eval_name], baseline, labels=(draw_label(a, i), b))
                    diff = v["diff"]
                    better = (a if diff < 0 else b) if v.get("beyond_noise") else None
                    per_draw.append({"draw": i, "diff": _finite(diff), "low": _finite(v.get("low")),
                                     "high": _finite(v.get("high")), "p": _finite(v.get("p")), "better": better})
                out.append({"a": a, "b": b, "eval_set": eval_name, "draws": per_draw,
                            "pooled": pooled_verdict([d["diff"] for d in per_draw], len(baseline), alpha, (a, b))})
    family = [v["pooled"] for v in out if v["pooled"]["p"] is not None]
    for pooled, adjusted in zip(family, holm([p["p"] for p in family]), strict=True):
        pooled.update(p_holm=adjusted, family=len(family), beyond_noise=adjusted < alpha)
    for v in out:
        pooled = v["pooled"]
        pooled.setdefault("p_holm", None)
        pooled.setdefault("family", None)
        pooled["better"] = ((v["a"] if pooled["diff"] < 0 else v["b"]) if pooled["beyond_noise"] else None)
        pooled["draws_better"] = sum(d["better"] == v["a"] for d in v["draws"])
        pooled["draws_worse"] = sum(d["better"] == v["b"] for d in v["draws"])
        pooled["text"] = _text(v["a"], v["b"], pooled)
    return out


def pooled_verdict(diffs: list[float], seeds: int, alpha: float, labels: tuple[str, str]) -> dict[str, Any]:
    """The draw-level test of per-draw mean differences `diffs` (one per draw, each over `seeds` seeds)."""
    test = verdict(diffs, [0.0] * len(diffs), alpha=alpha, labels=labels)
    return {"draws": len(diffs), "pairs": len(diffs) * seeds, "diff": test["diff"], "sd_draws": test["sd_diff"],
            "low": test["low"], "high": test["high"], "p": test["p"], "replicates_needed": test["seeds_needed"],
            "draws_better": None, "draws_worse": None, "alpha": alpha, "beyond_noise": False}


def _text(a: str, b: str, pooled: dict[str, Any]) -> str:
    n = pooled["draws"]
    if pooled["p"] is None:
        return f"{a} - {b} = {pooled['diff']:+.4f} over {n} draw(s); not decided: the draws' spread needs 2 draws"
    decision = "beyond the draws' noise" if pooled["beyond_noise"] else "within the draws' noise"
    holm_p = (f", Holm p={pooled['p_holm']:.3g} over {pooled['family']} tests" if pooled.get("p_holm") is not None
              else "")
    called = (f"; single draws: {pooled['draws_better']} better, {pooled['draws_worse']} worse"
              if pooled.get("draws_better") is not None else "")
    needed = (f"; {pooled['replicates_needed']} draws for 80% power" if pooled.get("replicates_needed") else "")
    return (f"{a} - {b} = {pooled['diff']:+.4f} (95% CI {pooled['low']:+.4f}..{pooled['high']:+.4f}, t over {n} "
            f"draws p={pooled['p']:.3g}{holm_p}): {decision}{called}{needed}")


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
