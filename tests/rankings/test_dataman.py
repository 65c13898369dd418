import json
import re
import shutil

import pyarrow.parquet as pq
import pytest

from mira import api
from mira.core.config import AnnotationConfig, DataManConfig, EngineConfig, SelectionConfig, StudentConfig
from mira.core.errors import StageIncomplete
from mira.run.rundir import RunDir
from mira.selection.named import current_selection
from mira.selection.rankings import dataman
from mira.teacher.testing import Reply, ScriptedServer
from tests.engines.doubles import build_corpus, make_config, score_with_doubles
from tests.stages.test_select_out_of_core import assert_out_of_core_identical

CRITERIA = [a.id for a in dataman.load_dataman_rubric()]


def _record(prompt: str) -> str:
    return re.search(r"<<<(RECORD_[0-9a-f]{8})\n(.*)\n\1>>>", prompt, re.S).group(2)


def teacher(body: dict) -> str | Reply:
    """A rubric-following teacher: code (a `def`) is good data, prose is mediocre; bisect records break it."""
    record = _record(body["messages"][-1]["content"])
    if "bisect" in record:
        return "not JSON at all"
    quality = 8 if re.search(r"^\s*def ", record, re.M) else 2
    properties = body["response_format"]["json_schema"]["schema"]["properties"]
    flat = all(p.get("type") == "integer" for p in properties.values())  # annotate_v2 scores-only answers
    scores = {c: quality if c == "overall" else (quality + i) % 11 for i, c in enumerate(properties)}
    answer = {c: s if flat else {"score": s} for c, s in scores.items()}
    return Reply(json.dumps(answer))


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataman")
    corpus = build_corpus(root / "corpus")
    config = make_config(corpus, root / "run", engine=EngineConfig(workers=1))
    score_with_doubles(config)
    return corpus, root / "run"


def _config(scored, tmp_path, server, records=18, **teacher_overrides):
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    selection = SelectionConfig(method="dataman", mode="global", budget=0.3,  # the paper's one cutoff
                                dataman=DataManConfig(records=records))
    # Ridge alone: 14 criteria x LightGBM x (cross-fitting folds + model choice) would take most of
    # these tests' time, and nothing here is about the regressor.
    return make_config(corpus, tmp_path / "run", selection=selection, engine=EngineConfig(workers=1),
                       annotation=AnnotationConfig(allocation="even", rationales=False, self_consistency_records=2),
                       student=StudentConfig(regressors=["ridge"]),
                       teacher=server.teacher_config(**teacher_overrides))


def test_rubric_is_datamans_fourteen_criteria_ending_with_overall():
    anchors = dataman.load_dataman_rubric()
    assert len(anchors) == 14 and anchors[-1].id == "overall"
    assert all(a.low and a.mid and a.high and a.part == "whole" for a in anchors)


@pytest.mark.slow
def test_dataman_labels_distills_scores_and_selects_with_one_global_cutoff(scored, tmp_path):
    with ScriptedServer(teacher) as server:
        config = _config(scored, tmp_path, server)
        run = RunDir(tmp_path / "run")
        counts = dataman.prepare_dataman(config, run)
        asked = len(server.requests)  # 18 + 2 re-scored, plus the parse retries of the broken answers
        assert counts["requests"] == 20 and asked >= 20
        # Every request carries the same fixed 14-criterion rubric, whatever the source.
        for body in server.requests:
            assert list(body["response_format"]["json_schema"]["schema"]["properties"]) in (
                CRITERIA, sorted(CRITERIA, key=lambda c: body["messages"][-1]["content"].index(f"[{c}]")))
        sub = dataman.folder(run)
        labels = pq.read_table(sub.path("labels", "dataman.parquet")).to_pylist()
        assert len(labels) == 18 and {r["source"] for r in labels} == {"pycode", "docs", "qa"}
        failed = [not r["ok"] for r in labels]
        assert 1 <= sum(failed) < 6 and failed == ["bisect" in r["text"] for r in labels]  # audited rows
        assert all(r["overall"] == (8 if re.search(r"^\s*def ", r["text"], re.M) else 2) for r in labels if r["ok"])
        metrics = json.loads(sub.path("students", "dataman", "metrics.json").read_text())
        # Cross-fitted (student.validation's default): every usable row trains the student kept and
        # validates out of fold.
        assert metrics["anchors"] == CRITERIA
        # No confirmation slice: 16 usable labels over 3 sources would set aside 4 rows, 1 within
        # sources, which could not decide anything (reliability.min_confirmation_rows): they train.
        assert "confirmation" not in metrics["aggregate"]
        assert metrics["train_rows"] == metrics["validation_rows"] == 18 - sum(failed)
        # One score row per input record, quarantined ones included.
        for source in ("pycode", "docs", "qa"):
            rows = sum(pq.read_table(p).num_rows for p in sub.path("scores", source).glob("*.parquet"))
            assert rows == sum(pq.read_table(p).num_rows for p in run.path("scores", source).glob("*.parquet"))

        outcome = api.run_one("select", config)
        assert not outcome.skipped and len(server.requests) == asked  # prepared already: no new teacher call
    summary = json.loads((current_selection(run) / "summary.json").read_text())
    assert summary["method"] == "dataman" and summary["mode"] == "global" and list(summary["units"]) == ["all"]
    # The student learned the teacher's rubric: code (overall 8) is kept ahead of prose (overall 2).
    sources = summary["sources"]
    assert sources["pycode"]["kept_tokens"] / sources["pycode"]["tokens_in"] > \
        sources["docs"]["kept_tokens"] / max(1, sources["docs"]["tokens_in"])
    decisions = [row for p in (current_selection(run) / "_decisions").glob("*/*.parquet")
                 for row in pq.read_table(p).to_pylist()]
    kept = [d["key"] for d in decisions if d["kept"]]
    assert min(kept) >= max(d["key"] for d in decisions if not d["kept"] and d["key"] is not None)
    assert_out_of_core_identical(config, run)  # ranked piece by piece out of core: the same bytes


