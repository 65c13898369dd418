"""The dry run tells the truth: per stage whether it runs and why, by the runner's own fingerprint,
and a time estimate from this run's measured speeds (mira.pipeline.plan)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mira import api
from mira.core.stages import STAGES
from mira.io.files import atomic_write_json
from mira.pipeline.plan import estimate, explain
from mira.run.rundir import RunDir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished scripted run (every stage) and its still-running scripted server."""
    from mira.teacher.testing import ScriptedServer
    from tests.test_pipeline import _config, schema_teacher

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path_factory.mktemp("planned"), server.teacher_config())
        api.run_pipeline(config)
        yield config, server


def _reruns(config) -> list[str]:
    return [o.stage for o in api.run_pipeline(config) if not o.skipped]


def _named(plans) -> list[str]:
    return [p.stage for p in plans if p.will_run]


@pytest.mark.slow
def test_an_unchanged_run_is_done_throughout(finished):
    config, _ = finished
    plans = explain(config, list(STAGES))
    assert [(p.stage, p.state, p.reasons) for p in plans] == [(s, "done", []) for s in STAGES]


@pytest.mark.slow
def test_a_network_setting_reruns_nothing_but_the_report(finished):
    config, server = finished
    changed = config.model_copy(deep=True)
    changed.teacher.timeout_s = config.teacher.timeout_s + 7
    plans = {p.stage: p for p in explain(changed, list(STAGES))}
    assert _named(plans.values()) == ["report"]  # the report shows the resolved config
    assert plans["report"].reasons == [f"config changed: teacher.timeout_s ({config.teacher.timeout_s!r} -> "
                                       f"{changed.teacher.timeout_s!r})"]
    sent = len(server.requests)
    assert _reruns(changed) == ["report"] and len(server.requests) == sent
    assert _named(explain(changed, list(STAGES))) == []
    # Credentials in the server address never reach the plan's words.
    changed.teacher.base_url = config.teacher.base_url.replace("http://", "http://user:s3cret@") + "?key=k3y"
    plans = {p.stage: p for p in explain(changed, list(STAGES))}
    assert _named(plans.values()) == ["report"]
    assert plans["report"].reasons[0].startswith("config changed: teacher.base_url")
    assert "s3cret" not in str(plans["report"].reasons) and "k3y" not in str(plans["report"].reasons)


@pytest.mark.slow
def test_more_labels_name_exactly_the_stages_that_rerun_and_price_the_new_requests(finished):
    config, server = finished
    run = RunDir(Path(config.run_dir))
    changed = config.model_copy(deep=True)
    changed.annotation.records_per_group = config.annotation.records_per_group + 4
    # Plant what annotate's last run measured: 80 s for 20 new answers, 4 s each.
    marker = run.done("annotate")
    atomic_write_json(run.marker_path("annotate"), {**marker, "seconds": 80.0,
                                                    "teacher": {**marker["teacher"], "answered": 20}})
    plans = {p.stage: p for p in explain(changed, list(STAGES))}
    assert plans["annotate"].state == "runs"
    assert plans["annotate"].reasons == [f"config changed: annotation.records_per_group "
                                         f"({config.annotation.records_per_group} -> "
                                         f"{changed.annotation.records_per_group})"]
    assert plans["distill"].reasons == ["upstream stage annotate reruns"]
    assert [plans[s].state for s in ("ingest", "group", "discover")] == ["done"] * 3
    assert "score" in _named(plans.values()) and "select" in _named(plans.values())

    from mira.stages.annotate_plan import teacher_work

    work = teacher_work(changed, run)
    new = work["requests"] - work["cached"]
    assert 0 < new < work["requests"]  # the first records' labels replay from the cache
    assert plans["annotate"].estimate.seconds == pytest.approx(new * 4.0)
    assert "measured" in plans["annotate"].estimate.basis
    assert plans["distill"].estimate.seconds == run.done("distill")["seconds"]

    sent = len(server.requests)
    assert _reruns(changed) == _named(plans.values())  # exactly the stages the plan named
    assert len(server.requests) - sent == new == run.done("annotate")["teacher"]["answered"]


@pytest.mark.slow
def test_an_edited_rubric_and_a_marker_of_an_older_mira_are_explained(finished):
    config, _ = finished
    run = RunDir(Path(config.run_dir))
    api.run_pipeline(config)  # up to date whatever the module's other tests did
    path = min(run.path("rubrics").glob("g*.jsonl"))
    original = path.read_text()
    card = json.loads(original.splitlines()[0])
    card["definition"] += " Edited."
    path.write_text("\n".join([json.dumps(card), *original.splitlines()[1:]]) + "\n")
    try:
        plans = {p.stage: p for p in explain(config, list(STAGES))}
        assert plans["annotate"].reasons == ["upstream artifact changed: rubrics"]
    finally:
        path.write_text(original)
    # A marker written before markers kept the config: the settings are named from config.yaml,
    # the speed taken from usage/annotate.json's last session.
    marker = run.done("annotate")
    atomic_write_json(run.marker_path("annotate"), {k: v for k, v in marker.items()
                                                    if k not in ("config", "teacher", "reads", "upstream")})
    changed = config.model_copy(deep=True)
    changed.annotation.self_consistency_records += 1
    plans = {p.stage: p for p in explain(changed, list(STAGES))}
    assert plans["annotate"].reasons[0].startswith("config changed: annotation.self_consistency_records")
    usage = json.loads((run.usage_dir / "annotate.json").read_text())["last"]
    if usage["answered"]:
        assert "measured" in estimate("annotate", changed, run, False).basis


