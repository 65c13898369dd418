"""`mira compare` on a tiny scored run: the metrics against independent recomputations, reuse, CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from scipy.stats import spearmanr

from mira import api
from mira.cli import main
from mira.core.config import CompareConfig, ConfigError
from mira.run.config_file import dump_config
from mira.run.rundir import RunDir
from mira.selection.named import selection_dir
from tests.engines.doubles import build_scored_run, make_config

METHODS = [{"method": "mira", "mode": "group"}, {"method": "random", "mode": "source"},
           {"method": "length", "mode": "group"}]
NAMES = ["mira-group-50pct", "random-source-50pct", "length-group-50pct"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config(scored, tmp_path, **compare):
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    compare.setdefault("methods", METHODS)
    return make_config(corpus, tmp_path / "run", compare=CompareConfig.model_validate(compare))


def _decisions(run: RunDir, name: str) -> dict[str, dict]:
    """id -> decision row, read straight from the selection's files."""
    rows = {}
    for path in sorted((selection_dir(run, name) / "_decisions").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            rows[row["id"]] = {**row, "source": path.parent.name}
    return rows


@pytest.mark.slow
def test_compare_summary_metrics_match_the_decisions(scored, tmp_path):
    run = RunDir(tmp_path / "run")
    bad_ids = ["doc-abc", "doc-base64", "doc-bisect", "qa-nope"]
    config = _config(scored, tmp_path, known_bad=bad_ids, known_good="title")
    result = api.compare(config)
    assert result == json.loads(run.path("compare", "summary.json").read_text())
    assert [m["name"] for m in result["methods"]] == NAMES and all(m["rebuilt"] for m in result["methods"])
    rows = {n: _decisions(run, n) for n in NAMES}
    usable = {i for i, d in rows[NAMES[0]].items() if not d["reason"].startswith("quarantined")}

    def kept_tokens(name, ids=None):
        return sum(d["tokens"] for i, d in rows[name].items() if d["kept"] and (ids is None or i in ids))

    # Overlap: share of the row's kept tokens the column kept too.
    for a in NAMES:
        for b in NAMES:
            both = {i for i, d in rows[b].items() if d["kept"]}
            expected = kept_tokens(a, both) / kept_tokens(a)
            got = result["overlap"]["matrix"][NAMES.index(a)][NAMES.index(b)]
            assert got == pytest.approx(expected, abs=1e-6), (a, b)
    assert result["overlap"]["matrix"][0][0] == 1.0

    # Length bias: mean kept length against the mean of every usable record.
    input_mean = np.mean([rows[NAMES[0]][i]["tokens"] for i in usable])
    for name in NAMES:
        kept = [d["tokens"] for d in rows[name].values() if d["kept"]]
        bias = result["length_bias"][name]
        assert bias["kept_mean"] == pytest.approx(np.mean(kept), abs=0.01)
        assert bias["input_mean"] == pytest.approx(input_mean, abs=0.01)
        assert bias["kept_median"] == np.median(kept)
    assert result["length_bias"]["length-group-50pct"]["mean_ratio"] > 1.5  # longest first is length-biased

    # Known-bad ids: what each method kept of them (one id does not exist and is reported).
    bad = result["known_bad"]
    assert bad["missing"] == 1 and bad["missing_ids"] == ["qa-nope"] and bad["records"] == 3
    for name in NAMES:
        kept = [i for i in bad_ids[:3] if rows[name][i]["kept"]]
        assert bad["methods"][name]["kept"] == len(kept)
        assert bad["methods"][name]["record_share"] == pytest.approx(len(kept) / 3)
    # Known-good by field: the docs records that carry a `title`.
    titled = {json.loads(line)["id"] for line in (Path(config.sources[1].path)).read_text().splitlines()
              if line.startswith("{\"id\": \"doc-") and "\"title\"" in line}
    good = result["known_good"]
    assert good["field"] == "title" and good["records"] == len(titled) == 10
    for name in NAMES:
        assert good["methods"][name]["kept"] == sum(rows[name][i]["kept"] for i in titled)

    # Rank agreement: Spearman over the records both methods ranked.
    agreement = result["rank_agreement"]
    for a in NAMES:
        for b in NAMES:
            common = [i for i in rows[a] if rows[a][i]["rank"] is not None and rows[b][i]["rank"] is not None]
            rho = spearmanr([rows[a][i]["key"] for i in common], [rows[b][i]["key"] for i in common])[0]
            got = agreement["matrix"][NAMES.index(a)][NAMES.index(b)]
            assert got == pytest.approx(rho, abs=1e-6), (a, b)
            assert agreement["records"][NAMES.index(a)][NAMES.index(b)] == len(common)

    # Retention per source equals each selection's own summary.
    for name in NAMES:
        summary = json.loads((selection_dir(run, name) / "summary.json").read_text())
        for source, counts in summary["sources"].items():
            share = result["retention"][name]["sources"][source]["token_share"]
            assert share == pytest.approx(counts["kept_tokens"] / counts["tokens_in"], abs=1e-6)

    page = run.path("report", "index.html").read_text()
    assert 'id="comparison" data-state="filled"' in page and "known-bad" in page.lower()
    assert "Out of date" not in page
    # A selection re-made from other settings after the comparison: the report says the numbers are stale.
    shutil.rmtree(selection_dir(run, "length-group-50pct"))
    from mira.report import render_report

    page, states = render_report(run)
    assert states["comparison"] == "filled" and "Out of date:</strong> length-group-50pct" in page


@pytest.mark.slow
def test_a_second_compare_reuses_every_selection_and_never_rescores(scored, tmp_path):
    config = _config(scored, tmp_path)
    api.compare(config)
    run = RunDir(tmp_path / "run")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run.root / "selection").rglob("*") if p.is_file()}
    scores = {p: p.stat().st_mtime_ns for p in (run.root / "scores").rglob("*") if p.is_file()}
    again = api.compare(config)
    assert not any(m["rebuilt"] for m in again["methods"])
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before
    assert {p: p.stat().st_mtime_ns for p in scores} == scores
    # A new budget is a new set of selections; the old ones stay.
    config.compare.budget = 0.3
    third = api.compare(config)
    assert [m["name"] for m in third["methods"]] == [n.replace("50pct", "30pct") for n in NAMES]
    assert all(selection_dir(run, n).exists() for n in NAMES)


