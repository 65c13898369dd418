"""compare.ablate: MIRA's selection again without each cell (or source) it ranks by, judged against it."""

import json

import pytest

from mira import api
from mira.core.config import ConfigError, MethodSpec
from mira.evaluation.ablation import used_cells
from mira.evaluation.compare import method_configs
from mira.run.rundir import RunDir
from mira.selection.named import selection_dir
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
    from mira.evaluation.compare import plan

    lines = plan(config)
    assert sum("without" in line and line.split(":")[0].endswith(tuple(f"{s}.all" for s in used_cells(
        config, RunDir(tmp_path / "run")))) for line in lines) == len(used_cells(config, RunDir(tmp_path / "run")))


def test_nothing_to_ablate_is_said_not_silent(scored, tmp_path):
    config = _ablating(scored, tmp_path, "cells")
    config = config.model_copy(update={"reliability": config.reliability.model_copy(update={"exclude": ["*/*"]})})
    from mira.evaluation.compare import plan

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
    from mira.run.config_file import dump_config

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


def _verdict(a, b, eval_set, diff, p):
    return {"a": a, "b": b, "eval_set": eval_set, "diff": diff, "low": diff - 0.05, "high": diff + 0.05, "p": p,
            "alpha": 0.05, "text": f"{a} - {b}"}


def _family(cells):
    """Methods and verdicts of a cells ablation: cells = {cell: [(diff, p) per eval set]}."""
    methods = [{"name": "mira", "ablation_of": None, "exclude": []}, {"name": "random", "ablation_of": None}]
    verdicts = []
    for cell, results in cells.items():
        name = f"mira-without-{cell}"
        methods.append({"name": name, "ablation_of": "mira", "exclude": [cell]})
        for i, (diff, p) in enumerate(results):
            verdicts.append(_verdict(name, "mira", f"e{i}", diff, p))
            verdicts.append(_verdict(name, "random", f"e{i}", -diff, 0.0001))  # not the ablation family
    return methods, verdicts


def test_suggested_exclusions_survive_holms_correction_and_hurt_no_eval_set(scored, tmp_path):
    from mira.evaluation.ablation import suggest_exclusions, suggestion_text

    config = _config(scored, tmp_path)
    # 8 cells x 2 eval sets = 16 tests: Holm's first threshold is 0.05 / 16 = 0.003125.
    cells = {"code/a02": [(-0.226, 0.002), (0.030, 0.09)],  # the 72-label run's finding: suggested
             "code/a00": [(-0.05, 0.01), (0.0, 0.9)],  # significant alone, not over 16 tests
             "docs/a01": [(-0.2, 0.001), (0.04, 0.02)],  # better on one set, worse on the other
             "docs/a00": [(0.1, 0.0001), (0.0, 0.8)]}  # the cell helped: keep it
    cells |= {f"qa/a0{i}": [(0.001, 0.7), (-0.001, 0.8)] for i in range(4)}
    methods, verdicts = _family(cells)
    found = suggest_exclusions(config, methods, verdicts)
    assert found["tests"] == 16 and found["correction"] == "holm"
    assert [c["exclude"] for c in found["cells"]] == [["code/a02"]]
    assert found["cells"][0]["evidence"] == [{"eval_set": "e0", "diff": -0.226, "low": -0.276, "high": -0.176,
                                              "p": 0.002}]
    assert found["exclude"] == ["code/a02"]
    assert "--set 'reliability.exclude=[code/a02]'" in suggestion_text(found)
    # Holm steps down: with code/a02 rejected the next threshold is 0.05 / 15, which 0.003 clears.
    cells["code/a00"] = [(-0.05, 0.003), (0.0, 0.9)]
    found = suggest_exclusions(config, *_family(cells))
    assert sorted(c["exclude"][0] for c in found["cells"]) == ["code/a00", "code/a02"]
    # What reliability.exclude already holds is kept, and a cell already in it is not new.
    held = config.model_copy(update={"reliability": config.reliability.model_copy(update={"exclude": ["code/a02"]})})
    assert suggest_exclusions(held, *_family(cells))["exclude"] == ["code/a02", "code/a00"]
    only = {"code/a02": cells["code/a02"]}
    assert suggest_exclusions(held, *_family(only))["exclude"] == []
    assert "already in reliability.exclude" in suggestion_text(suggest_exclusions(held, *_family(only)))
    quiet = suggest_exclusions(config, *_family({"qa/a00": [(0.001, 0.7)]}))
    assert quiet["cells"] == [] and "no cell is better left out" in suggestion_text(quiet)
    # No ablation, or verdicts without noise estimates (one seed): nothing to suggest from.
    assert suggest_exclusions(config, *_family({})) is None
    assert suggest_exclusions(config, *_family({"qa/a00": [(-0.5, None)]})) is None


class PickyStandIn(StandIn):
    """The stand-in trainer, with verdicts that find one source better left out."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def verdict(self, a, b, labels=("a", "b")):
        out = super().verdict(a, b, labels)
        hurt = labels[0].endswith(f"without-{self.source}.all") and not labels[1].startswith("random")
        return out | {"diff": -0.2 if hurt else 0.0, "p": 0.0001 if hurt else 0.6, "alpha": 0.05,
                      "low": None, "high": None}


def test_compare_stores_and_reports_the_suggestion(scored, tmp_path):
    from mira.artifacts.compare import COMPARE_SUMMARY

    config = _ablating(scored, tmp_path, "sources")
    run = RunDir(tmp_path / "run")
    source = sorted(used_cells(config, run))[0]
    result = api.compare(config, proxy_api=PickyStandIn(source).api)
    assert result["suggestion"]["exclude"] == [f"{source}/*"]
    assert COMPARE_SUMMARY.load(run).suggestion.exclude == [f"{source}/*"]  # typed artifact reads it back
    page = (run.root / "report" / "index.html").read_text()
    assert "reliability.exclude=[" + f"{source}/*]" in page and ">suggested<" in page
