"""mira.Scorer: a finished run's students on records of the caller's own pipeline.

Scored through the same function as `mira score` (mira.scoring.apply.score_batch) and aggregated
with the masks select ranks by, so the records of a source get exactly the numbers of its score
files. These tests use the stand-in student of tests/engines/doubles (`qa` is masked there);
tests/scoring/test_scorer_pipeline.py checks the same on a run with trained students.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mira
from mira.core.config import EngineConfig
from mira.core.errors import ScorerError, StageNotReady
from mira.corpus.sources import source_infos
from mira.io.readers import iter_shard
from mira.run.rundir import RunDir
from mira.scoring.table import load_score_table
from tests.engines.doubles import ANCHORS, DoubleModels, build_scored_run, make_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(source configs, run path) of the test corpus scored with the stand-in student."""
    return build_scored_run(tmp_path_factory.mktemp("scored"))


@pytest.fixture(scope="module")
def scorer(scored):
    return mira.Scorer.load(scored[1], models=DoubleModels())


def source_records(run: Path, source: str) -> list[dict | None]:
    """Every item of the source as ingest reads it (None where it is unreadable: no dict to pass)."""
    config = mira.Scorer.load(run, models=DoubleModels()).config
    info = next(i for i in source_infos(RunDir(run)) if i.name == source)
    return [raw.data for shard in info.shards for raw in iter_shard(shard, config.ingest.max_record_bytes)]


def score_file_rows(run: Path, source: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((run / "scores" / source).glob("*.parquet")))


def select_aggregate(run: Path, source: str) -> np.ndarray:
    """The aggregate select ranks the source's records by (mira.scoring.table)."""
    r = RunDir(run)
    config = mira.Scorer.load(run, models=DoubleModels()).config
    table = load_score_table(config, r, source_infos(r))
    index = table.sources.index(source)
    return table.score[table.source_idx == index]


@pytest.mark.parametrize("source", ["pycode", "docs", "qa"])
def test_the_records_of_a_source_get_exactly_the_scores_of_its_score_files(scored, scorer, source):
    run = scored[1]
    records = source_records(run, source)
    readable = [i for i, r in enumerate(records) if r is not None]
    result = scorer.score([records[i] for i in readable], source=source)
    expected = score_file_rows(run, source).take(readable)
    group = expected.column("group")[0].as_py()
    assert result.num_rows == len(readable)
    assert result.column("group").to_pylist() == expected.column("group").to_pylist()
    assert result.column("tokens").to_pylist() == expected.column("tokens").to_pylist()
    assert result.column("quarantine").to_pylist() == expected.column("quarantine").to_pylist()
    for anchor in ANCHORS[group]:  # bit for bit, NaN where the score file has NaN
        assert result.column(f"{group}/{anchor}").to_numpy().tobytes() == expected.column(anchor).to_numpy().tobytes()
    for other in set(ANCHORS) - {group}:  # another group's anchors say nothing about these records
        assert all(math.isnan(v) for a in ANCHORS[other] for v in result.column(f"{other}/{a}").to_pylist())
    aggregate = select_aggregate(run, source)[readable]
    assert result.column("score").to_numpy().tobytes() == aggregate.tobytes()
    # Ids as in the score file (a record without an id field, or a quarantined one, is named by its position).
    with_ids = [i for i, r in enumerate(records[j] for j in readable)
                if "id" in r and expected["quarantine"][i].as_py() is None]
    assert [result.column("id")[i].as_py() for i in with_ids] == [expected.column("id")[i].as_py() for i in with_ids]
    if source == "qa":  # every anchor of qa is masked: no aggregate, never a zero
        assert np.isnan(result.column("score").to_numpy()).all()
    else:
        assert np.isfinite(result.column("score").to_numpy()[[q is None for q in expected.column("quarantine")
                                                               .to_pylist()]]).all()


def test_records_of_several_sources_in_one_call_name_their_source_and_an_arrow_table_scores_alike(scored, scorer):
    run = scored[1]
    docs = [r for r in source_records(run, "docs") if r is not None]
    code = [r for r in source_records(run, "pycode") if r is not None]
    mixed = [{**docs[0], "mira_source": "docs"}, {**code[0], "mira_source": "pycode"},
             {**docs[1], "mira_source": "docs"}]
    result = scorer.score(mixed)
    assert result.column("source").to_pylist() == ["docs", "pycode", "docs"]
    assert result.column("group").to_pylist() == ["g1", "g0", "g1"]
    alone = scorer.score([docs[0], docs[1]], source="docs")
    assert result.take([0, 2]).column("score").to_pylist() == alone.column("score").to_pylist()
    assert result.column("g0/a00")[1].as_py() == scorer.score([code[0]], source="pycode").column("g0/a00")[0].as_py()
    # The source field is not part of the record: scores are the same with or without it.
    assert result.column("tokens")[1].as_py() == scorer.score([code[0]], source="pycode").column("tokens")[0].as_py()
    # A table has every column in every row (None where a record lacks the field), as a Parquet source has.
    table = pa.Table.from_pylist(mixed, schema=pa.schema([(k, pa.string()) for k in ("id", "text", "path",
                                                                                      "mira_source")]))
    for same in (scorer.score(table), scorer.score(table.to_batches()[0]), scorer.score(iter(mixed))):
        assert same.schema == result.schema and repr(same.to_pylist()) == repr(result.to_pylist())  # NaN too
    assert scorer.score([]).num_rows == 0 and scorer.score([]).schema == scorer.schema()
    assert scorer.anchors == ANCHORS


