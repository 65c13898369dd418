"""Every ranking method in every retention mode, and per-source retention beside the verdicts (issue 26 item 1)."""

import json
import shutil

import pytest

from mira import api
from mira.core.config import CompareConfig
from mira.evaluation.tables import source_range, summary_lines
from mira.run.rundir import RunDir
from tests.compare.test_compare_proxy import PairedStandIn
from tests.engines.doubles import build_scored_run, make_config

MODES = ("source", "group", "global")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config(scored, tmp_path, methods, proxy=False):
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    compare: dict = {"methods": methods}
    if proxy:
        held_out = tmp_path / "heldout.jsonl"
        held_out.write_text("".join(json.dumps({"id": f"h{i}", "text": f"held-out text number {i} and more"}) + "\n"
                                    for i in range(40)))
        compare |= {"eval_sets": [{"name": "heldout", "path": str(held_out)}],
                    "proxy": {"enabled": True, "seeds": 3, "train_bytes": 4096, "eval_bytes": 2000}}
    return make_config(corpus, tmp_path / "run", compare=CompareConfig.model_validate(compare))


def test_the_default_methods_rank_within_sources_first():
    methods = CompareConfig().methods
    assert [(m.method, m.mode) for m in methods[:5]] == [(m, "source") for m in
                                                          ("mira", "random", "length", "perplexity", "dataman")]
    assert {(m.method, m.mode) for m in methods[5:]} == {("mira", "group"), ("mira", "global"), ("length", "group"),
                                                         ("perplexity", "global"), ("dataman", "global")}


@pytest.mark.slow
def test_perplexity_and_length_in_every_mode_are_three_selections(scored, tmp_path):
    methods = [{"method": "random", "mode": "source"}] + [
        {"method": m, "mode": mode} for m in ("perplexity", "length") for mode in MODES]
    config = _config(scored, tmp_path, methods)
    result = api.compare(config)
    names = [m["name"] for m in result["methods"]]
    assert names == ["random-source-50pct"] + [f"{m}-{mode}-50pct" for m in ("perplexity", "length") for mode in MODES]
    assert [m["mode"] for m in result["methods"]] == ["source"] + list(MODES) * 2
    # Each mode keeps another set of records (the same ranking key, other cutoffs).
    kept = {n: result["overlap"]["matrix"][names.index(n)] for n in names}
    assert kept["perplexity-source-50pct"][names.index("perplexity-global-50pct")] < 1.0
    # Within sources every source keeps about the budget's share; one global cutoff moves the mixture.
    spread = {}
    for name in names:
        shares = [e["token_share"] for e in result["retention"][name]["sources"].values()
                  if e["token_share"] is not None]
        spread[name] = max(shares) - min(shares)
    for method in ("perplexity", "length"):
        assert spread[f"{method}-source-50pct"] < spread[f"{method}-global-50pct"], spread
    assert spread["perplexity-source-50pct"] < 0.2
    # The selections' own summaries say the mode they ran in.
    run = RunDir(tmp_path / "run")
    for name in names[1:]:
        summary = json.loads(run.path("selection", name, "summary.json").read_text())
        assert summary["mode"] == name.split("-")[1], name


@pytest.mark.slow
def test_per_source_retention_sits_beside_each_verdict(scored, tmp_path):
    methods = [{"method": "length", "mode": "source"}, {"method": "random", "mode": "source"},
               {"method": "length", "mode": "global"}]
    config = _config(scored, tmp_path, methods, proxy=True)
    result = api.compare(config, proxy_api=PairedStandIn().api)
    lines = [text for text, _ in summary_lines(result)]
    assert "per source" in lines[0]
    for name in ("length-source-50pct", "length-global-50pct"):
        low, high = (float(p.rstrip("%")) for p in source_range(result, name).split("-"))
        shares = [100 * e["token_share"] for e in result["retention"][name]["sources"].values()]
        assert (low, high) == (round(min(shares)), round(max(shares)))
        row = next(t for t in lines if t.startswith(name))  # the selection table
        assert source_range(result, name) in row
        listed = next(t for t in lines if t.startswith(f"  {name}: "))
        assert all(f"{s} {e['token_share']:.0%}" in listed
                   for s, e in result["retention"][name]["sources"].items())
    header = next(i for i, t in enumerate(lines) if t.startswith("proxy: each against random-source-50pct"))
    verdict_rows = lines[header + 2: header + 4]
    assert [r.split()[0] for r in verdict_rows] == ["length-source-50pct", "length-global-50pct"]
    for row in verdict_rows:
        assert source_range(result, row.split()[0]) in row
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "a: kept per source" in page