def test_unknown_or_duplicate_methods_fail_before_any_work(scored, tmp_path):
    config = _config(scored, tmp_path, methods=[{"method": "mira"}, {"method": "no-such-method"}])
    with pytest.raises(ConfigError, match=r"compare.methods\[1\] \(no-such-method\): .*mira"):
        api.compare(config)
    assert not (tmp_path / "run" / "selection").exists()
    config = _config(scored, tmp_path, methods=[{"method": "random", "mode": "group"},
                                                {"method": "random", "mode": "source"}])
    with pytest.raises(ConfigError, match="same selection"):
        api.compare(config)
    with pytest.raises(ValueError, match="twice"):
        CompareConfig.model_validate({"methods": [{"method": "mira"}, {"method": "mira"}]})


@pytest.mark.parametrize("compare, message", [
    ({"known_bad": "titel"}, "compare.known_bad: no record of the corpus has a field 'titel'; did you mean 'title'?"),
    ({"known_good": "zzz"}, "compare.known_good: no record of the corpus has a field 'zzz' "
                            "(fields: answer, id, path, question, text, title)"),
    ({"methods": [{"method": "mira"}, {"method": "mira", "mode": "source", "exclude": ["docs/a07"]}]},
     "compare.methods[1].exclude 'docs/a07': group g1 of source docs has no anchor 'a07' (its anchors: a00, a01)")])
def test_what_would_compare_nothing_is_refused_before_any_work(scored, tmp_path, compare, message):
    # A misspelled known_bad field or excluded anchor was accepted and measured or masked nothing.
    config = _config(scored, tmp_path, **compare)
    with pytest.raises(ConfigError) as refused:
        api.compare(config)
    assert str(refused.value) == message
    assert not (tmp_path / "run" / "selection").exists()
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    plan = CliRunner().invoke(main, ["compare", str(path), "--dry-run"])
    assert plan.exit_code == 2 and plan.output.strip().splitlines()[-1] == f"error: {message}"


def test_an_excluded_anchor_of_reliability_is_checked_by_compare_too(scored, tmp_path):
    config = _config(scored, tmp_path)
    config.reliability.exclude = ["*/a09"]
    with pytest.raises(ConfigError, match=r"reliability.exclude '\*/a09': no group has an anchor 'a09'"):
        api.compare(config)


def test_ingest_lists_as_many_fields_as_compare_trusts():
    from mira.evaluation.compare import LISTED_FIELDS
    from mira.stages.ingest import MAX_FIELDS

    assert LISTED_FIELDS == MAX_FIELDS


def test_compare_needs_scores(tmp_path):
    from mira.core.errors import StageNotReady

    config = make_config([], tmp_path / "empty", compare=CompareConfig.model_validate({"methods": METHODS}))
    with pytest.raises(StageNotReady, match="score"):
        api.compare(config)


@pytest.mark.slow
def test_cli_compare_prints_a_table_and_dry_run_plans(scored, tmp_path):
    config = _config(scored, tmp_path, known_bad=["doc-abc"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    runner = CliRunner()
    plan = runner.invoke(main, ["compare", str(path), "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "mira-group-50pct: select (mira, group)" in plan.output and "proxy training: off" in plan.output
    out = runner.invoke(main, ["compare", str(path)])
    assert out.exit_code == 0, out.output
    for name in NAMES:
        assert name in out.output
    assert "report:" in out.output
    again = runner.invoke(main, ["compare", str(path), "--dry-run"])
    assert "mira-group-50pct: reuse" in again.output
    data = yaml.safe_load(path.read_text())
    data["compare"]["methods"] = [{"method": "nope"}]
    path.write_text(yaml.safe_dump(data))
    bad = runner.invoke(main, ["compare", str(path)])
    assert bad.exit_code == 2 and "compare.methods[0] (nope)" in bad.output and "Traceback" not in bad.output
    data["compare"]["methods"] = [{"method": "dsir"}]  # a method without its input (dsir_target)
    path.write_text(yaml.safe_dump(data))
    bad = runner.invoke(main, ["compare", str(path)])
    assert bad.exit_code == 2 and "(dsir): selection.method 'dsir' needs" in bad.output
    assert bad.output.strip().count("\n") == 0
