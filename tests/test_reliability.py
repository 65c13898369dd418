import logging
import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from mira.core.config import ReliabilityConfig
from mira.scoring.reliability import GROUP_CELL, aggregate, build_mask, masked_records


def _metrics():
    good = {"mae": 0.8, "spearman": 0.7, "n": 40}
    return {
        "anchors": ["good", "noisy", "biased"],
        "cells": {
            "big": {"good": good, "noisy": {"mae": 2.4, "spearman": 0.05, "n": 40},
                    "biased": {"mae": 3.5, "spearman": 0.6, "n": 40}},
            "tiny": {"good": {"mae": 5.0, "spearman": -1.0, "n": 2}, "noisy": {"mae": 0.1, "spearman": 1.0, "n": 2},
                     "biased": {"mae": 0.1, "spearman": 1.0, "n": 2}},
        },
        # Pooled over sources: never used by the mask.
        "overall": {"good": {"mae": 1.0, "spearman": 0.9, "n": 42}, "noisy": {"mae": 2.3, "spearman": 0.9, "n": 42},
                    "biased": {"mae": 3.0, "spearman": 0.65, "n": 42}},
    }


def test_mask_removes_noisy_and_biased_cells_with_reasons():
    mask = build_mask(_metrics(), ReliabilityConfig(max_mae=2.5, min_spearman=0.2, min_support=10))
    big = mask["cells"]["big"]
    assert not big["good"]["masked"] and big["good"]["reason"] is None and big["good"]["status"] == "reliable"
    assert big["noisy"]["masked"] and "Spearman 0.05, 90% lower bound" in big["noisy"]["reason"]
    assert big["biased"]["masked"] and "MAE 3.50 > 2.50 (max_mae)" in big["biased"]["reason"]
    assert big["good"]["weight"] == pytest.approx(0.7 / 1.8)
    assert big["noisy"]["weight"] == 0.0


def test_small_sources_fall_back_to_the_within_source_group_cell_and_say_so():
    mask = build_mask(_metrics(), ReliabilityConfig(min_support=10))
    tiny = mask["cells"]["tiny"]
    # Its own cells (n=2) would say the opposite; the group cell decides, from within-source
    # statistics: only "big" has enough rows to carry Fisher weight, so the pooled 0.9 of "noisy"
    # (in metrics["overall"]) does not rescue it.
    assert not tiny["good"]["masked"] and tiny["good"]["basis"] == GROUP_CELL and "group cell" in tiny["good"]["note"]
    assert tiny["noisy"]["masked"] and "group cell" in tiny["noisy"]["reason"]
    assert mask["cells"][GROUP_CELL]["noisy"]["spearman"] == pytest.approx(0.05, abs=1e-3)
    assert mask["summary"]["fallback_to_group"] == 3


def test_a_perfect_student_on_two_rows_is_undecidable_not_undefined():
    metrics = {"anchors": ["a"], "cells": {"s": {"a": {"mae": 0.0, "spearman": None, "n": 2}}}}
    mask = build_mask(metrics, ReliabilityConfig())
    for cell in (mask["cells"]["s"]["a"], mask["cells"][GROUP_CELL]["a"]):
        assert cell["masked"] and cell["status"] == "undecidable"
        assert "undecidable for lack of labels (n=2, needs >= 10)" in cell["reason"]
    assert mask["summary"]["undecidable"] == 1


def test_lower_bound_matches_fisher_z_and_grows_with_n():
    from scipy.stats import norm

    from mira.scoring.agreement import spearman_lower_bound

    want = math.tanh(math.atanh(0.6) - norm.ppf(0.9) * math.sqrt(1.06 / 37))
    assert spearman_lower_bound(0.6, 37, 0.9) == pytest.approx(want)
    bounds = [spearman_lower_bound(0.6, n - 3, 0.9) for n in (5, 10, 40, 400)]
    assert bounds == sorted(bounds) and bounds[-1] < 0.6 < 0.6 + 1e-9
    assert spearman_lower_bound(1.0, 1, 0.9) < 1.0 and spearman_lower_bound(0.5, 0, 0.9) == -1.0


def test_group_cell_never_pools_across_sources():
    """A student that only knows the source: perfect pooled ranking, none within any source."""
    from mira.scoring.reliability import combine_within_sources
    from mira.students import evaluate

    rng = np.random.default_rng(0)
    sources = np.repeat([f"s{i}" for i in range(5)], 12)
    source_mean = np.repeat(np.arange(5) * 2.0, 12)
    teacher = source_mean + rng.normal(0, 0.8, len(sources))
    student = source_mean + rng.normal(0, 0.05, len(sources))  # source identity plus noise
    metrics = {"anchors": ["a"], **evaluate(student[:, None], teacher[:, None], sources, ["a"])}
    assert metrics["overall"]["a"]["spearman"] > 0.9  # pooled: looks excellent
    combined = combine_within_sources([metrics["cells"][s]["a"] for s in metrics["cells"]])
    assert abs(combined["spearman"]) < 0.35 and combined["sources"] == 5 and combined["weight"] == 5 * 9
    cell = build_mask(metrics, ReliabilityConfig(min_support=20, max_mae=5))["cells"][GROUP_CELL]["a"]
    assert cell["masked"] and cell["status"] == "unreliable"


