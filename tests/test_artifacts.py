"""The artifact catalogue: one owner per file of the run directory, and the doc generated from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mira import api
from mira.artifacts import CATALOGUE, ArtifactInvalid, ArtifactMissing
from mira.artifacts.selection import DecisionReason
from mira.core.config import ConfigError
from mira.core.errors import StageNotReady
from mira.run.artifact import dump
from mira.run.rundir import RunDir
from tests.report.fixture_run import build_fixture_run

DOC = Path(__file__).parents[1] / "docs" / "architecture.md"
BEGIN, END = "<!-- artifacts:begin", "<!-- artifacts:end -->"


def test_the_architecture_doc_holds_the_generated_artifact_table():
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n", text.index(BEGIN)) + 1
    assert text[start:text.index(END)] == CATALOGUE.markdown(), \
        "docs/architecture.md's artifact table differs from the catalogue: run `python -m mira.artifacts --markdown`"


def test_the_markdown_command_prints_the_table_and_refuses_other_arguments():
    ok = subprocess.run([sys.executable, "-m", "mira.artifacts", "--markdown"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == CATALOGUE.markdown()
    bad = subprocess.run([sys.executable, "-m", "mira.artifacts"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_every_artifact_has_one_owner():
    keys = [a.key for a in CATALOGUE]
    patterns = [a.pattern for a in CATALOGUE]
    assert len(set(keys)) == len(keys) and len(set(patterns)) == len(patterns)
    for artifact in CATALOGUE:
        assert artifact.kind in ("json", "jsonl", "parquet", "yaml", "opaque")
        if artifact.kind in ("json", "jsonl", "yaml"):
            assert artifact.model is not None, artifact.key
        elif artifact.kind == "parquet":
            assert artifact.arrow is not None, artifact.key
        else:
            assert artifact.owner, artifact.key


def _rows(table: pa.Table) -> list[dict]:
    """Rows with NaN as None (NaN != NaN)."""
    return [{k: None if isinstance(v, float) and v != v else v for k, v in row.items()} for row in table.to_pylist()]


def _check_run(root: Path) -> None:
    """Every file of the run is owned by one catalogue entry; every typed one loads and survives
    save(load(x)) unchanged."""
    run = RunDir(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    unowned = [f for f in files if CATALOGUE.owner_of(f) is None]
    assert not unowned, f"files no catalogue entry owns: {unowned}"
    loaded = 0
    for artifact in CATALOGUE:
        if artifact.kind in ("opaque", "yaml"):
            continue
        for keys in artifact.instances(run):
            value = artifact.load(run, **keys)
            artifact.save(run, value, **keys)
            again = artifact.load(run, **keys)
            if artifact.kind == "parquet":
                assert again.schema == value.schema and _rows(again) == _rows(value), (artifact.key, keys)
            elif artifact.kind == "jsonl":
                assert [dump(v) for v in again] == [dump(v) for v in value], (artifact.key, keys)
            else:
                assert dump(again) == dump(value), (artifact.key, keys)
            loaded += 1
    assert loaded > 20


def test_the_report_fixture_is_written_through_the_catalogue(tmp_path):
    run = build_fixture_run(tmp_path / "run")
    _check_run(run.root)
    # The decisions hold the reasons select writes, nothing else.
    decisions = CATALOGUE["decisions"]
    for keys in decisions.instances(run, name="mira-group-50pct"):
        for reason in decisions.load(run, **keys).column("reason").to_pylist():
            DecisionReason.of(reason)


@pytest.mark.slow
def test_every_file_a_real_pipeline_writes_is_owned_and_loads(tmp_path):
    from mira.teacher.testing import ScriptedServer
    from tests.test_pipeline import _config, schema_teacher

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        api.run_pipeline(config)
    _check_run(Path(config.run_dir))
    run = RunDir(Path(config.run_dir))
    reasons = {DecisionReason.of(r) for keys in CATALOGUE["decisions"].instances(run, name="mira-group-50pct")
               for r in CATALOGUE["decisions"].load(run, **keys).column("reason").to_pylist()}
    assert DecisionReason.KEPT in reasons and DecisionReason.BELOW_CUTOFF in reasons


def test_a_missing_artifact_names_the_command_and_an_invalid_one_the_file(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(ArtifactMissing, match=r"^no groups.json in .*; run `mira group` first$") as missing:
        CATALOGUE["groups"].load(run)
    assert isinstance(missing.value, StageNotReady)  # the CLI's one-line "run this first" error
    assert CATALOGUE["groups"].read(run) is None
    run.groups_path.write_text(json.dumps({"k": "three", "chosen_by": "config", "groups": [],
                                           "source_to_group": {}}))
    with pytest.raises(ArtifactInvalid, match=r"groups.json: field 'k'") as invalid:
        CATALOGUE["groups"].load(run)
    assert "\n" not in str(invalid.value) and isinstance(invalid.value, ConfigError)  # CLI: one line, exit 2
    assert CATALOGUE["groups"].read(run) is None
    bad_line = CATALOGUE["rubric"].path(run, group="g0")
    bad_line.parent.mkdir()
    bad_line.write_text('{"id": "a00", "name": "x", "definition": "y"}\n{"id": "bad id!"}\n')
    with pytest.raises(ArtifactInvalid, match="line 2"):
        CATALOGUE["rubric"].load(run, group="g0")


def test_a_parquet_artifact_must_carry_its_fixed_columns(tmp_path):
    run = RunDir(tmp_path)
    table = pa.table({"id": ["a"], "locator": ["a"], "kept": [True], "reason": ["kept"], "rank": [1],
                      "key": [1.0]})  # no `tokens`
    with pytest.raises(ValueError, match="missing column 'tokens'"):
        CATALOGUE["decisions"].save(run, table, name="s", source="x", shard="00000")
    wrong = table.append_column("tokens", pa.array(["many"]))
    with pytest.raises(ValueError, match="column 'tokens' is string"):
        CATALOGUE["decisions"].save(run, wrong, name="s", source="x", shard="00000")
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written


def test_instances_keep_sibling_artifacts_and_temporary_names_apart(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "rubrics").mkdir()
    for name in ("g0.jsonl", "g0.rejected.jsonl", "g1.jsonl", "_generated.json", ".g2.jsonl.abcd1234.tmp",
                 "g0.jsonl.bak", "naïve é.jsonl"):
        (tmp_path / "rubrics" / name).write_text("")
    assert CATALOGUE["rubric"].instances(run) == [{"group": "g0"}, {"group": "g1"}, {"group": "naïve é"}]
    assert CATALOGUE["rubric_rejected"].instances(run) == [{"group": "g0"}]
    assert CATALOGUE.owner_of("rubrics/g0.rejected.jsonl").key == "rubric_rejected"
    assert CATALOGUE.owner_of("rubrics/g0.jsonl.bak").key == "rubric_backup"
    assert CATALOGUE.owner_of("students/g0/ridge.npz").key == "student"
    assert CATALOGUE.owner_of("students/g0/metrics.json").key == "metrics"
    assert CATALOGUE.owner_of("somewhere/else.txt") is None


def test_done_markers_keep_numpy_counts(tmp_path):
    run = RunDir(tmp_path)
    marker = run.mark_done("ingest", "f00", {"records": np.int64(3), "share": np.float32(0.5), "path": tmp_path})
    assert marker["counts"] == {"records": 3, "share": 0.5, "path": str(tmp_path)}
    assert CATALOGUE["done"].load(run, stage="ingest").counts == marker["counts"]
    assert run.is_done("ingest", "f00")
    # Fields the runner adds (what a stage read, for the dry run) are kept, not dropped by the schema.
    run.mark_done("group", "f01", {}, reads={"inventory.json": "abc"})
    assert CATALOGUE["done"].load(run, stage="group").model_extra == {"reads": {"inventory.json": "abc"}}


def test_status_reads_markers_and_usage_through_the_catalogue(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group", "discover"))
    (run.usage_dir / "annotate.json").write_text(json.dumps({"stage": "annotate", "sessions": "many"}))
    run.marker_path("group").write_text("{not json")
    info = api.status(run.root)
    assert info["stages"]["ingest"]["counts"]["records"] == 2980
    assert info["stages"]["group"] == {"stage": "group", "done": False, "state": "not done", "reasons": []}  # damaged
    assert info["teacher_usage"]["discover"]["model"] == "qwen2.5-coder-1.5b"
    assert info["teacher_usage"]["annotate"] == {"error": "unreadable usage file"}


def test_the_report_shows_the_config_fingerprint_from_the_config_artifact(tmp_path):
    from mira.report import render_report

    run = build_fixture_run(tmp_path / "run", stages=("ingest",))
    saved = CATALOGUE["config"].load(run)
    assert saved.values["name"] == "fixture-run" and re.fullmatch(r"[0-9a-f]{8,}", saved.fingerprint)
    page, _ = render_report(run)
    assert saved.fingerprint in page
