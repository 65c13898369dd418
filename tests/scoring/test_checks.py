import numpy as np
import pytest

from mira.core.config import ReliabilityConfig
from mira.scoring.agreement import judge_aggregate, within_source_agreement
from mira.scoring.checks import aggregate_check, confirmation_rows, length_crossfit
from mira.scoring.reliability import build_mask


def test_a_student_that_only_knows_the_source_scores_zero_within_sources():
    sources = ["a"] * 10 + ["b"] * 10
    target = np.r_[np.arange(10) + 20.0, np.arange(10)[::-1] + 0.0]
    by_source = np.r_[np.full(10, 9.0), np.full(10, 1.0)]  # ranks the group perfectly, nothing within
    rho, n_eff = within_source_agreement(by_source, target, sources)
    assert rho == 0.0 and n_eff == 18
    rho, _ = within_source_agreement(target + 0.1, target, sources)
    assert rho == pytest.approx(1.0)
    rho, _ = within_source_agreement(-target, target, sources)
    assert rho == pytest.approx(-1.0)
    assert within_source_agreement(np.ones(3), np.ones(3), ["a", "b", "c"]) == (None, 0)  # one row a source


def test_the_aggregate_is_judged_by_its_lower_bound_the_length_guard_and_the_confirmation():
    config = ReliabilityConfig()
    good = {"spearman": 0.6, "n_eff": 30, "mae": 0.3, "length_spearman": 0.1}
    assert judge_aggregate(good, config)["status"] == "reliable"
    assert judge_aggregate({**good, "spearman": 0.2}, config)["status"] == "unreliable"  # bound below 0 at n=30
    verdict = judge_aggregate({**good, "length_spearman": 0.7}, config)
    assert verdict["status"] == "unreliable" and "length" in verdict["reason"]
    verdict = judge_aggregate({**good, "confirmation": {"rows": 10, "n_eff": 8, "spearman": -0.3}}, config)
    assert verdict["status"] == "unreliable" and "never saw" in verdict["reason"]
    # The demo's code group on 2026-12-08: 0.37 cross-fitted on 43 rows, -0.12 on an 11-row slice.
    # Not below the cross-fit beyond noise (z 1.27 < 1.28): the slice's rows join the bound instead.
    demo = {**good, "spearman": 0.3658, "n_eff": 43, "confirmation": {"rows": 14, "n_eff": 11, "spearman": -0.1238}}
    verdict = judge_aggregate(demo, config)
    assert verdict["status"] == "reliable" and 0.05 < verdict["lower"] < judge_aggregate(
        {**demo, "confirmation": None}, config)["lower"]
    # A slice that agrees raises the bound; one that pulls the pooled bound below 0 masks, without a veto.
    assert judge_aggregate({**demo, "confirmation": {"rows": 14, "n_eff": 11, "spearman": 0.5}},
                           config)["lower"] > verdict["lower"]
    pooled = judge_aggregate({**demo, "spearman": 0.2, "confirmation": {"rows": 14, "n_eff": 11, "spearman": -0.1}},
                             config)
    assert pooled["status"] == "unreliable" and "pooled" in pooled["reason"] and "never saw" not in pooled["reason"]
    # Below min_confirmation but not below the cross-fit beyond noise: no veto on noise.
    noisy = {**good, "spearman": 0.3, "n_eff": 60, "confirmation": {"rows": 12, "n_eff": 9, "spearman": -0.05}}
    assert judge_aggregate(noisy, config)["status"] == "reliable"
    # Too few confirmation rows within sources to say anything: shown, not a verdict.
    assert judge_aggregate({**good, "confirmation": {"rows": 5, "n_eff": 2, "spearman": -1.0}},
                           config)["status"] == "reliable"
    assert judge_aggregate({**good, "n_eff": 3}, config)["status"] == "undecidable"
    assert judge_aggregate(None, config)["status"] == "undecidable"
    assert judge_aggregate({**good, "length_spearman": 0.7},
                           config.model_copy(update={"length_guard": False}))["status"] == "reliable"


def test_sources_below_cell_rows_follow_the_aggregate_and_larger_ones_their_own_cells():
    cells = {"small": {"a00": {"n": 8, "spearman": -0.9, "mae": 0.2}, "a01": {"n": 8, "spearman": 0.1, "mae": 0.2}},
             "big": {"a00": {"n": 40, "spearman": 0.7, "mae": 0.2}, "a01": {"n": 40, "spearman": -0.2, "mae": 0.2}}}
    metrics = {"anchors": ["a00", "a01"], "cells": cells,
               "aggregate": {"spearman": 0.5, "n_eff": 46, "mae": 0.3, "length_spearman": 0.0}}
    mask = build_mask(metrics, ReliabilityConfig())
    small = mask["cells"]["small"]
    assert not small["a00"]["masked"] and not small["a01"]["masked"] and small["a00"]["basis"] == "aggregate"
    assert not mask["cells"]["big"]["a00"]["masked"] and mask["cells"]["big"]["a01"]["masked"]
    assert mask["cells"]["*"]["a00"]["basis"] == "aggregate" and mask["aggregate"]["status"] == "reliable"
    metrics["aggregate"]["spearman"] = -0.1
    mask = build_mask(metrics, ReliabilityConfig())
    assert mask["cells"]["small"]["a00"]["masked"] and "aggregate" in mask["cells"]["small"]["a00"]["note"]


def test_confirmation_rows_are_per_source_seeded_and_leave_rows_to_train():
    ids = [f"r{i}" for i in range(24)]
    sources = ["a"] * 16 + ["b"] * 5 + ["c"] * 3
    rows = confirmation_rows(ids, sources, 0.25, 16, seed=0)
    picked = [sources[i] for i in rows]
    assert picked.count("a") == 4 and picked.count("b") == 1 and picked.count("c") == 1
    assert np.array_equal(rows, confirmation_rows(ids, sources, 0.25, 16, seed=0))
    assert not np.array_equal(rows, confirmation_rows(ids, sources, 0.25, 16, seed=1))
    assert confirmation_rows(ids[:10], sources[:10], 0.25, 16, seed=0).size == 0  # too few labels: none
    # A slice that could not decide (3 of its 6 rows within sources < 8 judged) is not set aside:
    # its labels train and check instead.
    assert confirmation_rows(ids, sources, 0.25, 16, seed=0, min_judged=8).size == 0
    assert np.array_equal(confirmation_rows(ids, sources, 0.25, 16, seed=0, min_judged=3), rows)
    many = confirmation_rows([f"r{i}" for i in range(40)], ["a"] * 40, 0.25, 16, seed=0, min_judged=8)
    assert many.size == 10  # 9 rows within its one source: judged


def test_the_length_student_is_cross_fitted_and_skips_the_confirmation_slice():
    tokens = np.arange(1, 13) * 100.0
    target = np.log1p(tokens)
    fold = np.array([0, 1, 2] * 3 + [-1] * 3)
    pred = length_crossfit(tokens, target, fold)
    assert np.isnan(pred[-3:]).all() and np.allclose(pred[:9], target[:9])
    check = aggregate_check(pred[:, None], target[:, None], ["s"] * 12, np.arange(9), pred)
    assert check["spearman"] == pytest.approx(1.0) and check["length_spearman"] == pytest.approx(1.0)
    assert check["rows"] == 9 and check["sources"] == 1
