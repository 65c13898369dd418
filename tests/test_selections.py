"""Named selections: several selections coexist in one run and never clobber each other."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.core.config import ConfigError, SelectionConfig
from mira.report import render_report
from mira.run.rundir import RunDir
from mira.selection.build import select_corpus
from mira.selection.named import (
    budget_label,
    current_selection,
    default_name,
    list_selections,
    selection_dir,
    selection_name,
)
from tests.engines.doubles import build_scored_run, make_config, tree_bytes


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config(scored, tmp_path, **selection):
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    return make_config(corpus, tmp_path / "run", selection=SelectionConfig(**selection))


def _snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_default_names_say_method_mode_and_budget():
    assert default_name("mira", "group", 0.5) == "mira-group-50pct"
    assert default_name("mira", "source", 0.125) == "mira-source-12.5pct"
    assert default_name("length", "global", 3000) == "length-global-3000tok"
    assert default_name("random", "group", 0.3) == "random-source-30pct"  # random is always per source
    assert budget_label(1.0) == "100pct"


def test_selections_coexist_and_reselecting_one_never_touches_another(scored, tmp_path):
    half = _config(scored, tmp_path, budget=0.5)
    api.run_one("select", half)
    run = RunDir(tmp_path / "run")
    first = selection_dir(run, "mira-group-50pct")
    before = _snapshot(first)
    assert (first / "summary.json").exists() and list((first / "_decisions").glob("*/*.parquet"))

    other = _config(scored, tmp_path, budget=0.3, method="random")
    api.run_one("select", other)
    second = selection_dir(run, "random-source-30pct")
    assert _snapshot(first) == before  # untouched, byte for byte and mtime
    assert [s["name"] for s in list_selections(run)] == ["mira-group-50pct", "random-source-30pct"]
    assert current_selection(run) == second  # the last `mira select` is the one the report reads

    after_second = _snapshot(second)
    api.run_one("select", half, force=True)  # re-selecting the first rewrites only the first
    assert _snapshot(second) == after_second
    assert tree_bytes(first) == {k: v for k, (_, v) in before.items()}  # deterministic: same bytes again
    assert current_selection(run) == first

    summary = json.loads((first / "summary.json").read_text())
    assert summary["name"] == "mira-group-50pct" and summary["fingerprint"]
    assert json.loads((second / "summary.json").read_text())["totals"]["kept_tokens"] < \
        summary["totals"]["kept_tokens"]
    assert not [p.name for p in (run.root / "selection").iterdir() if p.name.startswith(".")]


def test_status_and_report_list_every_selection(scored, tmp_path):
    api.run_one("select", _config(scored, tmp_path, budget=0.5))
    api.run_one("select", _config(scored, tmp_path, budget=0.4, method="length", name="longest"))
    run = RunDir(tmp_path / "run")
    info = api.status(run.root)
    assert {s["name"]: s["current"] for s in info["selections"]} == {"mira-group-50pct": False, "longest": True}
    out = CliRunner().invoke(main, ["status", str(run.root)])
    assert out.exit_code == 0, out.output
    assert "selection mira-group-50pct: mira/group" in out.output
    assert "selection longest: length/group" in out.output and "(current" in out.output
    page, states = render_report(run)
    assert states["selections"] == "filled" and states["retention"] == "filled"
    assert "mira-group-50pct" in page and "longest" in page


def test_a_folder_that_is_not_a_selection_is_never_replaced(scored, tmp_path):
    config = _config(scored, tmp_path, name="keep_me")
    mine = tmp_path / "run" / "selection" / "keep_me"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own file")
    with pytest.raises(ConfigError, match="not a selection"):
        api.run_one("select", config)
    assert (mine / "notes.txt").read_text() == "my own file"


def test_a_selection_written_before_names_is_still_read(scored, tmp_path):
    api.run_one("select", _config(scored, tmp_path))
    run = RunDir(tmp_path / "run")
    legacy = run.path("selection")
    # The old layout: one selection straight under selection/.
    named = selection_dir(run, "mira-group-50pct")
    for item in named.iterdir():
        item.rename(legacy / item.name)
    named.rmdir()
    (legacy / "_current.json").unlink()
    assert current_selection(run) == legacy and list_selections(run) == []
    assert render_report(run)[1]["retention"] == "filled"


# The methods that need nothing but the scores (dsir needs a target file, perplexity its reference
# model, dataman its own teacher labels; their own tests cover them).
METHODS = ["mira", "random", "length"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_names_its_real_mode_and_loads_with_datasets(scored, tmp_path, method):
    datasets = pytest.importorskip("datasets")
    config = _config(scored, tmp_path, method=method, mode="group", budget=0.5, output_formats=["parquet"])
    select_corpus(config, RunDir(tmp_path / "run"))
    path = selection_dir(RunDir(tmp_path / "run"), selection_name(config))
    summary = json.loads((path / "summary.json").read_text())
    assert selection_name(config) == default_name(method, summary["mode"], 0.5)
    for source, counts in summary["sources"].items():
        files = [str(p) for p in sorted((path / source).glob("*.parquet"))]
        if not counts["kept"]:
            assert not files
            continue
        dataset = datasets.load_dataset("parquet", data_files=files, split="train",
                                        cache_dir=str(tmp_path / "hf-cache"))
        assert len(dataset) == counts["kept"] and "mira_score" in dataset.column_names
