"""The README's exit-code table holds for the errors a user's environment causes (issue 27 item 11)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mira.cli import main
from tests.engines.doubles import build_scored_run, make_config


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config_file(scored, tmp_path: Path) -> Path:
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    path = tmp_path / "config.json"  # JSON is YAML
    path.write_text(make_config(corpus, tmp_path / "run").model_dump_json())
    return path


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def test_a_selection_folder_mira_may_not_write_exits_2_with_one_line(scored, tmp_path, monkeypatch):
    # Run as root here, where no chmod makes a folder unwritable: refuse what the kernel would refuse.
    import tempfile

    from mira.io import files

    real = tempfile.mkstemp

    def refused(*args, **kwargs):
        folder = str(kwargs.get("dir", ""))
        if "/selection" in folder:
            raise PermissionError(errno.EACCES, "Permission denied", folder)
        return real(*args, **kwargs)

    config = _config_file(scored, tmp_path)
    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    result = CliRunner().invoke(main, ["select", str(config)])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert f"{tmp_path}/run/selection" in line and "Permission denied" in line and "permissions" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_selection_folder_exits_2_with_one_line(scored, tmp_path):
    config = _config_file(scored, tmp_path)
    selection = tmp_path / "run" / "selection"
    selection.mkdir()
    selection.chmod(0o555)
    try:
        result = CliRunner().invoke(main, ["select", str(config)])
    finally:
        selection.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "Permission denied" in _one_error_line(result.output)


@pytest.mark.parametrize(("code", "exit_code", "words"), [
    (errno.ENOSPC, 2, "free some space"), (errno.ENAMETOOLONG, 2, "too long"), (errno.EIO, 1, "OSError")])
def test_file_system_errors_map_to_the_documented_exit_codes(scored, tmp_path, monkeypatch, code, exit_code, words):
    from mira.io import files

    def failing(path, data):
        raise OSError(code, os.strerror(code), str(path))

    config = _config_file(scored, tmp_path)
    monkeypatch.setattr(files, "atomic_write_bytes", failing)
    result = CliRunner().invoke(main, ["select", str(config)])
    assert result.exit_code == exit_code, result.output
    assert words in _one_error_line(result.output)
