"""compare.ablate: MIRA's selection again without each cell (or source) it ranks by, judged against it."""

import json

import pytest

from mira import api
from mira.compare import method_configs
from mira.compare.ablation import used_cells
from mira.config import ConfigError, MethodSpec
from mira.rundir import RunDir
from mira.selections import selection_dir
from tests.compare.test_compare_proxy import StandIn, _config
from tests.engines.doubles import build_scored_run


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _ablating(scored, tmp_path, how):
    config = _config(scored, tmp_path)
    return config.model_copy(update={"compare": config.compare.model_copy(update={"ablate": how})})


def test_one_selection_per_used_cell_and_each_masks_only_its_cell(scored, tmp_path):
    config = _ablating(scored, tmp_path, "cells")
    run = RunDir(tmp_path / "run")
    used = used_cells(config, run)
    assert used and all(used.values())  # the fixture's students are reliable on some cells
    methods = method_configs(config, run)
    ablations = [(spec, c) for spec, c in methods if spec.exclude]
    assert sorted(spec.exclude[0] for spec, _ in ablations) == sorted(f"{s}/{a}" for s, an in used.items() for a in an)
    for spec, method_config in ablations:
        source, anchor = spec.exclude[0].split("/")
        assert method_config.selection.name == f"mira-group-50pct-without-{source}.{anchor}"
        after = used_cells(method_config, run)  # the cell is gone, every other one is still used
        assert after.get(source, []) == [a for a in used[source] if a != anchor]
        assert {s: a for s, a in after.items() if s != source} == {s: a for s, a in used.items() if s != source}


def test_sources_ablation_and_compare_judges_each_against_its_base(scored, tmp_path):
    config = _ablating(scored, tmp_path, "sources")
    run = RunDir(tmp_path / "run")
    used = used_cells(config, run)
    result = api.compare(config, proxy_api=StandIn().api)
    ablations = {m["name"]: m for m in result["methods"] if m["ablation_of"]}
    assert sorted(m["exclude"][0] for m in ablations.values()) == sorted(f"{s}/*" for s in used)
    for name, m in ablations.items():
        assert m["ablation_of"] == "mira-group-50pct"
        source = m["exclude"][0].split("/")[0]
        summary = json.loads((selection_dir(run, name) / "summary.json").read_text())
        # Without its cells the source is unscored: it keeps the random share, nothing ranked.
        assert summary["sources"][source]["unscored"] == summary["sources"][source]["records_in"] - \
            summary["sources"][source]["quarantined"]
    pairs = {(v["a"], v["b"]) for v in result["proxy"]["verdicts"]}
    for name in ablations:
        assert (name, "mira-group-50pct") in pairs and (name, "random-source-50pct") in pairs
        assert not any(name in pair for pair in pairs - {(name, "mira-group-50pct"), (name, "random-source-50pct")})
    page = (run.root / "report" / "index.html").read_text()
    assert "<h3>Ablations</h3>" in page and "(every anchor)" in page


def test_ablate_needs_the_selection_it_ablates_and_exclude_is_for_mira_only(scored, tmp_path):
    config = _ablating(scored, tmp_path, "cells")
    config = config.model_copy(update={"selection": config.selection.model_copy(update={"mode": "source"})})
    with pytest.raises(ConfigError, match="compare.ablate needs .*mode: source"):
        method_configs(config, RunDir(tmp_path / "run"))
    with pytest.raises(ValueError, match="does not apply to random"):
        MethodSpec(method="random", mode="source", exclude=["a/*"])


def test_dry_run_lists_the_ablations(scored, tmp_path):
    config = _ablating(scored, tmp_path, "sources")
    from mira.compare import plan

    lines = plan(config)
    assert sum("without" in line and line.split(":")[0].endswith(tuple(f"{s}.all" for s in used_cells(
        config, RunDir(tmp_path / "run")))) for line in lines) == len(used_cells(config, RunDir(tmp_path / "run")))


def test_nothing_to_ablate_is_said_not_silent(scored, tmp_path):
    config = _ablating(scored, tmp_path, "cells")
    config = config.model_copy(update={"reliability": config.reliability.model_copy(update={"exclude": ["*/*"]})})
    from mira.compare import plan

    assert used_cells(config, RunDir(tmp_path / "run")) == {}
    assert any("nothing to ablate" in line for line in plan(config))


def test_without_proxy_training_the_ablations_are_still_shown(scored, tmp_path):
    config = _ablating(scored, tmp_path, "sources")
    off = config.compare.proxy.model_copy(update={"enabled": False})
    config = config.model_copy(update={"compare": config.compare.model_copy(update={"proxy": off})})
    result = api.compare(config)
    assert result["proxy"] is None and any(m["ablation_of"] for m in result["methods"])
    page = (RunDir(tmp_path / "run").root / "report" / "index.html").read_text()
    assert "<h3>Ablations</h3>" in page and "Proxy training is off, so only the selections" in page


def test_cli_ablate_flag_runs_the_ablations_and_prints_their_verdicts(scored, tmp_path):
    from click.testing import CliRunner

    from mira.cli import main
    from mira.config_files import dump_config

    config = _config(scored, tmp_path)
    off = config.compare.proxy.model_copy(update={"enabled": False})
    config = config.model_copy(update={"compare": config.compare.model_copy(update={"proxy": off})})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    sources = used_cells(config, RunDir(tmp_path / "run"))
    plan = CliRunner().invoke(main, ["compare", str(path), "--ablate", "sources", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert sum(f"without {s}/*" in plan.output for s in sources) == len(sources)
    bad = CliRunner().invoke(main, ["compare", str(path), "--ablate", "rows"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    out = CliRunner().invoke(main, ["compare", str(path), "--ablate", "sources"])
    assert out.exit_code == 0, out.output
    assert all(f"mira-group-50pct-without-{s}.all" in out.output for s in sources)


def test_an_entry_naming_its_own_cells_without_its_base_gets_no_made_up_verdict(scored, tmp_path):
    config = _config(scored, tmp_path)
    source = next(iter(used_cells(config, RunDir(tmp_path / "run"))))
    methods = [MethodSpec(method="mira", mode="source", exclude=[f"{source}/*"]),
               MethodSpec(method="random", mode="source")]
    config = config.model_copy(update={"compare": config.compare.model_copy(update={"methods": methods})})
    result = api.compare(config, proxy_api=StandIn().api)
    (entry,) = [m for m in result["methods"] if m["ablation_of"]]
    assert entry["ablation_of"] == "mira-source-50pct" and entry["exclude"] == [f"{source}/*"]
    page = (RunDir(tmp_path / "run").root / "report" / "index.html").read_text()
    assert "its base was not compared" in page
