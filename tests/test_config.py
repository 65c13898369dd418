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
