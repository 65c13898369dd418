"""Teacher cost per compared method, and DataMan at MIRA's teacher budget (issue 26 item 4)."""

import json
import shutil

import pytest

from mira import api
from mira.core.config import AnnotationConfig, CompareConfig, ConfigError, EngineConfig, StudentConfig
from mira.evaluation.cost import matched_dataman_records, request_tokens
from mira.evaluation.tables import summary_lines
from mira.run.rundir import RunDir
from mira.selection.rankings import dataman
from mira.teacher.testing import ScriptedServer
from tests.engines.doubles import build_scored_run, make_config
from tests.rankings.test_dataman import teacher

METHODS = [{"method": "mira", "mode": "group"}, {"method": "random", "mode": "source"},
           {"method": "length", "mode": "group"}]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _usage(run: RunDir, stage: str, requests: int, cache_hits: int, answered: int, prompt: int, completion: int,
           latency: float, sessions: int = 1) -> None:
    counters = {"requests": requests, "cache_hits": cache_hits, "answered": answered, "prompt_tokens": prompt,
                "completion_tokens": completion, "latency_s": latency, "budget_skipped": 0}
    path = run.path("usage", f"{stage}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": stage, "model": "m", "sessions": sessions, "last": counters,
                                "total": counters}))


def _config(scored, tmp_path, methods=METHODS, **sections):
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    compare = sections.pop("compare", {})
    return make_config(corpus, tmp_path / "run", compare=CompareConfig.model_validate({"methods": methods, **compare}),
                       **sections)


def test_each_method_shows_the_teacher_cost_its_selection_rests_on(scored, tmp_path):
    config = _config(scored, tmp_path)
    run = RunDir(tmp_path / "run")
    _usage(run, "discover", 27, 0, 27, 15_000, 4_000, 900.5)
    _usage(run, "annotate", 70, 20, 50, 35_000, 100, 1_100.0)
    _usage(run, "dataman", 40, 0, 40, 72_000, 2_000, 1_500.0)  # DataMan is not compared: not shown
    result = api.compare(config)
    cost = result["teacher_cost"]
    assert cost["mira-group-50pct"] == {"stages": ["discover", "annotate"], "requests": 97, "cache_hits": 20,
                                        "answered": 77, "prompt_tokens": 50_000, "completion_tokens": 4_100,
                                        "seconds": 2_000.5}
    for name in ("random-source-50pct", "length-group-50pct"):
        assert cost[name]["stages"] == [] and cost[name]["requests"] == cost[name]["prompt_tokens"] == 0
    lines = [text for text, _ in summary_lines(result)]
    assert "teacher: requests" in lines[0] and "tokens in/out" in lines[0]
    row = next(t for t in lines if t.startswith("mira-group-50pct"))
    assert row.split()[-3:] == ["97", "50.0k/4.1k", "2000"]
    assert any("free here (mira-group-50pct had some)" in t for t in lines)
    page = run.path("report", "index.html").read_text()
    assert "teacher requests" in page and "20 of them answered from the teacher cache" in page
    # A run without usage files (no teacher asked yet): zeros, not an error.
    shutil.rmtree(run.path("usage"))
    assert api.compare(config)["teacher_cost"]["mira-group-50pct"]["requests"] == 0


def test_datamans_label_count_matches_annotates_tokens(scored, tmp_path):
    config = _config(scored, tmp_path, annotation=AnnotationConfig(rationales=False, self_consistency_records=2))
    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="annotate has asked the teacher nothing"):
        matched_dataman_records(config, run)
    _usage(run, "annotate", 70, 70, 0, 0, 0, 0.0)
    with pytest.raises(ConfigError, match="came from the teacher cache"):
        matched_dataman_records(config, run)
    # 50 answers paid 35,100 tokens: 702 a request, so annotate's 70 requests cost 49,140.
    _usage(run, "annotate", 70, 20, 50, 35_000, 100, 1_100.0)
    found = matched_dataman_records(config, run)
    assert found["annotate_tokens"] == 49_140
    records = found["records"]
    matched = config.model_copy(update={"selection": config.selection.model_copy(update={
        "dataman": config.selection.dataman.model_copy(update={"records": records})})})
    sampled, requests = dataman.label_requests(matched, run)
    assert sampled == records and len(requests) == records + 2  # + the consistency re-asks
    spent = sum(request_tokens(matched, run, requests))
    per_request = spent / len(requests)
    # As close to annotate's tokens as whole records allow (each request ~1,800+ tokens: 14 criteria).
    assert per_request > 1_500 and abs(spent - 49_140) <= 1.5 * per_request, (spent, per_request)
    assert found["estimated_tokens"] == pytest.approx(spent, rel=0.1)


@pytest.mark.slow
def test_compare_gives_dataman_matched_labels_and_shows_its_cost(scored, tmp_path):
    with ScriptedServer(teacher) as server:
        config = _config(scored, tmp_path, methods=[{"method": "random", "mode": "source"},
                                                    {"method": "dataman", "mode": "global"}],
                         compare={"dataman_budget": "match_mira"}, engine=EngineConfig(workers=1),
                         annotation=AnnotationConfig(allocation="even", rationales=False, self_consistency_records=2),
                         student=StudentConfig(regressors=["ridge"]), teacher=server.teacher_config())
        run = RunDir(tmp_path / "run")
        _usage(run, "annotate", 20, 0, 20, 30_000, 200, 300.0)  # ~30k tokens: about 14 DataMan records
        plan = "\n".join(api_plan(config))
        result = api.compare(config)
    budget = result["dataman_budget"]
    assert f"DataMan labels {budget['records']} records" in plan
    assert 8 <= budget["records"] <= 20 and budget["annotate_tokens"] == 30_200
    usage = json.loads(run.path("usage", "dataman.json").read_text())
    assert usage["last"]["requests"] == budget["records"] + 2  # its labels pass asked exactly that many
    cost = result["teacher_cost"]["dataman-global-50pct"]
    assert cost["stages"] == ["dataman"] and cost["requests"] == budget["records"] + 2
    assert cost["prompt_tokens"] == usage["total"]["prompt_tokens"] > 0
    # The fake server counts prompt characters / 4, so the estimate is checked against what was sent.
    # Broken answers are asked again, so compare per request sent.
    sent = (usage["total"]["prompt_tokens"] + usage["total"]["completion_tokens"]) / usage["total"]["sent"]
    assert budget["tokens_per_request"] == pytest.approx(sent, rel=0.25), usage["total"]
    assert any(f"DataMan labelled {budget['records']:,} records" in t for t, _ in summary_lines(result))


def api_plan(config):
    from mira.evaluation.compare import plan

    return plan(config)
