"""Select out of core (mira.selection.out_of_core): the same bytes as select in memory, for every
mode, method, floor, cap, tie and unscored policy, with memory bounded by a chunk of records."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mira.core.config import ConfigError, EngineConfig, RunConfig, SelectionConfig, SourceConfig
from mira.run.rundir import RunDir
from mira.scoring.table import ScoreTable
from mira.selection import build, out_of_core
from mira.selection.build import select_corpus, selection_fingerprint
from mira.selection.decide import decide
from mira.selection.named import selection_dir, selection_name
from mira.selection.rankings import Ranking
from mira.selection.spill import RECORD, ascending_bits, merge_runs, sorted_records, write_records
from tests.engines.doubles import FormatModels, build_corpus, build_scored_run, make_config, prepare_run, tree_bytes


def assert_out_of_core_identical(config: RunConfig, run: RunDir, chunk_records: int = 5) -> dict[str, bytes]:
    """Select `config` in memory, then out of core in runs of `chunk_records`: every file of the
    selection folder must be byte-identical. Returns the files."""
    outputs = []
    for how in ("never", "always"):
        selection = config.selection.model_copy(update={"out_of_core": how, "out_of_core_chunk_records": chunk_records})
        select_corpus(config.model_copy(update={"selection": selection}), run)
        outputs.append(tree_bytes(selection_dir(run, selection_name(config))))
    memory, spilled = outputs
    assert sorted(memory) == sorted(spilled)
    assert [name for name in memory if memory[name] != spilled[name]] == []
    assert not list(selection_dir(run, "x").parent.glob(".*.spill"))  # the spill files are gone
    return memory


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config(scored, tmp_path, **selection) -> tuple[RunConfig, RunDir]:
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    return make_config(corpus, tmp_path / "run", selection=SelectionConfig(**selection)), RunDir(tmp_path / "run")


CASES = [
    {"mode": "group"}, {"mode": "source"}, {"mode": "global"},
    {"method": "random"}, {"method": "length", "mode": "global"},
    {"mode": "group", "floor": {"qa": 0.3, "docs": 0.4}, "cap": {"pycode": 0.2}},
    {"mode": "global", "floor": {"docs": 0.8}, "cap": {"qa": 0.1}},
    {"mode": "source", "floor": {"qa": 1.0}, "cap": {"docs": 0.0}},
    {"unscored": "reject", "floor": {"pycode": 0.7}},
    {"budget_tokens": 3000, "mode": "global"}, {"budget_fraction": 1.0}, {"budget_fraction": 0.01},
]


@pytest.mark.parametrize("selection", CASES, ids=[json.dumps(c, sort_keys=True) for c in CASES])
def test_out_of_core_writes_the_same_bytes_as_in_memory(scored, tmp_path, selection):
    config, run = _config(scored, tmp_path, output_formats=["jsonl", "parquet"], **selection)
    files = assert_out_of_core_identical(config, run)
    assert "summary.json" in files and any(name.startswith("_decisions/") for name in files)


def test_one_run_and_a_run_a_record_give_the_same_bytes_too(scored, tmp_path):
    config, run = _config(scored, tmp_path, mode="global", floor={"qa": 0.5}, cap={"pycode": 0.4})
    assert_out_of_core_identical(config, run, chunk_records=1)
    assert_out_of_core_identical(config, run, chunk_records=10_000)


def test_dsir_ranks_piece_by_piece_to_the_same_bytes(scored, tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["def f(x):\n    return x", "import os"]))
    config, run = _config(scored, tmp_path, method="dsir", dsir_target=str(target), mode="source")
    assert_out_of_core_identical(config, run)


def test_records_that_tie_on_their_score_are_ordered_the_same(tmp_path, monkeypatch):
    """Every record of a format scores the same (FormatModels): only the seeded id hash orders them."""
    from mira import api
    from mira.scoring import corpus_scores

    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", selection=SelectionConfig(mode="global", budget_fraction=0.4),
                         engine=EngineConfig(workers=1))
    run = prepare_run(config)
    monkeypatch.setattr(corpus_scores, "StageModels", FormatModels)
    api.run_one("score", config)
    files = assert_out_of_core_identical(config, run)
    assert json.loads(files["summary.json"])["units"]["all"]["cutoff"] is not None


# --- decisions on synthetic tables: ties, zero tokens, every unit kind -------------------------

SOURCES = ["a", "b", "c", "d", "e"]


def _table(seed: int, n: int) -> ScoreTable:
    rng = np.random.default_rng(seed)
    source_idx = np.sort(rng.integers(0, len(SOURCES), n)).astype(np.int32)  # corpus order: source by source
    group_idx = np.array([0, 1, 0, 1, -1], dtype=np.int32)[source_idx]  # "e": no group, all quarantined
    score = np.round(rng.normal(5, 1, n), 0)  # few distinct values: ties everywhere
    score[rng.random(n) < 0.05] = np.inf
    score[rng.random(n) < 0.03] = -0.0
    quarantined = (rng.random(n) < 0.05) | (group_idx < 0)
    score[quarantined | (rng.random(n) < 0.1)] = np.nan
    score[source_idx == 3] = np.nan  # every anchor masked: unscored
    tie = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    tie[:40] = tie[40:80]  # equal hashes too: the row decides
    tokens = rng.integers(0, 300, n)  # zero-token records included
    return ScoreTable(Path("."), SOURCES, ["g0", "g1"], source_idx, group_idx, tokens, score, quarantined, tie, [])


def _pieces(table: ScoreTable, size: int):
    for start in range(0, len(table.tokens), size):
        rows = slice(start, start + size)
        n = len(table.tokens[rows])
        shard = (SimpleNamespace(name=table.sources[int(table.source_idx[start])]), None, 0, n)
        yield start, ScoreTable(Path("."), table.sources, table.groups, table.source_idx[rows], table.group_idx[rows],
                                table.tokens[rows], table.score[rows], table.quarantined[rows], table.tie[rows],
                                [shard])


def _rank(mode: str):
    return lambda t: Ranking(t.score, ~t.quarantined & ~np.isnan(t.score), mode, "score")


SYNTHETIC = [{}, {"floor": {"a": 0.3, "d": 0.5}, "cap": {"b": 0.2, "d": 0.6}}, {"unscored": "reject"},
             {"floor": {"c": 0.9}, "budget_fraction": 0.2}, {"budget_tokens": 12_345}, {"budget_fraction": 1.0}]


@pytest.mark.parametrize("mode", ["group", "source", "global"])
@pytest.mark.parametrize("selection", SYNTHETIC, ids=[json.dumps(s, sort_keys=True) for s in SYNTHETIC])
def test_out_of_core_decides_every_record_as_decide_does(tmp_path, mode, selection):
    table = _table(seed=len(mode) * 7 + len(selection), n=2500)
    config = RunConfig(name="t", run_dir="unused", sources=[SourceConfig(name=s, path=f"{s}.jsonl") for s in SOURCES],
                       selection=SelectionConfig(mode=mode, out_of_core_chunk_records=97, **selection))
    expected = decide(config, table, _rank(mode)(table))
    got = out_of_core.decide_pieces(config, SOURCES, _pieces(table, 97), _rank(mode), tmp_path / "spill")
    parts = [d for _, _, d in got.shards()]
    assert got.units == expected.units
    assert np.array_equal(np.concatenate([d.reason for d in parts]), expected.reason)
    assert np.array_equal(np.concatenate([d.rank for d in parts]), expected.rank)
    assert np.array_equal(np.concatenate([d.kept for d in parts]), expected.kept)
    assert np.array_equal(np.concatenate([d.score for d in parts]), table.score, equal_nan=True)
    got.close()
    assert not (tmp_path / "spill").exists()


def test_a_budget_exactly_between_two_cuts_keeps_the_shorter_one_in_both(tmp_path):
    """10 ranked and 10 unscored records of 10 tokens, a 25% budget: 20 or 30 tokens are equally
    close to 25 (ranked and drawn alike); decide keeps 20, and so must out of core."""
    n = 20
    score = np.where(np.arange(n) < 10, np.arange(n) % 5, np.nan)  # ties too
    table = ScoreTable(Path("."), ["a"], ["g0"], np.zeros(n, np.int32), np.zeros(n, np.int32), np.full(n, 10),
                       score, np.zeros(n, bool), np.arange(n, dtype=np.uint64)[::-1].copy(), [])
    config = RunConfig(name="t", run_dir="unused", sources=[SourceConfig(name="a", path="a.jsonl")],
                       selection=SelectionConfig(budget_fraction=0.25, out_of_core_chunk_records=3))
    expected = decide(config, table, _rank("group")(table))
    assert expected.units["g0"]["kept_tokens"] == 20 + 20  # 2 ranked and 2 drawn records
    got = out_of_core.decide_pieces(config, ["a"], _pieces(table, 3), _rank("group"), tmp_path / "spill")
    assert got.units == expected.units
    assert np.array_equal(np.concatenate([d.reason for _, _, d in got.shards()]), expected.reason)


def test_an_eligible_record_with_a_nan_key_stops_out_of_core_too(tmp_path):
    table = _table(seed=1, n=200)
    config = RunConfig(name="t", run_dir="unused", sources=[SourceConfig(name=s, path=f"{s}.jsonl") for s in SOURCES])

    def broken(t):
        return Ranking(t.score, ~t.quarantined, "group", "score")  # NaN scores marked eligible

    with pytest.raises(RuntimeError, match="eligible record has a NaN key"):
        out_of_core.decide_pieces(config, SOURCES, _pieces(table, 50), broken, tmp_path / "spill")


# --- the sort -----------------------------------------------------------------------------------

def test_float_codes_sort_as_the_floats_do():
    values = np.array([np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 5.5, -5.5, 1e300, -1e300])
    codes = ascending_bits(values)
    assert [values[i] for i in np.argsort(codes, kind="stable")] == sorted(values.tolist())
    assert codes[2] == codes[3]  # -0.0 == 0.0: the tie-break decides, as in memory


def test_merging_sorted_runs_gives_one_sorted_file(tmp_path):
    rng = np.random.default_rng(0)
    records = np.zeros(5000, dtype=RECORD)
    records["k1"] = rng.integers(0, 3, 5000)
    records["k2"] = rng.integers(0, 4, 5000)  # many equal keys
    records["tie"] = rng.integers(0, 3, 5000)
    records["row"] = rng.permutation(5000)
    runs = []
    for i, start in enumerate(range(0, 5000, 700)):
        runs.append(tmp_path / f"run-{i}")
        write_records(runs[-1], sorted_records(records[start:start + 700]))
    assert merge_runs(runs, tmp_path / "merged", buffer_records=300) == 5000
    merged = np.fromfile(tmp_path / "merged", dtype=RECORD)
    expected = sorted(records.tolist(), key=lambda r: (r[0], r[1], r[2], r[3]))
    assert merged.tolist() == expected


# --- when it runs, and what is left after ---------------------------------------------------------

def test_above_the_configured_record_count_select_goes_out_of_core(scored, tmp_path, monkeypatch):
    calls = []
    real = build.decide_out_of_core
    monkeypatch.setattr(build, "decide_out_of_core", lambda *a: calls.append(a) or real(*a))
    config, run = _config(scored, tmp_path, in_memory_max_records=1_000)
    select_corpus(config, run)
    assert calls == []
    config, run = _config(scored, tmp_path, in_memory_max_records=10)
    select_corpus(config, run)
    assert len(calls) == 1
    config, run = _config(scored, tmp_path, in_memory_max_records=10, out_of_core="never")
    select_corpus(config, run)
    assert len(calls) == 1


def test_how_select_runs_is_not_part_of_its_fingerprint(scored, tmp_path):
    config, run = _config(scored, tmp_path)
    other, _ = _config(scored, tmp_path, out_of_core="always", in_memory_max_records=3, out_of_core_chunk_records=2)
    assert selection_fingerprint(config, run) == selection_fingerprint(other, run)
    changed, _ = _config(scored, tmp_path, budget_fraction=0.3)
    assert selection_fingerprint(changed, run) != selection_fingerprint(config, run)


@pytest.mark.parametrize("setting", [{"in_memory_max_records": -1}, {"out_of_core_chunk_records": 0},
                                     {"out_of_core": "sometimes"}])
def test_bad_out_of_core_settings_are_refused(setting):
    with pytest.raises(ValueError, match="|".join(setting)):
        SelectionConfig(**setting)


def test_a_crash_while_writing_leaves_no_spill_files_and_a_killed_runs_are_cleared(scored, tmp_path, monkeypatch):
    config, run = _config(scored, tmp_path, out_of_core="always", out_of_core_chunk_records=7)
    spill = selection_dir(run, selection_name(config)).with_name(f".{selection_name(config)}.spill")
    spill.mkdir(parents=True)
    (spill / "run-00003").write_bytes(b"left by a killed select")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_write_shard", crash)
    with pytest.raises(KeyboardInterrupt):
        select_corpus(config, run)
    assert not spill.exists() and not selection_dir(run, selection_name(config)).exists()
    monkeypatch.undo()
    select_corpus(config, run)  # and a rerun finishes
    assert (selection_dir(run, selection_name(config)) / "summary.json").exists() and not spill.exists()


def test_unknown_floor_sources_are_refused_out_of_core_too(tmp_path):
    table = _table(seed=2, n=100)
    config = RunConfig(name="t", run_dir="unused", sources=[SourceConfig(name=s, path=f"{s}.jsonl") for s in SOURCES],
                       selection=SelectionConfig(floor={"a": 0.2}))
    with pytest.raises(ConfigError, match="unknown sources: a"):
        out_of_core.decide_pieces(config, ["b", "c"], _pieces(table, 50), _rank("group"), tmp_path / "spill")


def test_the_dry_run_says_how_select_will_decide_and_what_disk_it_takes(scored, tmp_path):
    from mira.stages.select import plan

    config, run = _config(scored, tmp_path)
    assert any(line.startswith("decides in memory") for line in plan(config, run))
    config, run = _config(scored, tmp_path, out_of_core="always")
    line = next(line for line in plan(config, run) if line.startswith("decides out of core"))
    assert f"selection/.{selection_name(config)}.spill" in line and "GB" in line
