import pytest

from mira.core.config import RunConfig
from mira.pipeline.runner import run_stage
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.stages import report
from tests.report.fixture_run import build_fixture_run


def _config(run: RunDir) -> RunConfig:
    return RunConfig(name="fixture-run", run_dir=str(run.root))


@pytest.mark.slow
def test_report_stage_writes_page_and_marker(tmp_path):
    run = build_fixture_run(tmp_path / "run")
    ctx = StageContext(_config(run), run)
    outcome = run_stage("report", ctx)
    page = run.path("report", "index.html")
    assert page.exists() and "<section id=\"readtests\"" in page.read_text()
    # Every stage's section is filled; the comparison waits for `mira compare`, which is not a stage.
    assert outcome.counts == {"sections": 11, "filled": 10, "not_run": 1, "errors": 0}
    assert any("waiting for their stage: comparison" in note for note in outcome.notes)
    assert run.done("report")["fingerprint"] == report.fingerprint(ctx)
    # Nothing upstream changed: skipped.
    assert run_stage("report", StageContext(_config(run), run)).skipped


def test_report_fingerprint_follows_upstream_markers(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group"))
    ctx = StageContext(_config(run), run)
    outcome = run_stage("report", ctx)
    assert outcome.counts["not_run"] == 8 and any("waiting for their stage" in n for n in outcome.notes)
    before = report.fingerprint(ctx)
    run.mark_done("discover", "new-discover")
    assert report.fingerprint(ctx) != before
    assert not run_stage("report", StageContext(_config(run), run)).skipped


def test_report_fingerprint_follows_teacher_usage(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group"))
    ctx = StageContext(_config(run), run)
    before = report.fingerprint(ctx)
    # A stage stopped by its budget writes usage but no marker; the report must still refresh.
    (run.usage_dir).mkdir(parents=True, exist_ok=True)
    (run.usage_dir / "annotate.json").write_text('{"stage": "annotate", "total": {"requests": 3}}')
    assert report.fingerprint(ctx) != before


def test_plan_line(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest",))
    lines = report.plan(_config(run), run)
    assert len(lines) == 1 and "1 finished stage" in lines[0] and "no teacher calls" in lines[0]