def test_mae_limit_follows_the_teacher_self_consistency_when_measured():
    metrics = {"anchors": ["a"], "teacher_consistency": {"mae": 0.5},
               "cells": {"s": {"a": {"mae": 1.8, "spearman": 0.9, "n": 40}}}}
    cell = build_mask(metrics, ReliabilityConfig(mae_margin=1.0))["cells"]["s"]["a"]
    assert cell["masked"] and "MAE 1.80 > 1.50 (teacher self-consistency MAE 0.50 + margin 1.0)" in cell["reason"]
    metrics["teacher_consistency"] = {"mae": None}
    assert not build_mask(metrics, ReliabilityConfig(mae_margin=1.0))["cells"]["s"]["a"]["masked"]


@pytest.mark.parametrize(("usable", "fraction", "cut"), [
    (3, 0.1, 0), (4, 0.1, 0), (5, 0.1, 1), (9, 0.1, 1), (10, 0.1, 1), (20, 0.1, 2), (5, 0.0, 0), (7, 0.2, 1),
    (10, 0.45, 4)])
def test_trim_count_cuts_from_few_anchors_and_keeps_one(usable, fraction, cut):
    from mira.scoring.reliability import trim_count

    config = ReliabilityConfig(trim_fraction=fraction, trim_min_anchors=5)
    assert trim_count(np.array([usable]), config)[0] == cut


def test_trimmed_mean_trims_with_five_anchors():
    mask = _mask({"s": ([True] * 5, [1.0] * 5)}, ["a", "b", "c", "d", "e"])
    out = aggregate(np.array([[0.0, 5.0, 6.0, 7.0, 10.0]]), ["s"], mask, ReliabilityConfig())
    assert out[0] == pytest.approx(6.0)  # 0 and 10 cut


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
    with caplog.at_level(logging.WARNING, logger="mira.scoring.reliability"):
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


def test_current_mask_follows_the_current_thresholds_without_a_student(tmp_path):
    from mira.core.errors import StageNotReady
    from mira.io.files import atomic_write_json
    from mira.run.rundir import RunDir
    from mira.scoring.reliability import current_mask, mask_inputs, write_mask

    run = RunDir(tmp_path)
    distilled = ReliabilityConfig(min_spearman=0.2, min_support=10)
    atomic_write_json(run.path("students", "g0", "metrics.json"), _metrics())
    write_mask(run, "g0", build_mask(_metrics(), distilled))
    assert current_mask(run, "g0", distilled) == build_mask(_metrics(), distilled)  # mask.json as written
    stricter = ReliabilityConfig(min_spearman=0.95, min_support=10)
    rebuilt = current_mask(run, "g0", stricter)
    assert rebuilt == build_mask(_metrics(), stricter)
    assert rebuilt["summary"]["masked"] > build_mask(_metrics(), distilled)["summary"]["masked"]
    assert [p.name for p in mask_inputs(run)] == ["mask.json", "metrics.json"]

    # A mask written by hand (no thresholds) is taken as it is; no mask and no metrics: one line.
    write_mask(run, "g1", {"anchors": ["a"], "cells": {"*": {"a": {"masked": False, "weight": 1.0}}}})
    assert current_mask(run, "g1", stricter)["cells"]["*"]["a"]["masked"] is False
    with pytest.raises(StageNotReady, match="rerun `mira distill`"):
        current_mask(run, "g2", stricter)


def test_excluded_cells_are_masked_with_a_reason_and_nothing_else_changes():
    from mira.scoring.reliability import aggregate, excluded

    ok = {"masked": False, "status": "reliable", "reason": None, "weight": 0.5}
    mask = {"anchors": ["a00", "a01"], "cells": {"*": {"a00": ok, "a01": ok}, "s1": {"a00": ok, "a01": ok}}}
    assert excluded(mask, ReliabilityConfig()) is mask
    out = excluded(mask, ReliabilityConfig(exclude=["s1/a01", "s2/*"]))
    assert out["cells"]["s1"]["a00"] == ok and out["cells"]["*"] == mask["cells"]["*"]
    assert out["cells"]["s1"]["a01"]["masked"] and "reliability.exclude (s1/a01)" in out["cells"]["s1"]["a01"]["reason"]
    # s2 had no cells of its own (it used the group cell): now it has, both excluded.
    assert all(c["masked"] for c in out["cells"]["s2"].values())
    assert not mask["cells"]["s1"]["a01"]["masked"]  # the input is not modified
    scores = np.array([[2.0, 8.0], [2.0, 8.0], [2.0, 8.0]])
    agg = aggregate(scores, np.array(["s1", "s2", "s3"], dtype=object), out, ReliabilityConfig())
    assert agg[0] == 2.0 and np.isnan(agg[1]) and agg[2] == 5.0
    every = excluded(mask, ReliabilityConfig(exclude=["*/a00"]))
    assert all(by["a00"]["masked"] and not by["a01"]["masked"] for by in every["cells"].values())


def test_exclude_entries_are_checked():
    import pydantic

    for bad in (["stdlib_code"], ["a/b/c"], ["/a00"]):
        with pytest.raises(pydantic.ValidationError, match="source/anchor"):
            ReliabilityConfig(exclude=bad)
