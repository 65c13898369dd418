"""Is the difference between two methods' per-seed proxy scores beyond seed noise?

Welch's t-test and its confidence interval for the difference of means. Why not the alternatives,
with the 3 seeds a default compare runs: a bootstrap of 3 values has only 10 distinct resamples and
its interval is far too narrow (it ignores that the spread itself is estimated from 3 values); an
exact permutation test of 3 against 3 has 20 arrangements, so its smallest two-sided p is 0.1 and it
can never call a difference at alpha 0.05. Welch's t pays for the small sample through its degrees
of freedom and does not assume equal spreads; it assumes roughly normal seed-to-seed variation,
which averaged losses over ~100 KB of eval bytes satisfy well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def verdict(a: Sequence[float], b: Sequence[float], alpha: float = 0.05,
            labels: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """Compare two methods' per-seed values (e.g. eval bits per byte; lower is better).

    Returns ``{"test", "n_a", "n_b", "mean_a", "mean_b", "std_a", "std_b", "diff" (mean_a - mean_b),
    "low", "high" (the 1 - alpha interval of diff), "p", "alpha", "beyond_noise", "text"}``.
    ``beyond_noise`` is true when p < alpha. With fewer than two seeds on a side the noise cannot be
    estimated: p, low and high are None and ``beyond_noise`` is false.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    xs = [float(v) for v in a]
    ys = [float(v) for v in b]
    if not xs or not ys:
        raise ValueError("verdict needs at least one value per method")
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("verdict values must be finite numbers")
    n_a, n_b = len(xs), len(ys)
    mean_a, mean_b = sum(xs) / n_a, sum(ys) / n_b
    var_a = _variance(xs, mean_a)
    var_b = _variance(ys, mean_b)
    diff = mean_a - mean_b
    out: dict[str, Any] = {
        "test": "welch_t", "n_a": n_a, "n_b": n_b, "mean_a": mean_a, "mean_b": mean_b,
        "std_a": math.sqrt(var_a) if n_a > 1 else None, "std_b": math.sqrt(var_b) if n_b > 1 else None,
        "diff": diff, "low": None, "high": None, "p": None, "alpha": alpha, "beyond_noise": False,
    }
    name_a, name_b = labels
    if n_a < 2 or n_b < 2:
        out["text"] = (f"{name_a} - {name_b} = {diff:+.4f}; not decided: seed noise needs at least 2 seeds "
                       f"per method ({n_a} vs {n_b})")
        return out
    se2_a, se2_b = var_a / n_a, var_b / n_b
    se = math.sqrt(se2_a + se2_b)
    if se == 0:
        # No spread at all on either side: any difference is beyond noise, none is not.
        p, half = (0.0 if diff != 0 else 1.0), 0.0
    else:
        from scipy import stats

        # Welch-Satterthwaite degrees of freedom.
        df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
        p = float(2 * stats.t.sf(abs(diff) / se, df))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    out.update(low=diff - half, high=diff + half, p=p, beyond_noise=p < alpha)
    level = round(100 * (1 - alpha))
    decision = "beyond seed noise" if p < alpha else "within seed noise"
    out["text"] = (f"{name_a} - {name_b} = {diff:+.4f} ({level}% CI {diff - half:+.4f}..{diff + half:+.4f}, "
                   f"Welch p={p:.3g}, {n_a} vs {n_b} seeds): {decision}")
    return out


def _variance(values: list[float], mean: float) -> float:
    if len(values) < 2:
        return 0.0
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)
