"""decide() on synthetic score tables: the order, ranks and cutoffs against a plain-Python reading
of the rule (key descending, then the seeded id hash, per unit; ineligible records never ranked)."""

from pathlib import Path

import numpy as np
import pytest

from mira.artifacts.selection import REASONS, DecisionReason
from mira.core.config import RunConfig, SelectionConfig, SourceConfig
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking
from mira.stages.select import decide

SOURCES = ["a", "b", "c", "d", "e"]


def _table(seed: int, n: int) -> ScoreTable:
    rng = np.random.default_rng(seed)
    source_idx = rng.integers(0, len(SOURCES), n).astype(np.int32)
    # Groups interleave in corpus order; "e" has no group (-1): every record of it is quarantined.
    group_idx = np.array([0, 1, 0, 1, -1], dtype=np.int32)[source_idx]
    score = np.round(rng.normal(5, 1, n), 1)  # rounded: many ties, decided by the id hash
    score[rng.random(n) < 0.05] = np.inf
    score[rng.random(n) < 0.05] = -np.inf
    quarantined = (rng.random(n) < 0.05) | (group_idx < 0)
    score[quarantined | (rng.random(n) < 0.1)] = np.nan
    score[source_idx == 3] = np.nan  # a source with every anchor masked: unscored
    tie = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    tie[:10] = tie[10:20]  # equal hashes too
    return ScoreTable(Path("."), SOURCES, ["g0", "g1"], source_idx, group_idx, rng.integers(1, 500, n),
                      score, quarantined, tie, [])


def _config(**selection) -> RunConfig:
    return RunConfig(name="t", run_dir="unused", sources=[SourceConfig(name=s, path=f"{s}.jsonl") for s in SOURCES],
                     selection=SelectionConfig(**selection))


def _ranking(table: ScoreTable, mode: str) -> Ranking:
    return Ranking(table.score, ~table.quarantined & ~np.isnan(table.score), mode, "score")


@pytest.mark.parametrize("mode", ["group", "source", "global"])
@pytest.mark.parametrize("selection", [{}, {"floor": {"a": 0.3}, "cap": {"b": 0.2}}, {"unscored": "reject"}])
def test_ranks_follow_key_then_hash_within_each_unit(mode, selection):
    table = _table(seed=len(mode) + len(selection), n=3000)
    rank_by = _ranking(table, mode)
    decisions = decide(_config(mode=mode, **selection), table, rank_by)
    unit_of = {"group": table.group_idx, "source": table.source_idx, "global": np.zeros(3000, int)}[mode]
    for unit in np.unique(unit_of):
        eligible = [i for i in range(3000) if unit_of[i] == unit and rank_by.eligible[i]]
        expected = sorted(eligible, key=lambda i: (-table.score[i], int(table.tie[i])))
        assert [int(decisions.rank[i]) for i in expected] == list(range(1, len(expected) + 1))
    assert (decisions.rank[~rank_by.eligible] == 0).all()
    assert not decisions.kept[table.quarantined].any()


@pytest.mark.parametrize("mode", ["group", "source"])
def test_kept_scored_records_are_a_best_first_prefix_closest_to_the_budget(mode):
    table = _table(seed=7, n=2000)
    rank_by = _ranking(table, mode)
    decisions = decide(_config(mode=mode, unscored="reject"), table, rank_by)
    unit_of = table.group_idx if mode == "group" else table.source_idx
    for name, unit in decisions.units.items():
        u = (["g0", "g1"] if mode == "group" else SOURCES).index(name)
        ranked = sorted((int(decisions.rank[i]), i) for i in np.flatnonzero((unit_of == u) & rank_by.eligible))
        kept = [decisions.kept[i] for _, i in ranked]
        assert kept == sorted(kept, reverse=True)  # a prefix of the ranking: no better record was passed over
        running = np.cumsum([table.tokens[i] for _, i in ranked])
        taken = sum(kept)
        if taken:  # the prefix that brings the kept tokens closest to the budget
            gaps = np.abs(running - unit["budget_tokens"])
            assert gaps[taken - 1] <= gaps.min() + 1e-6
            assert unit["cutoff"] == table.score[ranked[taken - 1][1]]