@pytest.mark.slow
def test_dataman_budget_stop_resumes_from_the_teacher_cache(scored, tmp_path):
    with ScriptedServer(teacher) as server:
        config = _config(scored, tmp_path, server, max_requests=7)
        run = RunDir(tmp_path / "run")
        with pytest.raises(StageIncomplete, match="budget"):
            dataman.prepare_dataman(config, run)
        first = len(server.requests)
        distinct = {b["messages"][-1]["content"] for b in server.requests}
        assert len(distinct) <= 7 and not dataman.folder(run).done("dataman")  # 7 requests (+ parse retries)
        config.teacher = server.teacher_config()
        dataman.prepare_dataman(config, run)
        resumed = len(server.requests)
        fresh = [b["messages"][-1]["content"] for b in server.requests[first:]]
        done_before = {b["messages"][-1]["content"] for b in server.requests[:first]
                       if "bisect" not in _record(b["messages"][-1]["content"])}
        assert not done_before & set(fresh)  # answered requests replayed from the cache
        again = dataman.prepare_dataman(config, run)
        assert again["cached"] == 1 and len(server.requests) == resumed


def test_dataman_rescores_only_what_a_changed_setting_touches(scored, tmp_path, monkeypatch):
    with ScriptedServer(teacher) as server:
        config = _config(scored, tmp_path, server)
        run = RunDir(tmp_path / "run")
        dataman.prepare_dataman(config, run)
        asked = len(server.requests)
        trained = []
        import mira.students as students

        original_train = students.train
        monkeypatch.setattr(students, "train", lambda *a, **k: trained.append(len(a[6])) or original_train(*a, **k))
        config.selection.budget = 0.6  # selection settings never touch DataMan's artifacts
        assert dataman.fingerprint(config, run) == dataman.folder(run).done("dataman")["fingerprint"]
        config.student.seed = 3  # a student setting retrains and rescores, with no teacher call
        counts = dataman.prepare_dataman(config, run)
        usable = json.loads(dataman.folder(run).path("students", "dataman", "metrics.json").read_text())["train_rows"]
        # One student per fold (cross-fitting) and the one kept, trained on every usable row.
        assert len(trained) == config.student.folds + 1 and trained[-1] == usable
        assert counts["records_scored"] > 0 and len(server.requests) == asked



def test_dry_run_says_what_datamans_labels_cost_and_that_a_finished_pass_costs_nothing(scored, tmp_path):
    with ScriptedServer(teacher) as server:
        config = _config(scored, tmp_path, server)
        run = RunDir(tmp_path / "run")
        before = dataman.plan(config, run)
        assert len(server.requests) == 0  # planning sends nothing
        assert len(before) == 1 and "20 new of 20 teacher requests" in before[0] and "teacher time" in before[0]
        dataman.prepare_dataman(config, run)
        assert dataman.plan(config, run) == ["DataMan: labels, student and scores are cached; no teacher call"]


def test_records_of_two_sources_with_the_same_id_are_labelled_on_their_own_text(tmp_path):
    # Ids are unique only within a source: renderings keyed by id gave one source's record the
    # other's text in its teacher request.
    for name, word in (("alpha", "walrus"), ("beta", "pelican")):
        with open(tmp_path / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for i in range(4):
                handle.write(json.dumps({"id": str(i), "text": f"{word} record {i}: " + "plain words " * 20}) + "\n")
    corpus = [{"name": n, "path": str(tmp_path / f"{n}.jsonl"), "format": "text"} for n in ("alpha", "beta")]
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=1),
                         selection=SelectionConfig(method="dataman", dataman=DataManConfig(records=8)))
    api.run_one("ingest", config)
    sample = dataman._sample(config, RunDir(tmp_path / "run"), dataman.load_dataman_rubric())
    assert {r.source for r in sample.records} == {"alpha", "beta"} and len({r.id for r in sample.records}) == 4
    for record, request in zip(sample.records, sample.requests, strict=False):
        prompt = request.messages[-1]["content"]
        assert ("walrus" in prompt) == (record.source == "alpha") and ("pelican" in prompt) == (record.source == "beta")
