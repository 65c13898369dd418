"""Model assembly and verification, the CLI group, and import hygiene (no server started)."""

import hashlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mira.core.config import TeacherConfig
from mira.teacher import local
from mira.teacher.cli import teacher_group


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    parts = [tmp_path / "part1.bin", tmp_path / "part2.bin"]
    parts[0].write_bytes(b"GGUF" + b"a" * 1000)
    parts[1].write_bytes(b"b" * 500)
    blob = b"".join(p.read_bytes() for p in parts)
    spec = local.ModelSpec("fake-model", ("fake-part1", "fake-part2"), "fake.gguf", len(blob),
                           hashlib.sha256(blob).hexdigest(), "test")
    monkeypatch.setitem(local.MODELS, spec.name, spec)
    monkeypatch.setattr(local, "part_paths", lambda s: parts)
    return spec, parts, blob


def test_assembles_verifies_and_reuses(fake_model, tmp_path):
    spec, parts, blob = fake_model
    config = TeacherConfig(model=spec.name, model_cache_dir=str(tmp_path / "cache"))
    path = local.model_path(spec.name, config)
    assert path == tmp_path / "cache" / "fake.gguf" and path.read_bytes() == blob
    parts[0].unlink()  # verified once: later calls trust the stamp (size + mtime) and never re-read
    assert local.model_path(spec.name, config) == path


def test_corrupt_parts_are_rejected_and_nothing_is_left(fake_model, tmp_path):
    spec, parts, _ = fake_model
    parts[1].write_bytes(b"c" * 500)
    config = TeacherConfig(model=spec.name, model_cache_dir=str(tmp_path / "cache"))
    with pytest.raises(local.TeacherSetupError, match="reinstall"):
        local.model_path(spec.name, config)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".fake")] == []


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(local.TeacherSetupError, match="choose one of"):
        local.model_path("gpt-17", TeacherConfig())


def test_bundled_models_are_found_in_their_wheels():
    for spec in local.MODELS.values():
        paths = local.part_paths(spec)
        assert len(paths) == len(spec.distributions)
        assert sum(p.stat().st_size for p in paths) == spec.size


def test_models_command_lists_every_model():
    result = CliRunner().invoke(teacher_group, ["models"])
    assert result.exit_code == 0, result.output
    for name in local.MODELS:
        assert name in result.output
    assert "* qwen2.5-coder-1.5b" in result.output


def test_import_is_light():
    code = ("import sys, mira.teacher; from mira.teacher import TeacherRequest, load_prompt, wrap_record; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'xllamacpp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
