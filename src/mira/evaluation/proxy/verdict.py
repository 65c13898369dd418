"""Is the difference between two methods' per-seed proxy scores beyond seed noise?

Every compared selection is trained on the same seeds, and a seed fixes the model's initial weights
and the order its batches come in for every selection alike, so seed k of method A and seed k of
method B are a pair: the test is on the per-seed differences (a paired t-test and the confidence
interval of the mean difference). Pairing removes what the seed does to both arms; with per-arm seed
spreads of 0.01-0.04 bits per byte a 0.025 gap needs ~24 seeds unpaired and ~14 paired.
Wilcoxon's signed-rank test on the same differences is reported as a check once there are 6 pairs
(with fewer its smallest two-sided p is 2/2^n > 0.05, so it could never call anything). Why not a
bootstrap, with the 3 seeds a default compare runs: 3 values have 10 distinct resamples, and the
interval ignores that the spread itself is estimated from 3 values; the t distribution pays for
that through its degrees of freedom.

:func:`seeds_for_power` says how many seeds the observed difference would need to be called at 80%
power; :func:`holm` corrects a family of such tests (every method against the baseline on every
eval set). Welch's unpaired test stays for values that are not paired (``paired=False``).
scipy is imported only when a p-value is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

POWER = 0.8
WILCOXON_MIN = 6  # pairs before the signed-rank check can reach p < 0.05 (2 / 2**6 = 0.031)


def verdict(a: Sequence[float], b: Sequence[float], alpha: float = 0.05,
            labels: tuple[str, str] = ("a", "b"), paired: bool = True) -> dict[str, Any]:
    """Compare two methods' per-seed values (e.g. eval bits per byte; lower is better).

    Paired (the default): ``a[k]`` and ``b[k]`` come from the same seed. Returns ``{"test", "n_a",
    "n_b", "mean_a", "mean_b", "std_a", "std_b", "diff" (mean_a - mean_b), "sd_diff", "low", "high"
    (the 1 - alpha interval of diff), "p", "wilcoxon_p" (None below 6 pairs), "seeds_needed" (for 80%
    power at the observed difference), "alpha", "beyond_noise", "text"}``. ``beyond_noise`` is true
    when p < alpha. With fewer than two seeds the noise cannot be estimated: p, low and high are
    None and ``beyond_noise`` is false.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    xs = [float(v) for v in a]
    ys = [float(v) for v in b]
    if not xs or not ys:
        raise ValueError("verdict needs at least one value per method")
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("verdict values must be finite numbers")
    if paired and len(xs) != len(ys):
        raise ValueError(f"a paired verdict needs one value per seed on both sides ({len(xs)} vs {len(ys)})")
    n_a, n_b = len(xs), len(ys)
    mean_a, mean_b = sum(xs) / n_a, sum(ys) / n_b
    var_a, var_b = _variance(xs, mean_a), _variance(ys, mean_b)
    diff = mean_a - mean_b
    out: dict[str, Any] = {
        "test": "paired_t" if paired else "welch_t", "n_a": n_a, "n_b": n_b, "mean_a": mean_a, "mean_b": mean_b,
        "std_a": math.sqrt(var_a) if n_a > 1 else None, "std_b": math.sqrt(var_b) if n_b > 1 else None,
        "diff": diff, "sd_diff": None, "low": None, "high": None, "p": None, "wilcoxon_p": None,
        "seeds_needed": None, "alpha": alpha, "beyond_noise": False,
    }
    name_a, name_b = labels
    if n_a < 2 or n_b < 2:
        out["text"] = (f"{name_a} - {name_b} = {diff:+.4f}; not decided: seed noise needs at least 2 seeds "
                       f"per method ({n_a} vs {n_b})")
        return out
    if paired:
        diffs = [x - y for x, y in zip(xs, ys, strict=True)]
        sd = math.sqrt(_variance(diffs, diff))
        p, half = _t_test(diff, sd / math.sqrt(n_a), n_a - 1, alpha)
        out.update(sd_diff=sd, seeds_needed=seeds_for_power(diff, sd, alpha))
        if n_a >= WILCOXON_MIN:
            out["wilcoxon_p"] = wilcoxon_p(diffs)
        how = f"paired t p={p:.3g} over {n_a} seeds"
    else:
        se2_a, se2_b = var_a / n_a, var_b / n_b
        # Welch-Satterthwaite degrees of freedom (any positive value when both spreads are 0).
        df = ((se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))) if se2_a + se2_b else 1.0
        p, half = _t_test(diff, math.sqrt(se2_a + se2_b), df, alpha)
        how = f"Welch p={p:.3g}, {n_a} vs {n_b} seeds"
    out.update(low=diff - half, high=diff + half, p=p, beyond_noise=p < alpha)
    level = round(100 * (1 - alpha))
    decision = "beyond seed noise" if p < alpha else "within seed noise"
    extra = ""
    if out["wilcoxon_p"] is not None:
        agrees = (out["wilcoxon_p"] < alpha) == (p < alpha)
        extra += f"; Wilcoxon p={out['wilcoxon_p']:.3g}" + ("" if agrees else " disagrees")
    if out["seeds_needed"] is not None:
        extra += f"; {out['seeds_needed']} seeds for 80% power"
    out["text"] = (f"{name_a} - {name_b} = {diff:+.4f} ({level}% CI {diff - half:+.4f}..{diff + half:+.4f}, "
                   f"{how}): {decision}{extra}")
    return out


def seeds_for_power(mean_diff: float, sd_diff: float, alpha: float = 0.05, power: float = POWER) -> int | None:
    """Seeds a paired comparison needs to call `mean_diff` at `power`, if the per-seed differences
    spread by `sd_diff`: n = ((z_{1-alpha/2} + z_power) * sd / mean)^2, rounded up, at least 2 (the
    normal approximation; the t-test needs a seed or two more at small n). None for no difference."""
    if mean_diff == 0 or not math.isfinite(mean_diff) or not math.isfinite(sd_diff):
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return max(2, math.ceil((z * sd_diff / abs(mean_diff)) ** 2))


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (1.0 when every difference is 0)."""
    if not any(diffs):
        return 1.0
    from scipy import stats

    return float(stats.wilcoxon(diffs).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest p times (m - i + 1),
    never below an earlier one's, capped at 1. A test is significant at family-wise `alpha` when its
    adjusted p is below alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _t_test(diff: float, se: float, df: float, alpha: float) -> tuple[float, float]:
    """Two-sided p of `diff` against 0 and the half width of its 1 - alpha interval."""
    if se == 0:
        # No spread at all: any difference is beyond noise, none is not.
        return (0.0 if diff != 0 else 1.0), 0.0
    from scipy import stats

    return float(2 * stats.t.sf(abs(diff) / se, df)), float(stats.t.ppf(1 - alpha / 2, df)) * se


def _variance(values: list[float], mean: float) -> float:
    if len(values) < 2:
        return 0.0
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)