def test_without_measurements_the_estimate_says_it_uses_constants(tmp_path):
    from tests.conftest import DATA, make_config

    config = make_config(tmp_path, [{"name": "py", "path": str(DATA / "group_discover" / "py_code.jsonl")}])
    config.teacher.model = "qwen2.5-coder-1.5b"
    plans = {p.stage: p for p in explain(config, list(STAGES))}
    assert all(p.state == "runs" and p.reasons == ["not run yet"] for p in plans.values())
    assert "constants for qwen2.5-coder-1.5b (nothing measured in this run)" in plans["annotate"].estimate.basis
    assert plans["ingest"].estimate.seconds is None and plans["ingest"].estimate.basis == "not measured yet"
    # Discover and annotate keep their dry run in mira.stages.<stage>_plan: the plan still finds it.
    assert plans["discover"].details[0].startswith("groups: ") and "judgments" in plans["discover"].details[1]
    assert "teacher requests" in plans["discover"].estimate.basis
    assert plans["annotate"].details[0].startswith("up to ") and "teacher requests" in plans["annotate"].estimate.basis


@pytest.mark.slow
def test_a_stage_rerun_alone_is_named_downstream(finished):
    config, _ = finished
    api.run_pipeline(config)
    changed = config.model_copy(deep=True)
    changed.annotation.self_consistency_records += 2
    api.run_one("annotate", changed)  # `mira annotate --set ...`, the rest left as it was
    plans = {p.stage: p for p in explain(changed, list(STAGES))}
    assert plans["annotate"].state == "done"
    assert (plans["distill"].state, plans["distill"].reasons) == ("runs", ["upstream stage annotate was rerun since"])


def test_dry_run_helpers_come_from_the_stage_plan_module_when_there_is_one(monkeypatch):
    import importlib

    from mira.pipeline.plan import dry_run_module

    assert dry_run_module("discover").__name__ == "mira.stages.discover_plan"
    assert dry_run_module("annotate").__name__ == "mira.stages.annotate_plan"
    assert dry_run_module("ingest").__name__ == "mira.stages.ingest"
    real = importlib.import_module

    def broken(name, *args):
        if name == "mira.stages.discover_plan":  # exists, but a module it imports is missing
            raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="sklearn"):  # not silently the stage module's (absent) plan
        dry_run_module("discover")
    with pytest.raises(ValueError, match="unknown stage"):
        dry_run_module("nope")


def test_an_interrupted_stage_is_priced_at_its_latency_over_the_concurrency(tmp_path):
    # A stage killed before its marker leaves only usage/<stage>.json. Its answers' latencies
    # overlap `concurrency` at a time: pricing each at its full latency doubled the estimate of the
    # interrupted demo's annotate at concurrency 2 (10.8 min estimated, 6.5 min measured).
    from mira.teacher.speed import measured_speed

    run = RunDir(tmp_path / "run")
    run.usage_dir.mkdir(parents=True)
    atomic_write_json(run.usage_dir / "annotate.json", {"total": {"answered": 40, "latency_s": 400.0}})
    assert measured_speed(run, "annotate", concurrency=1)[0] == pytest.approx(10.0)
    per, basis = measured_speed(run, "annotate", concurrency=2)
    assert per == pytest.approx(5.0) and "2 concurrent" in basis


def test_an_upstream_stage_rerun_since_and_rerunning_now_is_named_once(tmp_path):
    # "upstream stage ingest was rerun since; upstream stage ingest reruns" named ingest twice on one line.
    from tests.conftest import make_config

    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"text": "one record"}) + "\n")
    config = make_config(tmp_path, [{"name": "a", "path": str(data)}])
    api.run_one("ingest", config)
    run = RunDir(Path(config.run_dir))
    run.mark_done("group", "group-of-an-older-ingest", upstream={"ingest": "an-older-ingest"})
    with open(data, "a") as handle:
        handle.write(json.dumps({"text": "appended: ingest reruns"}) + "\n")
    plans = {p.stage: p for p in explain(config, ["ingest", "group"])}
    assert plans["group"].reasons == ["upstream stage ingest reruns"]
    assert plans["ingest"].reasons == ["input changed: files of source a"]  # the source it names
