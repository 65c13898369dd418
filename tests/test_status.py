"""`mira status` agrees with the dry run, and answers only for a run directory (issue 27 item 12)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.pipeline.plan import explain
from tests.conftest import make_config


def _ingested(tmp_path: Path):
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"text": "one record"}) + "\n")
    config = make_config(tmp_path, [{"name": "a", "path": str(data)}])
    api.run_one("ingest", config)
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    return config, data, path


def test_a_stage_whose_input_changed_is_stale_not_done(tmp_path):
    # status showed [x] for stages the dry run would rerun.
    config, data, path = _ingested(tmp_path)
    run_dir = Path(config.run_dir)
    assert api.status(run_dir)["stages"]["ingest"]["state"] == "done"
    assert "[x] ingest" in CliRunner().invoke(main, ["status", str(run_dir)]).output
    with open(data, "a") as handle:
        handle.write(json.dumps({"text": "appended"}) + "\n")
    (plan,) = explain(config, ["ingest"])
    assert plan.state == "runs"
    for target in (run_dir, path):  # the run's saved config, or the user's
        stage = api.status(run_dir, None if target == run_dir else config)["stages"]["ingest"]
        assert (stage["state"], stage["reasons"]) == ("stale", plan.reasons)
        result = CliRunner().invoke(main, ["status", str(target)])
        assert result.exit_code == 0, result.output
        assert "[~] ingest" in result.output and "stale: input changed: files of source a" in result.output
        assert "[x]" not in result.output and "[ ] group" in result.output
    assert api.status(run_dir)["stages"]["group"]["state"] == "not done"


def test_status_of_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "mine.txt").write_text("not a run")
    for folder in ("/", str(tmp_path)):
        for args in ((), ("--json",)):
            result = CliRunner().invoke(main, ["status", folder, *args])
            assert result.exit_code == 2, result.output
            assert result.output.strip() == f"error: {folder} is not a mira run directory; give a run directory " \
                                            "or a config file"
    assert api.status("/")["is_run"] is False
    missing = CliRunner().invoke(main, ["status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no run directory at" in missing.output


def test_status_says_when_it_cannot_tell_staleness_and_still_lists_the_stages(tmp_path):
    config, _, _ = _ingested(tmp_path)
    run_dir = Path(config.run_dir)
    (run_dir / "config.yaml").write_text("sources: [not, a, mapping]\n")
    info = api.status(run_dir)
    assert info["stages"]["ingest"]["state"] == "unknown" and "cannot tell which stages are stale" in \
        info["states_unknown"]
    result = CliRunner().invoke(main, ["status", str(run_dir)])
    assert result.exit_code == 0 and "[x] ingest" in result.output and "cannot tell" in result.output