def test_a_record_its_format_cannot_read_is_quarantined_as_mira_score_does_or_raises_on_request(scorer):
    records = [{"id": "ok", "text": "A docstring that says what the function returns.\n"},
               {"id": "empty", "text": ""}, {"id": "notext", "title": "no body"},
               {"id": "typed", "text": ["a", "list"]}]
    result = scorer.score(records, source="docs")
    assert result.column("quarantine").to_pylist() == [
        None, "empty record (field 'text' is empty)",
        "missing text field (one of: text, content, body, document, markdown)",
        "field 'text' must be text, got a list"]
    assert result.column("tokens").to_pylist()[1:] == [0, 0, 0] and result.column("tokens")[0].as_py() > 0
    assert np.isnan(result.column("score").to_numpy()[1:]).all() and np.isfinite(result.column("score")[0].as_py())
    # A record that cannot be scored keeps its own id (else it is named by its position in the call).
    assert result.column("id").to_pylist() == ["ok", "empty", "notext", "typed"]
    assert scorer.score([{"text": ""}], source="docs").column("id").to_pylist() == ["docs/row 0"]
    with pytest.raises(ScorerError, match=r"^record 1 \(source docs\): empty record \(field 'text' is empty\)$"):
        scorer.score(records, source="docs", on_invalid="raise")


@pytest.mark.parametrize(("records", "kwargs", "message"), [
    ([{"text": "x"}], {}, r"^record 0 has no 'mira_source' field: name its source with source=, or add the field$"),
    ([{"text": "x", "mira_source": 3}], {}, r"^record 0: 'mira_source' must be a source name \(text\), got int$"),
    ([{"text": "x"}], {"source": "web"}, r"^unknown source 'web': the run's sources are pycode, docs, qa$"),
    ([{"text": "x", "origin": "nope"}], {"source_field": "origin"}, r"^unknown source 'nope'"),
    (["just text"], {"source": "docs"}, r"^record 0 is str, not a dict of fields$"),
    ([{"text": "x"}, 7], {"source": "docs"}, r"^record 1 is int, not a dict of fields$"),
    ({"text": ["x"]}, {"source": "docs"}, r"batch of columns\?\): in Ray Data use map_batches"),
    ("text", {"source": "docs"}, r"^records must be dicts or a pyarrow Table, got str$"),
    ([{"text": "x"}], {"source": "docs", "on_invalid": "drop"},
     r"^on_invalid must be 'quarantine' or 'raise', got 'drop'$"),
    (None, {"source": "docs"}, r"^records must be dicts or a pyarrow Table, got NoneType$"),
])
def test_bad_input_is_a_one_line_scorer_error(scorer, records, kwargs, message):
    with pytest.raises(ScorerError, match=message) as info:
        scorer.score(records, **kwargs)
    assert "\n" not in str(info.value)


def test_a_run_that_is_not_finished_or_no_run_at_all_is_a_one_line_error(tmp_path, scored):
    with pytest.raises(ScorerError, match="is not a mira run directory"):
        mira.Scorer.load(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ScorerError, match="is not a mira run directory"):
        mira.Scorer.load(tmp_path / "plain")
    run = tmp_path / "copy"
    shutil.copytree(scored[1], run)
    (run / "_done" / "distill.json").unlink()
    with pytest.raises(StageNotReady, match=r"^stage 'distill' has not finished in .*; run `mira distill` first$"):
        mira.Scorer.load(run)


class OldStudents(DoubleModels):
    def load_student(self, run, group):
        raise ValueError(f"student in students/{group} was trained on features-v2, this mira computes features-v3; "
                         "run `mira distill --force`")


def test_a_student_that_cannot_load_is_a_one_line_error_naming_the_fix(scored):
    with pytest.raises(ScorerError, match=r"^cannot load the students of .*: student in students/g0 was trained "
                                          r"on features-v2, .*; run `mira distill --force`$"):
        mira.Scorer.load(scored[1], models=OldStudents())


