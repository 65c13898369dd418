"""`mira compare` never replaces a selection it did not build (issue 26 item 6)."""

import json
import shutil

import pytest
from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.core.config import CompareConfig, ConfigError
from mira.run.config_file import dump_config
from mira.run.rundir import RunDir
from mira.selection.named import selection_dir
from tests.engines.doubles import build_scored_run, make_config

METHODS = [{"method": "mira", "mode": "group"}, {"method": "random", "mode": "source"}]
EXCLUDE = "reliability.exclude=[pycode/a01]"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config_file(scored, tmp_path):
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    config = make_config(corpus, tmp_path / "run", compare=CompareConfig.model_validate({"methods": METHODS}))
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    return path, config


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_compare_with_other_reliability_settings_keeps_the_runs_selection(scored, tmp_path):
    path, _ = _config_file(scored, tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, ["select", str(path)])
    assert first.exit_code == 0 and "select: done" in first.output, first.output
    run = RunDir(tmp_path / "run")
    mine = selection_dir(run, "mira-group-50pct")
    before = _files(mine)

    out = runner.invoke(main, ["compare", str(path), "--set", EXCLUDE])
    assert out.exit_code == 0, out.output
    assert _files(mine) == before  # byte-identical
    summary = json.loads(run.path("compare", "summary.json").read_text())
    names = [m["name"] for m in summary["methods"]]
    assert names == ["mira-group-50pct-compare", "random-source-50pct"]
    assert summary["methods"][0]["instead_of"] == "mira-group-50pct" and summary["methods"][1]["instead_of"] is None
    built = json.loads((selection_dir(run, "mira-group-50pct-compare") / "summary.json").read_text())
    assert built["fingerprint"] != json.loads((mine / "summary.json").read_text())["fingerprint"]
    assert "mira-group-50pct-compare" in out.output and "selection/mira-group-50pct is kept" in out.output

    again = runner.invoke(main, ["select", str(path)])
    assert again.exit_code == 0 and "select: skipped (done)" in again.output, again.output
    assert json.loads(run.path("selection", "_current.json").read_text())["name"] == "mira-group-50pct"
    assert _files(mine) == before

    # The same settings as the run's: the run's selection is reused, not copied.
    same = runner.invoke(main, ["compare", str(path)])
    assert same.exit_code == 0, same.output
    summary = json.loads(run.path("compare", "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == ["mira-group-50pct", "random-source-50pct"]
    assert not summary["methods"][0]["rebuilt"] and _files(mine) == before
    # Other settings again: compare rebuilds its own copy in place, still never the run's.
    other = runner.invoke(main, ["compare", str(path), "--set", "reliability.exclude=[pycode/a02]", "--dry-run"])
    assert "mira-group-50pct-compare: select (mira, group); selection/mira-group-50pct is kept" in other.output
    other = runner.invoke(main, ["compare", str(path), "--set", "reliability.exclude=[pycode/a02]"])
    assert other.exit_code == 0, other.output
    summary = json.loads(run.path("compare", "summary.json").read_text())
    assert summary["methods"][0]["name"] == "mira-group-50pct-compare" and summary["methods"][0]["rebuilt"]
    assert _files(mine) == before


@pytest.mark.slow
def test_compare_rebuilds_its_own_selections_in_place(scored, tmp_path):
    # No `mira select` yet: the default names are compare's to build and to rebuild.
    _, config = _config_file(scored, tmp_path)
    api.compare(config)
    run = RunDir(tmp_path / "run")
    ledger = json.loads(run.path("compare", "selections.json").read_text())["built"]
    assert sorted(ledger) == ["mira-group-50pct", "random-source-50pct"]
    config.reliability.exclude = ["pycode/a01"]
    result = api.compare(config)
    assert [m["name"] for m in result["methods"]] == ["mira-group-50pct", "random-source-50pct"]
    assert all(m["rebuilt"] and m["instead_of"] is None for m in result["methods"])
    assert not selection_dir(run, "mira-group-50pct-compare").exists()
    # `mira select` then makes the run's own: the next compare with other settings leaves it alone.
    config.reliability.exclude = []
    api.run_one("select", config)
    before = _files(selection_dir(run, "mira-group-50pct"))
    config.reliability.exclude = ["pycode/a01"]
    result = api.compare(config)
    assert result["methods"][0]["name"] == "mira-group-50pct-compare"
    assert _files(selection_dir(run, "mira-group-50pct")) == before


@pytest.mark.slow
def test_a_foreign_selection_under_both_names_is_refused(scored, tmp_path):
    _, config = _config_file(scored, tmp_path)
    api.run_one("select", config)
    run = RunDir(tmp_path / "run")
    # A selection of the user's own under the name compare would fall back to.
    shutil.copytree(selection_dir(run, "mira-group-50pct"), selection_dir(run, "mira-group-50pct-compare"))
    config.reliability.exclude = ["pycode/a01"]
    before = _files(run.root / "selection")
    with pytest.raises(ConfigError, match="compare did not build, from other settings; it replaces neither"):
        api.compare(config)
    assert _files(run.root / "selection") == before