def test_an_eligible_record_with_a_nan_key_is_an_error_not_a_silent_order():
    table = _table(seed=3, n=200)
    key = table.score.copy()
    eligible = ~table.quarantined
    with pytest.raises(RuntimeError, match="NaN key"):
        decide(_config(), table, Ranking(key, eligible, "group", "score"))


def _kept_share(table: ScoreTable, decisions, source: str) -> float:
    members = table.source_idx == SOURCES.index(source)
    return float(table.tokens[members & decisions.kept].sum() / table.tokens[members].sum())


@pytest.mark.parametrize("mode", ["group", "source", "global"])
def test_floors_and_caps_bound_unscored_sources_too(mode):
    # "d" is unscored (every record falls back to the seeded random share), "a" partly (10% NaN):
    # a cap must cap and a floor must floor whatever ranks their records.
    table = _table(seed=11, n=3000)
    rank_by = _ranking(table, mode)
    plain = decide(_config(mode=mode), table, rank_by)
    assert 0.45 < _kept_share(table, plain, "d") < 0.55  # the budget's share, without bounds
    capped = decide(_config(mode=mode, cap={"d": 0.1, "a": 0.2}), table, rank_by)
    assert _kept_share(table, capped, "d") <= 0.1 and _kept_share(table, capped, "a") <= 0.2
    assert _kept_share(table, capped, "d") > 0.1 - 500 / table.tokens[table.source_idx == 3].sum()  # within a record
    floored = decide(_config(mode=mode, floor={"d": 0.9, "a": 0.8}), table, rank_by)
    assert _kept_share(table, floored, "d") >= 0.9 and _kept_share(table, floored, "a") >= 0.8
    for decisions in (capped, floored):  # the records it keeps are still its random share, in their order
        d = np.flatnonzero((table.source_idx == 3) & ~table.quarantined)
        order = d[np.argsort(table.tie[d], kind="stable")]
        kept = decisions.kept[order].tolist()
        assert kept == sorted(kept, reverse=True)
        assert {REASONS[r] for r in decisions.reason[d]} <= {DecisionReason.UNSCORED_KEPT,
                                                             DecisionReason.UNSCORED_BELOW}


def test_a_cap_frees_budget_for_the_unit_and_a_floor_takes_from_it():
    table = _table(seed=12, n=3000)
    rank_by = _ranking(table, "global")
    plain, capped, floored = (decide(_config(mode="global", **bounds), table, rank_by)
                              for bounds in ({}, {"cap": {"d": 0.1}}, {"floor": {"d": 0.9}}))
    scored = ~np.isnan(table.score) & ~table.quarantined

    def scored_kept(decisions):
        return int(table.tokens[scored & decisions.kept].sum())

    assert scored_kept(capped) > scored_kept(plain) > scored_kept(floored)
    for decisions in (capped, floored):  # the unit still meets its budget within a record
        assert abs(decisions.units["all"]["kept_tokens"] - decisions.units["all"]["budget_tokens"]) < 500


def test_an_unmet_floor_is_said(caplog):
    # selection.unscored: reject leaves an unscored source nothing to keep: its floor cannot hold.
    table = _table(seed=13, n=1000)
    with caplog.at_level("WARNING", logger="mira.selection.decide"):
        decisions = decide(_config(floor={"d": 0.5}, unscored="reject"), table, _ranking(table, "group"))
    assert _kept_share(table, decisions, "d") == 0
    assert "selection.floor for d (50%) not met: 0.0% of its tokens kept" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mira.selection.decide"):
        decide(_config(floor={"d": 0.5}), table, _ranking(table, "group"))
    assert "not met" not in caplog.text
