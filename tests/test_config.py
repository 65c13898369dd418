from pathlib import Path

import pytest

from mira.core.config import ConfigError, RunConfig
from mira.run.config_file import load_config


def test_defaults_validate_and_fingerprint_is_stable():
    a, b = RunConfig(), RunConfig()
    assert a.fingerprint() == b.fingerprint()
    b.selection.budget = 0.3
    assert a.fingerprint() != b.fingerprint()
    assert a.section_hash("ingest") == b.section_hash("ingest")


def test_yaml_paths_resolve_relative_to_the_file(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    cfg_path = tmp_path / "sub" / "c.yaml"
    cfg_path.write_text("name: x\nrun_dir: ../runs/x\nsources:\n  - {name: a, path: data/a.jsonl}\n")
    cfg = load_config(cfg_path)
    assert cfg.sources[0].path == str((tmp_path / "sub" / "data" / "a.jsonl").resolve())
    assert cfg.run_dir == str((tmp_path / "runs" / "x").resolve())


def test_overrides_are_typed(tmp_path: Path):
    cfg = load_config(None, ["selection.budget=0.25", "teacher.concurrency=4", "grouping.k=3"])
    assert cfg.selection.budget == 0.25 and cfg.teacher.concurrency == 4 and cfg.grouping.k == 3


@pytest.mark.parametrize("override, fragment", [
    (["selection.budgett=0.2"], "selection.budgett"),
    (["selection.budget=-1"], "selection.budget"),
    (["teacher.provider=magic"], "teacher.provider"),
    (["nonsense"], "section.key=value"),
])
def test_bad_config_gives_one_line_error(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_yaml_and_missing_file_are_one_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_duplicate_source_names_rejected():
    with pytest.raises(ConfigError, match="duplicate source name"):
        load_config(None, ["sources=[{name: a, path: x}, {name: a, path: y}]"])


def test_api_key_is_never_part_of_the_config(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    cfg = RunConfig()
    assert "sk-secret-123" not in cfg.model_dump_json()


# --- selection budget (issue 10) ---------------------------------------------------------------------

@pytest.mark.parametrize("selection, unit", [
    ({}, ("fraction", 0.5)),
    ({"budget_fraction": 0.3}, ("fraction", 0.3)),
    ({"budget_tokens": 5000}, ("tokens", 5000)),
    ({"budget": 0.25}, ("fraction", 0.25)),
    ({"budget": 1}, ("fraction", 1.0)),
    ({"budget": 2000}, ("tokens", 2000)),
    ({"budget": 2000.0}, ("tokens", 2000)),
])
def test_budget_unit_is_decided_in_one_place(selection, unit):
    sel = RunConfig.model_validate({"selection": selection}).selection
    assert sel.budget_unit() == unit
    assert sel.budget_share(10_000) == pytest.approx(unit[1] if unit[0] == "fraction" else unit[1] / 10_000)


def test_budget_labels():
    fraction = RunConfig.model_validate({"selection": {"budget_fraction": 0.25}})
    assert fraction.selection.budget_label() == "25% of tokens"
    assert RunConfig.model_validate({"selection": {"budget_tokens": 12000}}).selection.budget_label() == "12,000 tokens"


@pytest.mark.parametrize("override, fragment", [
    ("selection.budget=1.5", "ambiguous: use selection.budget_fraction"),
    ("selection.budget=.inf", "selection.budget"),
    ("selection.budget=.nan", "selection.budget"),
    ("selection.budget_fraction=.inf", "selection.budget_fraction"),
    ("selection.budget_fraction=1.5", "selection.budget_fraction"),
    ("selection.budget_tokens=2.5", "selection.budget_tokens"),
    ("selection.budget_tokens=0", "selection.budget_tokens"),
])
def test_bad_budgets_are_one_line_errors(tmp_path: Path, override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_budget_1_5_names_both_new_keys():
    with pytest.raises(ConfigError, match="budget_fraction.*budget_tokens"):
        load_config(None, ["selection.budget=1.5"])


def test_two_budget_keys_are_refused(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("selection: {budget_fraction: 0.5, budget_tokens: 100}\n")
    with pytest.raises(ConfigError, match="only one of selection.budget_fraction and selection.budget_tokens"):
        load_config(path)
    path.write_text("selection: {budget: 0.5, budget_tokens: 100}\n")
    with pytest.raises(ConfigError, match="only one"):
        load_config(path)


def test_a_budget_override_replaces_the_files_budget(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("selection: {budget_fraction: 0.5}\n")
    assert load_config(path, ["selection.budget_tokens=100"]).selection.budget_unit() == ("tokens", 100)
    assert load_config(path, ["selection.budget=0.2"]).selection.budget_unit() == ("fraction", 0.2)


def test_a_dumped_config_loads_back(tmp_path: Path):
    from mira.run.config_file import dump_config

    config = load_config(None, ["selection.budget_tokens=100"])
    (tmp_path / "c.yaml").write_text(dump_config(config))
    assert load_config(tmp_path / "c.yaml").selection.budget_unit() == ("tokens", 100)


SOURCES = "sources=[{name: srcA, path: a.jsonl}, {name: fortunes, path: b.jsonl}]"


@pytest.mark.parametrize("override, message", [
    ("reliability.exclude=[nosuch/a00]", "reliability: exclude 'nosuch/a00': unknown source 'nosuch' "
                                         "(sources: fortunes, srcA)"),
    ("reliability.exclude=[srcB/a00]", "reliability: exclude 'srcB/a00': unknown source 'srcB'; did you mean 'srcA'?"),
    ("compare.methods=[{method: mira}, {method: mira, mode: source, exclude: [fortune/*]}]",
     "compare: methods[1].exclude 'fortune/*': unknown source 'fortune'; did you mean 'fortunes'?"),
    ("selection.floor={fortune: 0.9}", "selection: floor: unknown source 'fortune'; did you mean 'fortunes'?"),
    ("selection.cap={'*': 0.5}", "selection: cap: unknown source '*' (sources: fortunes, srcA)"),
])
def test_a_source_named_in_the_config_must_exist(override, message):
    # A misspelled source would exclude, bound or ablate nothing: refused at load (and so by --dry-run).
    with pytest.raises(ConfigError) as refused:
        load_config(None, [SOURCES, override])
    assert str(refused.value) == f"invalid config: {message}"


def test_wildcards_and_known_sources_are_accepted_anywhere_a_source_is_named():
    config = load_config(None, [SOURCES, "reliability.exclude=['*/a00', srcA/a01, 'fortunes/*']",
                                "selection.cap={fortunes: 0.1}",
                                "compare.methods=[{method: mira, exclude: ['*/a02']}]"])
    assert config.reliability.exclude == ["*/a00", "srcA/a01", "fortunes/*"]


def test_a_source_named_later_by_assignment_is_checked_too():
    from pydantic import ValidationError

    from mira.core.config import ReliabilityConfig, SourceConfig

    config = RunConfig(sources=[SourceConfig(name="docs", path="d.jsonl")])
    config.reliability = ReliabilityConfig(exclude=["docs/a00"])
    with pytest.raises(ValidationError, match="unknown source 'doc'; did you mean 'docs'"):
        config.reliability = ReliabilityConfig(exclude=["doc/a00"])


@pytest.mark.parametrize("override", ["grouping.format_weight=.inf", "grouping.format_weight=.nan",
                                      "reliability.max_mae=.inf", "teacher.timeout_s=.inf",
                                      "selection.cap={srcA: .nan}", "compare.budget=.inf"])
def test_non_finite_numbers_are_refused_everywhere(override):
    with pytest.raises(ConfigError) as refused:
        load_config(None, [SOURCES, override])
    assert str(refused.value).endswith("Input should be a finite number") and "\n" not in str(refused.value)


@pytest.mark.parametrize("name", ["summary.json", "Summary.JSON"])
def test_a_source_or_selection_named_like_a_run_directory_file_is_refused(name):
    # scores/summary.json and selection/<name>/summary.json are mira's: a source of that name crashed score.
    message = f"'{name}' is the name of a file mira writes in the run directory; choose another name"
    with pytest.raises(ConfigError) as refused:
        load_config(None, [f"sources=[{{name: {name}, path: a.jsonl}}]"])
    assert str(refused.value) == f"invalid config: sources.0.name: {message}"
    with pytest.raises(ConfigError) as refused:
        load_config(None, [f"selection.name={name}"])
    assert str(refused.value) == f"invalid config: selection.name: {message}"


@pytest.mark.parametrize("name", ["_decisions", ".", "..", "a/b", "../x", "a\\\\b", ".hidden"])
def test_a_source_name_that_is_not_one_plain_file_name_is_refused(name):
    with pytest.raises(ConfigError, match="sources.0.name: String should match pattern"):
        load_config(None, [f"sources=[{{name: '{name}', path: a.jsonl}}]"])


def test_names_too_long_for_a_file_name_are_refused():
    with pytest.raises(ConfigError, match="sources.0.name: String should have at most 128 characters"):
        load_config(None, [f"sources=[{{name: {'s' * 129}, path: a.jsonl}}]"])
    with pytest.raises(ConfigError, match="selection.name: String should have at most 200 characters"):
        load_config(None, [f"selection.name={'n' * 201}"])
    assert load_config(None, [f"sources=[{{name: {'s' * 128}, path: a.jsonl}}]", f"selection.name={'n' * 200}"])
