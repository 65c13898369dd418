from pathlib import Path

import pytest

from mira.config import ConfigError, RunConfig, load_config


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