def test_a_moved_run_loads_from_its_new_place_and_config_replaces_the_saved_one(tmp_path, scored):
    corpus, original = scored
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    scorer = mira.Scorer.load(moved, models=DoubleModels())
    assert scorer.run.root == moved and Path(scorer.config.run_dir) == moved.resolve()
    # Another reliability config: masks follow it, as select's do (nothing masked: qa gets an aggregate).
    config = make_config(corpus, moved, engine=EngineConfig(workers=1))
    config.reliability.exclude = ["*/a00"]
    excluded = mira.Scorer.load(moved, config=config, models=DoubleModels())
    record = {"id": "d", "text": "Return the sum of two numbers, or raise TypeError for strings."}
    plain = scorer.score([record], source="docs")
    fewer = excluded.score([record], source="docs")
    assert plain.column("g1/a00").equals(fewer.column("g1/a00"))
    assert fewer.column("score")[0].as_py() == plain.column("g1/a01")[0].as_py()  # a00 left out of the mean


def test_importing_mira_loads_no_scorer_and_no_heavy_library():
    code = ("import sys, mira\n"
            "heavy = [m for m in ('mira.scoring.scorer', 'numpy', 'pyarrow', 'torch') if m in sys.modules]\n"
            "print(heavy)\n"
            "print(mira.Scorer.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}).stdout.splitlines()
    assert out == ["[]", "mira.scoring.scorer"]
    with pytest.raises(AttributeError, match="no attribute 'Scorers'"):
        _ = mira.Scorers  # noqa: B018


def test_the_score_stage_and_the_scorer_share_one_batch_function():
    """Not a copy: `mira score` calls the function the scorer calls (a refactor that forks them fails here)."""
    from mira.scoring import apply, corpus_scores, scorer

    assert corpus_scores.score_batch is apply.score_batch is scorer.score_batch
    assert json.dumps(sorted(ANCHORS)) == '["g0", "g1"]'


def test_the_datatrove_step_without_datatrove_says_which_extra_to_install(monkeypatch):
    import importlib

    monkeypatch.setitem(sys.modules, "datatrove", None)  # as if not installed: `import datatrove...` fails
    monkeypatch.delitem(sys.modules, "mira.integrations.datatrove", raising=False)
    with pytest.raises(ImportError, match=r"^mira.integrations.datatrove needs datatrove \(.*\): "
                                          r"pip install 'mira-select\[datatrove\]'$"):
        importlib.import_module("mira.integrations.datatrove")


def test_under_anchor_scale_group_the_aggregate_is_selects_and_needs_the_score_files(tmp_path, scored):
    corpus, original = scored
    config = make_config(corpus, original, engine=EngineConfig(workers=1))
    config.reliability.anchor_scale = "group"  # anchors moved to the group's scale: statistics from scores/
    scorer = mira.Scorer.load(original, config=config, models=DoubleModels())
    records = [r for r in source_records(original, "docs") if r is not None]
    r = RunDir(original)
    table = load_score_table(config, r, source_infos(r))
    expected = table.score[table.source_idx == table.sources.index("docs")]
    readable = [i for i, rec in enumerate(source_records(original, "docs")) if rec is not None]
    got = scorer.score(records, source="docs").column("score").to_numpy()
    assert got.tobytes() == expected[readable].tobytes()
    raw = mira.Scorer.load(original, models=DoubleModels()).score(records, source="docs").column("score").to_numpy()
    assert not np.array_equal(got, raw, equal_nan=True)  # the scale changed something: the test can fail
    unscored = tmp_path / "unscored"
    shutil.copytree(original, unscored)
    (unscored / "_done" / "score.json").unlink()
    with pytest.raises(StageNotReady, match=r"^stage 'score' has not finished in .*; run `mira score` first$"):
        mira.Scorer.load(unscored, config=config.model_copy(update={"run_dir": str(unscored)}), models=DoubleModels())
    assert mira.Scorer.load(unscored, models=DoubleModels()).score(records[:2], source="docs").num_rows == 2  # raw


def test_a_source_without_a_group_scores_only_records_that_cannot_be_scored(scorer):
    import dataclasses

    lonely = dataclasses.replace(scorer, sources={**scorer.sources, "qa": dataclasses.replace(scorer.sources["qa"],
                                                                                               group=None)})
    with pytest.raises(ScorerError, match=r"^source qa has no group \(it had no usable record at ingest\): "
                                          r"its records cannot be scored$"):
        lonely.score([{"question": "What?", "answer": "This."}], source="qa")
    out = lonely.score([{"question": "", "answer": ""}], source="qa").to_pylist()[0]
    assert out["group"] is None and out["quarantine"] and math.isnan(out["score"])
