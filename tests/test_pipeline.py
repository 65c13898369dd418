"""End to end: every stage, in order, through the real client against a scripted teacher.

The scripted teacher answers any request by building a valid instance of the JSON schema the
request sends, so it follows whatever the prompts and schemas become. (Whether students learn a
planted signal is tested in tests/students with enough data; this corpus is too small for that.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.core.config import RunConfig
from mira.pipeline.runner import done_already
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.selection.named import current_selection

DATA = Path(__file__).parent / "data" / "group_discover"
DIMENSIONS = ["Clarity of explanation", "Correctness of details", "Consistent style", "Useful comments",
              "Complete coverage", "Precise wording"]


GUIDES = {"low": "Missing or wrong.", "mid": "Partly present, with gaps.", "high": "Complete, clear and correct."}


def _record_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def _quality(text: str) -> int:
    """The planted signal: docstrings and questions make a record better (+5), plus per-record
    noise so that labels vary within every source (a constant label has no Spearman)."""
    noise = int(hashlib.md5(text.encode()).hexdigest(), 16) % 4
    return noise + (5 if ('"""' in text or "?" in text) else 1)


def _instance(schema: dict, defs: dict, text: str, path: str = "") -> object:
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].split("/")[-1]], defs, text, path)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return _instance(schema[key][0], defs, text, path)
    if "enum" in schema:
        values = schema["enum"]
        if all(isinstance(v, int) for v in values):
            return _quality(text) if _quality(text) in values else values[0]
        return values[int(hashlib.md5((text + path).encode()).hexdigest(), 16) % len(values)]
    kind = schema.get("type")
    if kind == "object":
        return {name: _instance(sub, defs, text, f"{path}.{name}")
                for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(schema.get("minItems", 1), min(schema.get("maxItems", 2), 2))
        return [_instance(schema["items"], defs, text, f"{path}[{i}]") for i in range(count)]
    if kind == "boolean":
        return True
    if kind == "integer":
        return _quality(text)
    if kind == "string":
        if path.endswith("name"):
            digest = int(hashlib.md5((text + path).encode()).hexdigest(), 16)
            value = DIMENSIONS[digest % len(DIMENSIONS)]
        elif path.rsplit(".", 1)[-1] in GUIDES:  # anchor-card guides must differ (mira.rubrics.cards)
            value = GUIDES[path.rsplit(".", 1)[-1]]
        else:
            value = "A short reason grounded in the record."
        return value[: schema.get("maxLength", len(value))]
    raise AssertionError(f"unhandled schema {schema}")


def schema_teacher(body: dict) -> str:
    schema = body["response_format"]["json_schema"]["schema"]
    return json.dumps(_instance(schema, schema.get("$defs", {}), _record_text(body)))


def _config(tmp_path: Path, teacher) -> RunConfig:
    sources = ["py_code", "c_headers", "man_pages", "changelogs", "qa", "fortunes"]
    return RunConfig.model_validate({
        "name": "e2e", "run_dir": str(tmp_path / "run"), "engine": {"workers": 1},
        "sources": [{"name": n, "path": str(DATA / f"{n}.jsonl")} for n in sources],
        "grouping": {"sample_per_source": 6, "k": 3},
        "discovery": {"records_per_group": 6, "anchors_per_group": 3, "min_support": 2, "min_records": 2,
                      "max_dimensions_per_judgment": 2},
        # Even: tests of what reruns count records per group (allocation by tokens: tests/stages/test_annotate.py).
        "annotation": {"records_per_group": 12, "self_consistency_records": 2, "allocation": "even"},
        "student": {"regressors": ["ridge"]},
        "reliability": {"min_support": 3, "max_mae": 10, "min_spearman": -1},
        "teacher": teacher.model_dump(),
        "selection": {"budget": 0.5},
    })


@pytest.mark.slow
def test_whole_pipeline_with_a_scripted_teacher(tmp_path: Path):
    from mira.teacher.testing import ScriptedServer

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        outcomes = api.run_pipeline(config)
        assert [o.stage for o in outcomes] == list(api.STAGES) and not any(o.skipped for o in outcomes)
        sent = len(server.requests)
        assert sent > 0

        # A rerun does no work and pays for no teacher request.
        again = api.run_pipeline(config)
        assert all(o.skipped for o in again) and len(server.requests) == sent

    run = Path(config.run_dir)
    inventory = json.loads((run / "inventory.json").read_text())
    summary = json.loads((current_selection(RunDir(run)) / "summary.json").read_text())
    totals = summary["totals"]
    assert totals["records_in"] == inventory["totals"]["records"]
    assert totals["records_in"] == totals["kept"] + totals["rejected"] + totals["quarantined"]

    # Every input record has exactly one score row.
    rows = sum(pq.read_metadata(p).num_rows for p in (run / "scores").glob("*/*.parquet"))
    assert rows == inventory["totals"]["records"]

    # Kept records are written with their original fields and the score columns.
    kept = [json.loads(line) for p in sorted(current_selection(RunDir(run)).glob("*/*.jsonl"))
            for line in p.read_text().splitlines()]
    assert len(kept) == totals["kept"] > 0
    assert all("mira_score" in r and "mira_group" in r for r in kept)
    assert (run / "report" / "index.html").stat().st_size > 10_000

    status = CliRunner().invoke(main, ["status", str(run)])
    assert status.exit_code == 0 and status.output.count("[x]") == len(api.STAGES)


@pytest.mark.slow
def test_a_group_left_without_anchors_is_unscored_not_a_stop(tmp_path: Path):
    """Discover may reject every card of a group (rubrics/<g>.jsonl written empty): annotate skips
    it, distill notes it, score gives its records no anchor scores, and select keeps their
    source-preserving random share; the run finishes and every record is accounted for."""
    from mira.artifacts.anchors import rubric_path
    from mira.artifacts.groups import load_groups
    from mira.teacher.testing import ScriptedServer

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        api.run_pipeline(config, until="discover")
        run = RunDir(Path(config.run_dir))
        empty = load_groups(run).groups[0]
        rubric_path(run, empty.id).write_text("")  # what discover writes when no card survives
        outcomes = api.run_pipeline(config)
    assert [o.stage for o in outcomes] == list(api.STAGES)
    assert any(f"group {empty.id} has no rubric" in note for o in outcomes for note in o.notes)
    assert not run.path("students", empty.id).exists()
    summary = json.loads((current_selection(run) / "summary.json").read_text())
    for source in empty.sources:
        counts = summary["sources"][source]
        assert counts["records_in"] == counts["kept"] + counts["rejected"] + counts["quarantined"]
        assert counts["unscored"] == counts["records_in"] - counts["quarantined"] > 0
        assert 0 < counts["kept"] < counts["records_in"]  # the random share, not all or nothing


@pytest.mark.slow
def test_reselecting_with_another_budget_never_rescores(tmp_path: Path):
    from mira.teacher.testing import ScriptedServer

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        api.run_pipeline(config, until="select")
        run = Path(config.run_dir)
        before = {p: p.stat().st_mtime_ns for p in (run / "scores").rglob("*.parquet")}
        kept_before = json.loads((current_selection(RunDir(run)) / "summary.json").read_text())["totals"]["kept_tokens"]
        config.selection.budget = 0.2
        outcomes = api.run_pipeline(config, until="select")
    assert [o.stage for o in outcomes if not o.skipped] == ["select"]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    kept_after = json.loads((current_selection(RunDir(run)) / "summary.json").read_text())["totals"]["kept_tokens"]
    assert kept_after < kept_before


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished scripted run (until select) and its still-running scripted server."""
    from mira.teacher.testing import ScriptedServer

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path_factory.mktemp("finished"), server.teacher_config())
        api.run_pipeline(config, until="select")
        yield config, server


@pytest.mark.slow
def test_teacher_settings_that_never_change_an_answer_leave_every_stage_done(finished):
    """Timeouts, concurrency, budgets, retries, the deadline, failure limits, local-server knobs and
    the server address (credentials included) decide whether an answer comes, never which one."""
    config, server = finished
    sent = len(server.requests)
    url = config.teacher.base_url
    changes = {"timeout_s": 5.0, "concurrency": 7, "max_requests": 1, "max_tokens": 10, "max_retries": 0,
               "max_parse_retries": 0, "backoff_s": 3.0, "deadline_s": 60.0, "max_failed_share": 0.5,
               "max_consecutive_failures": 2, "threads": 3, "port": 9, "ctx_size": 8192,
               "base_url": url.replace("http://", "http://user:secret@") + "?key=abc"}
    for field, value in changes.items():
        changed = config.model_copy(deep=True)
        setattr(changed.teacher, field, value)
        # (The report is left out: it shows the resolved config, so it re-renders on any change.)
        outcomes = api.run_pipeline(changed, until="select")
        assert [o.stage for o in outcomes if not o.skipped] == [], field
    assert len(server.requests) == sent

    # A sampling setting does change answers: the teacher stages (and what follows) rerun.
    changed = config.model_copy(deep=True)
    changed.teacher.seed = 1
    context = StageContext(changed, RunDir(Path(config.run_dir)))
    assert done_already("ingest", context) is not None and done_already("discover", context) is None


@pytest.mark.slow
def test_a_discover_rerun_that_writes_the_same_rubrics_leaves_annotate_done(finished, monkeypatch):
    from mira.rubrics import discovery
    from mira.stages import discover

    config, server = finished
    # A new discover fingerprint (as a new mira version would give it) whose answers all replay.
    monkeypatch.setattr(discover, "VERSION", discovery.VERSION + "-next")
    sent = len(server.requests)
    rubrics = {p.name: p.read_bytes() for p in (Path(config.run_dir) / "rubrics").glob("*.jsonl")}
    outcomes = api.run_pipeline(config, until="select")
    assert [o.stage for o in outcomes if not o.skipped] == ["discover"]
    assert len(server.requests) == sent  # replayed from the cache
    assert {p.name: p.read_bytes() for p in (Path(config.run_dir) / "rubrics").glob("*.jsonl")} == rubrics

    # Different rubrics do rerun annotate.
    path = min((Path(config.run_dir) / "rubrics").glob("*.jsonl"))
    lines = path.read_text().splitlines()
    card = json.loads(lines[0])
    card["definition"] += " Edited."
    original = path.read_text()
    path.write_text("\n".join([json.dumps(card), *lines[1:]]) + "\n")
    assert done_already("annotate", StageContext(config, RunDir(Path(config.run_dir)))) is None
    path.write_text(original)  # the module's finished run is shared


def _unscored(run: Path) -> int:
    summary = json.loads((current_selection(RunDir(run)) / "summary.json").read_text())
    return sum(g["unscored"] for g in summary["groups"].values())


@pytest.mark.slow
def test_reliability_changes_reselect_without_loading_a_student_or_rescoring(finished, monkeypatch, tmp_path):
    import yaml

    from mira import students
    from mira.stages import score

    config, _server = finished
    run = Path(config.run_dir)
    api.run_pipeline(config, until="select")  # up to date whatever the module's other tests did

    def no_student(*args, **kwargs):
        raise AssertionError("a student was loaded")

    monkeypatch.setattr(students, "load_student", no_student)
    score_fp = score.fingerprint(StageContext(config, RunDir(run)))
    scores_before = {p: p.stat().st_mtime_ns for p in (run / "scores").rglob("*")}
    before = _unscored(run)  # records whose every anchor is masked under the fixture's thresholds

    strict = config.model_copy(deep=True)
    strict.reliability.min_spearman = 0.99  # no student of this tiny run reaches it
    assert score.fingerprint(StageContext(strict, RunDir(run))) == score_fp
    outcomes = api.run_pipeline(strict, until="select")
    assert [o.stage for o in outcomes if not o.skipped] == ["distill", "select"]  # distill: masks only
    assert _unscored(run) > before
    assert {p: p.stat().st_mtime_ns for p in (run / "scores").rglob("*")} == scores_before

    # `mira select --set reliability.…` applies the thresholds by itself (masks rebuilt from metrics.json).
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = CliRunner().invoke(main, ["select", str(path)])
    assert result.exit_code == 0, result.output
    assert _unscored(run) == before
    result = CliRunner().invoke(main, ["select", str(path), "--set", "reliability.min_spearman=0.99"])
    assert result.exit_code == 0, result.output
    assert _unscored(run) > before
    result = CliRunner().invoke(main, ["select", str(path), "--set", "reliability.aggregate=weighted_mean"])
    assert result.exit_code == 0 and "select: done" in result.output, result.output
    assert {p: p.stat().st_mtime_ns for p in (run / "scores").rglob("*")} == scores_before


@pytest.mark.real_teacher
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_whole_pipeline_with_the_real_bundled_server(tmp_path: Path):
    """Every stage against the real local model server (SmolLM2-135M: valid JSON, meaningless
    judgement). Checks the real protocol end to end and that the run completes and reconciles
    whatever the small model says, including groups whose rubric ends up empty."""
    from tests.conftest import require_bundled_model

    require_bundled_model("smollm2-135m")
    config = RunConfig.model_validate({
        "name": "real", "run_dir": str(tmp_path / "run"), "engine": {"workers": 1},
        "sources": [{"name": "py_code", "path": str(DATA / "py_code.jsonl"), "group": "code"},
                    {"name": "qa", "path": str(DATA / "qa.jsonl"), "group": "qa"}],
        "render": {"max_tokens": 192},
        "grouping": {"sample_per_source": 2},
        "teacher": {"provider": "local", "model": "smollm2-135m", "concurrency": 2, "ctx_size": 2048,
                    "timeout_s": 120},
        "discovery": {"records_per_group": 2, "anchors_per_group": 2, "max_dimensions_per_judgment": 2,
                      "min_support": 1, "min_records": 1},
        "annotation": {"records_per_group": 4, "self_consistency_records": 1, "rationales": False},
        "reliability": {"min_support": 1, "max_mae": 10, "min_spearman": -1},
    })
    from mira.artifacts.anchors import Anchor, rubric_is_empty, save_rubric

    outcomes = api.run_pipeline(config, until="discover")
    run = Path(config.run_dir)
    # The 135M model's cards rarely survive the card checks; a group left without anchors is
    # unscored, not a reason to stop. Give the first such group a hand-written card, as a user
    # would, so annotate still speaks the real protocol; any other empty group stays unscored.
    empty = [g for g in ("code", "qa") if rubric_is_empty(RunDir(run), g)]
    if empty:
        save_rubric(RunDir(run), empty[0], [Anchor(id="a00", name="Clarity", definition="How clear the record is.",
                                                   low="Confusing.", mid="Readable.", high="Very clear.")])
    outcomes += api.run_pipeline(config)[len(outcomes):]
    assert [o.stage for o in outcomes] == list(api.STAGES)
    usage = json.loads((run / "usage" / "annotate.json").read_text())
    assert usage["last"]["requests"] >= 1
    summary = json.loads((current_selection(RunDir(run)) / "summary.json").read_text())["totals"]
    assert summary["records_in"] == 12 == summary["kept"] + summary["rejected"] + summary["quarantined"]
    assert (run / "report" / "index.html").exists()
    # Every section of the report is filled from the real run's artifacts; only the comparison
    # waits for `mira compare`, which is not a pipeline stage.
    report = next(o for o in outcomes if o.stage == "report")
    assert report.counts["errors"] == 0 and report.counts["not_run"] == 1, report.notes
    assert report.counts["filled"] == report.counts["sections"] - 1
    assert all(o.skipped for o in api.run_pipeline(config))  # and a rerun pays for nothing


@pytest.mark.slow
def test_sources_in_a_bucket_and_a_selection_published_back_to_it(tmp_path: Path, s3):
    """The whole pipeline against a real S3 endpoint: JSONL, gzip JSONL and Parquet sources read
    from a bucket, the selection published to s3://bucket/out/, read back and counted."""
    import gzip

    import pyarrow as pa

    from mira.teacher.testing import ScriptedServer

    upload = tmp_path / "upload"
    upload.mkdir()
    qa_rows = [json.loads(line) for line in (DATA / "qa.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(qa_rows), upload / "qa.parquet", row_group_size=4)
    (upload / "fortunes.jsonl.gz").write_bytes(gzip.compress((DATA / "fortunes.jsonl").read_bytes()))
    for path in [*upload.iterdir(), *(DATA / f"{n}.jsonl" for n in ("py_code", "c_headers", "man_pages",
                                                                    "changelogs"))]:
        s3.upload(path, f"corpus/{path.name}")

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        for source in config.sources:
            name = {"qa": "qa.parquet", "fortunes": "fortunes.jsonl.gz"}.get(source.name, f"{source.name}.jsonl")
            source.path = s3.url(f"corpus/{name}")
        config = RunConfig.model_validate({**config.model_dump(), "ingest": {"shard_records": 4},
                                           "storage": s3.storage(),
                                           "selection": {"budget": 0.5, "output": s3.url("out/")}})
        outcomes = api.run_pipeline(config, until="select")
    assert outcomes[-1].stage == "select" and outcomes[-1].counts["published_to"] == s3.url("out/mira-group-50pct")

    run = Path(config.run_dir)
    inventory = json.loads((run / "inventory.json").read_text())
    assert inventory["sources"]["qa"]["reader"] == "parquet" and len(inventory["sources"]["qa"]["shards"]) > 1
    assert len(inventory["sources"]["py_code"]["shards"]) > 1  # byte ranges of the object
    assert inventory["totals"]["records"] == sum(len((DATA / f"{n}.jsonl").read_text().splitlines())
                                                 for n in ("py_code", "c_headers", "man_pages", "changelogs",
                                                           "qa", "fortunes"))

    # Read the selection back from the bucket, with a client of our own.
    prefix = "out/mira-group-50pct"
    summary = json.loads(s3.read(f"{prefix}/summary.json"))
    totals = summary["totals"]
    assert totals["records_in"] == inventory["totals"]["records"]
    assert totals["records_in"] == totals["kept"] + totals["rejected"] + totals["quarantined"]
    for source, counts in summary["sources"].items():
        kept = [json.loads(line) for key in s3.keys(f"{prefix}/{source}")
                for line in s3.read(key).decode().splitlines()]
        assert len(kept) == counts["kept"], source
        assert all("mira_score" in r for r in kept)
    decisions = sum(pq.read_metadata(s3.fs().open(f"{s3.name}/{key}")).num_rows
                    for key in s3.keys(f"{prefix}/_decisions"))
    assert decisions == totals["records_in"]
    # The published copy is the local selection, file for file.
    local = current_selection(RunDir(run))
    for key in s3.keys(prefix):
        assert s3.read(key) == (local / key[len(prefix) + 1:]).read_bytes(), key

    # No credential was written anywhere in the run directory.
    secret = b"s3cret-never-written-anywhere"
    assert not [p for p in run.rglob("*") if p.is_file() and secret in p.read_bytes()]
