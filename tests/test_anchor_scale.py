"""reliability.anchor_scale: a group's anchors on one scale before averaging (mira.scoring.anchor_scale)."""

import hashlib
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mira import api
from mira.core.config import ReliabilityConfig, SelectionConfig
from mira.run.rundir import RunDir
from mira.scoring.anchor_scale import anchor_stats, scaled, with_scale
from mira.scoring.reliability import aggregate
from mira.selection.named import current_selection
from tests.engines.doubles import build_scored_run, make_config


def _score_file(path, rows):
    table = pa.table({"quarantine": pa.array([r.get("quarantine") for r in rows], pa.string()),
                      "x": pa.array([r["x"] for r in rows], pa.float64()),
                      "y": pa.array([r["y"] for r in rows], pa.float64())})
    pq.write_table(table, path)
    return path


def test_stats_leave_out_quarantined_rows_and_missing_scores(tmp_path):
    first = _score_file(tmp_path / "a.parquet", [{"x": 1.0, "y": 5.0}, {"x": 3.0, "y": 5.0},
                                                 {"x": 100.0, "y": 100.0, "quarantine": "empty record"}])
    second = _score_file(tmp_path / "b.parquet", [{"x": 5.0, "y": float("nan")}])
    stats = anchor_stats([first, second], ["x", "y"])
    assert stats["records"] == [3, 2]
    assert stats["mean"] == pytest.approx([3.0, 5.0]) and stats["std"] == pytest.approx([np.std([1, 3, 5]), 0.0])
    assert stats["center"] == pytest.approx(4.0) and stats["spread"] == pytest.approx(np.std([1, 3, 5]) / 2)


def test_scaled_scores_share_location_and_spread_and_keep_each_anchors_order():
    rng = np.random.default_rng(0)
    scores = np.column_stack([rng.normal(7, 0.2, 500), rng.normal(3, 2.0, 500)])
    stats = {"anchors": ["x", "y"], "mean": scores.mean(0).tolist(), "std": scores.std(0).tolist(),
             "center": 5.0, "spread": 1.1}
    out = scaled(scores, stats)
    assert out.mean(0) == pytest.approx([5.0, 5.0]) and out.std(0) == pytest.approx([1.1, 1.1])
    for j in range(2):
        assert (np.argsort(out[:, j]) == np.argsort(scores[:, j])).all()
    # A constant anchor carries no order (the center); an anchor without statistics stays missing.
    stats = {**stats, "std": [0.0, 1.0], "mean": [7.0, float("nan")]}
    out = scaled(scores[:3], stats)
    assert out[:, 0] == pytest.approx([5.0] * 3) and np.isnan(out[:, 1]).all()


def test_a_mask_for_other_anchors_is_refused():
    with pytest.raises(ValueError, match="other anchors"):
        with_scale({"anchors": ["x", "y"], "cells": {}}, {"anchors": ["y", "x"]})


def test_aggregate_of_sources_with_different_reliable_anchors_no_longer_carries_the_anchor_offset():
    # Two sources of the same quality; each is reliable on another anchor, and the anchors' students
    # sit 4 points apart. Raw, every record of the second source ranks below every record of the first.
    rng = np.random.default_rng(1)
    quality = rng.uniform(4, 6, 400)
    scores = np.column_stack([quality + 2, quality - 2])
    sources = np.array(["a"] * 200 + ["b"] * 200, dtype=object)
    cell = {"masked": False, "weight": 1.0}
    off = {"masked": True, "weight": 0.0}
    mask = {"anchors": ["x", "y"], "cells": {"a": {"x": cell, "y": off}, "b": {"x": off, "y": cell}}}
    raw = aggregate(scores, sources, mask, ReliabilityConfig())
    assert raw[:200].min() > raw[200:].max()
    stats = {"anchors": ["x", "y"], "mean": scores.mean(0).tolist(), "std": scores.std(0).tolist(),
             "center": 5.0, "spread": 1.0}
    aligned = aggregate(scores, sources, with_scale(mask, stats), ReliabilityConfig())
    assert aligned == pytest.approx(5.0 + (quality - quality.mean()) / quality.std())


# --- through select, on a scored run -----------------------------------------------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _offset_run(scored, tmp_path):
    """The scored run with group g1 (docs, qa) rewritten as the 72-label demo-full run had it:
    docs reliable only on a00, qa only on a01, and a01's student 4 points below a00's on the same records."""
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    for path in sorted(run.path("scores").glob("*/*.parquet")):
        table = pq.read_table(path)
        if "g1" not in table.column("group").to_pylist():
            continue
        quality = np.array([4 + 2 * int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) / 16**8
                            for i in table.column("id").to_pylist()])
        ok = np.array(table.column("quarantine").is_null().to_pylist())
        for name, value in (("a00", quality + 2), ("a01", quality - 2)):
            column = pa.array(np.where(ok, value, np.nan), pa.float64())
            table = table.set_column(table.column_names.index(name), name, column)
        pq.write_table(table, path)
    mask_path = run.path("students", "g1", "mask.json")
    mask = json.loads(mask_path.read_text())
    mask["cells"]["docs"]["a01"] = {"masked": True, "reason": "test: unreliable", "weight": 0.0}
    mask["cells"]["qa"] = {"a00": {"masked": True, "reason": "test: unreliable", "weight": 0.0},
                           "a01": {"masked": False, "reason": None, "weight": 1.0}}
    mask_path.write_text(json.dumps(mask))
    return corpus, run


def _kept_shares(corpus, run, scale):
    config = make_config(corpus, run.root, selection=SelectionConfig(budget=0.5, mode="group"),
                         reliability=ReliabilityConfig(anchor_scale=scale))
    api.run_one("select", config)
    summary = json.loads((current_selection(run) / "summary.json").read_text())
    return {s: c["kept_tokens"] / c["tokens_in"] for s, c in summary["sources"].items()}


def test_group_scale_keeps_each_source_near_the_budget_where_raw_drops_one(scored, tmp_path):
    corpus, run = _offset_run(scored, tmp_path)
    raw = _kept_shares(corpus, run, "raw")
    assert raw["qa"] == 0.0 and raw["docs"] > 0.5  # the defect: the anchor offset decides the cut
    group = _kept_shares(corpus, run, "group")
    assert 0.2 < group["qa"] < 0.8 and 0.2 < group["docs"] < 0.8
    # The report computes the aggregate as select does, under the same option.
    from mira.report.artifacts import Artifacts

    artifacts = Artifacts(run)
    path = next(p for p in sorted(run.path("scores").glob("qa/*.parquet")))
    table = pq.read_table(path)
    ok = np.array(table.column("quarantine").is_null().to_pylist())
    expected = aggregate(np.column_stack([table.column(a).to_numpy() for a in ("a00", "a01")])[ok],
                         np.array(table.column("source").to_pylist(), dtype=object)[ok],
                         artifacts.current_mask("g1"), ReliabilityConfig(anchor_scale="group"))
    assert artifacts.current_mask("g1")["scale"]["anchors"] == ["a00", "a01"]
    assert artifacts.aggregates(table)[ok] == pytest.approx(expected)
