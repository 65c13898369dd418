import logging

import numpy as np
import pytest
from scipy.stats import trim_mean

from mira.config import ReliabilityConfig
from mira.reliability import GROUP_CELL, aggregate, build_mask, masked_records


def _metrics():
    good = {"mae": 0.8, "spearman": 0.7, "n": 10}
    return {
        "anchors": ["good", "noisy", "biased"],
        "cells": {
            "big": {"good": good, "noisy": {"mae": 2.4, "spearman": 0.05, "n": 10},
                    "biased": {"mae": 3.5, "spearman": 0.6, "n": 10}},
            "tiny": {"good": {"mae": 5.0, "spearman": -1.0, "n": 2}, "noisy": {"mae": 0.1, "spearman": 1.0, "n": 2},
                     "biased": {"mae": 0.1, "spearman": 1.0, "n": 2}},
        },
        "overall": {"good": {"mae": 1.0, "spearman": 0.6, "n": 12}, "noisy": {"mae": 2.3, "spearman": 0.08, "n": 12},
                    "biased": {"mae": 3.0, "spearman": 0.65, "n": 12}},
    }


def test_mask_removes_noisy_and_biased_cells_with_reasons():
    mask = build_mask(_metrics(), ReliabilityConfig(max_mae=2.5, min_spearman=0.2, min_support=3))
    big = mask["cells"]["big"]
    assert not big["good"]["masked"] and big["good"]["reason"] is None
    assert big["noisy"]["masked"] and "Spearman 0.05 < min_spearman 0.2" in big["noisy"]["reason"]
    assert big["biased"]["masked"] and "MAE 3.50 > max_mae 2.5" in big["biased"]["reason"]
    assert big["good"]["weight"] == pytest.approx(0.7 / 1.8)
    assert big["noisy"]["weight"] == 0.0


def test_small_sources_fall_back_to_the_group_cell_and_say_so():
    mask = build_mask(_metrics(), ReliabilityConfig(min_support=3))
    tiny = mask["cells"]["tiny"]
    # Its own cells (n=2) would say the opposite; the group-wide cell decides.
    assert not tiny["good"]["masked"] and tiny["good"]["basis"] == GROUP_CELL and "min_support" in tiny["good"]["note"]
    assert tiny["noisy"]["masked"] and "group-wide" in tiny["noisy"]["reason"]
    assert mask["summary"]["fallback_to_group"] == 3


def _mask(cells, anchors=("a", "b", "c", "d")):
    return {"anchors": list(anchors), "cells": {
        source: {a: {"masked": not keep, "reason": None if keep else "x", "weight": w}
                 for a, keep, w in zip(anchors, flags, weights)}
        for source, (flags, weights) in cells.items()}}


def test_trimmed_mean_matches_scipy_over_unmasked_anchors():
    rng = np.random.default_rng(0)
    anchors = [f"a{i}" for i in range(10)]
    keep = [True] * 7 + [False] * 3
    mask = _mask({"s": (keep, [1.0] * 10), GROUP_CELL: ([True] * 10, [1.0] * 10)}, anchors)
    scores = rng.uniform(0, 10, (6, 10))
    config = ReliabilityConfig(aggregate="trimmed_mean", trim_fraction=0.2)
    out = aggregate(scores, np.array(["s"] * 3 + ["other"] * 3), mask, config)
    expected_s = [trim_mean(row[:7], 0.2) for row in scores[:3]]
    expected_other = [trim_mean(row, 0.2) for row in scores[3:]]  # unknown source: the group cell
    assert np.allclose(out, expected_s + expected_other)


def test_weighted_mean_uses_cell_weights():
    mask = _mask({"s": ([True, True, False, True], [1.0, 3.0, 5.0, 0.0])})
    scores = np.array([[2.0, 6.0, 10.0, 9.0]])
    out = aggregate(scores, ["s"], mask, ReliabilityConfig(aggregate="weighted_mean"))
    assert out[0] == pytest.approx((2 * 1 + 6 * 3) / 4)
    # All usable weights zero: equal weights over the unmasked anchors, not a division by zero.
    zero = _mask({"s": ([True, True, False, False], [0.0, 0.0, 1.0, 1.0])})
    assert aggregate(scores, ["s"], zero, ReliabilityConfig(aggregate="weighted_mean"))[0] == pytest.approx(4.0)


@pytest.mark.parametrize("method", ["trimmed_mean", "weighted_mean"])
def test_all_masked_records_get_nan_and_are_counted(method, caplog):
    mask = _mask({"good": ([True, False, True, False], [1.0] * 4), "dead": ([False] * 4, [0.0] * 4)})
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [np.nan, 1.0, np.nan, 1.0], [4.0, 0.0, 8.0, 0.0]])
    sources = np.array(["good", "dead", "good", "good"])
    with caplog.at_level(logging.WARNING, logger="mira.reliability"):
        out = aggregate(scores, sources, mask, ReliabilityConfig(aggregate=method, trim_fraction=0.1))
    assert out[0] == pytest.approx(2.0) and out[3] == pytest.approx(6.0)
    assert np.isnan(out[1]) and np.isnan(out[2])  # every anchor masked / every usable score missing
    assert "2 of 4 records" in caplog.text
    assert masked_records(scores, sources, mask) == 2


def test_aggregate_rejects_misaligned_scores_and_handles_empty_input():
    mask = _mask({"s": ([True] * 4, [1.0] * 4)})
    with pytest.raises(ValueError):
        aggregate(np.zeros((2, 3)), ["s", "s"], mask, ReliabilityConfig())
    assert aggregate(np.zeros((0, 4)), np.array([], dtype=str), mask, ReliabilityConfig()).shape == (0,)
