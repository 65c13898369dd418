import json
import os
import shutil
from pathlib import Path, PurePosixPath

import pytest

from mira.core.errors import StageNotReady
from mira.core.hashing import fingerprint
from mira.io.files import atomic_path, atomic_write_text, hash_files
from mira.run.rundir import RunDir


def test_atomic_write_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path):
    target = tmp_path / "x.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_done_markers(tmp_path: Path):
    run = RunDir(tmp_path)
    assert not run.is_done("ingest", "fp1")
    with pytest.raises(StageNotReady, match="mira ingest"):
        run.require("ingest")
    run.mark_done("ingest", "fp1", {"records": 3})
    assert run.is_done("ingest", "fp1") and not run.is_done("ingest", "fp2")
    assert run.require("ingest") == "fp1"
    run.marker_path("ingest").write_text("{not json")
    assert run.done("ingest") is None  # a damaged marker means redo, not trust


def test_fingerprints_and_file_hashes(tmp_path: Path):
    assert fingerprint("a", {"x": 1}) == fingerprint("a", {"x": 1}) != fingerprint("a", {"x": 2})
    f = tmp_path / "r.jsonl"
    f.write_text("a")
    h1 = hash_files([f])
    f.write_text("b")
    assert hash_files([f]) != h1


# --- a run directory is mira's (issue 10 items 5 and 13) ------------------------------------------

from click.testing import CliRunner  # noqa: E402

from mira import api  # noqa: E402
from mira.cli import main  # noqa: E402
from mira.core.config import ConfigError, RunConfig, SourceConfig  # noqa: E402
from mira.io.files import remove_own_files, swap_in  # noqa: E402
from mira.run.rundir import RUN_MARKER  # noqa: E402

DOCS = '{"id": "a", "text": "A first document about parsers."}\n{"id": "b", "text": "A second one."}\n'


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.jsonl").write_text(DOCS)
    return folder / "docs.jsonl"


def _config(run_dir: Path, source: Path) -> RunConfig:
    return RunConfig(name="t", run_dir=str(run_dir), sources=[SourceConfig(name="docs", path=str(source))])


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_run_dir_dot_next_to_a_handwritten_config_is_refused_and_left_untouched(tmp_path: Path):
    _corpus(tmp_path)
    handwritten = "# my notes\nname: mine\nrun_dir: .\nsources:\n  - {name: docs, path: docs.jsonl}\n"
    (tmp_path / "config.yaml").write_text(handwritten)
    before = _tree(tmp_path)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "config.yaml")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "not a mira run" in result.output
    assert _tree(tmp_path) == before  # config.yaml kept byte for byte, nothing added


def test_a_folder_of_other_files_is_refused_an_empty_one_and_older_runs_are_adopted(tmp_path: Path):
    source = _corpus(tmp_path / "data")
    foreign = tmp_path / "mine"
    (foreign / "quarantine").mkdir(parents=True)
    (foreign / "inventory.json").write_text('{"mine": true}')
    (foreign / "quarantine" / "docs.jsonl").write_text("my own list\n")
    before = _tree(foreign)
    with pytest.raises(ConfigError, match="not a mira run"):
        api.run_one("ingest", _config(foreign, source))
    assert _tree(foreign) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    api.run_one("ingest", _config(empty, source))
    assert json.loads((empty / RUN_MARKER).read_text())["adopted"] is False

    # Runs written before the marker existed: done markers, or only the resolved config.
    for older in ("done", "config"):
        run = tmp_path / older
        api.run_one("ingest", _config(run, source))
        (run / RUN_MARKER).unlink()
        if older == "config":
            shutil.rmtree(run / "_done")
        (run / "notes.txt").write_text("the user's")
        assert api.run_one("ingest", _config(run, source), force=True).counts["records"] == 2
        assert (run / RUN_MARKER).exists() and (run / "notes.txt").read_text() == "the user's"
        assert api.status(run)["stages"]["ingest"]["counts"]["records"] == 2


def test_run_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path):
    _corpus(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "c.yaml").write_text("name: t\nrun_dir: afile\nsources:\n  - {name: docs, path: docs.jsonl}\n")
    for command in (["ingest"], ["run"]):
        result = CliRunner().invoke(main, [*command, str(tmp_path / "c.yaml")])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1 and "is a file" in result.output
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_failing_config_or_a_dry_run_creates_no_run_dir(tmp_path: Path):
    _corpus(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: t\nrun_dir: out/bad\nsources:\n  - {name: docs, path: missing.jsonl}\n")
    (tmp_path / "invalid.yaml").write_text("name: t\nrun_dir: out/invalid\nseed: many\n")
    (tmp_path / "good.yaml").write_text("name: t\nrun_dir: out/good\nsources:\n  - {name: docs, path: docs.jsonl}\n")
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", str(tmp_path / "bad.yaml")]).exit_code == 2
    assert runner.invoke(main, ["run", str(tmp_path / "bad.yaml")]).exit_code == 2
    assert runner.invoke(main, ["run", str(tmp_path / "invalid.yaml")]).exit_code == 2
    assert runner.invoke(main, ["run", str(tmp_path / "good.yaml"), "--dry-run"]).exit_code == 0
    assert not (tmp_path / "out").exists()


def test_status_reads_runs_with_and_without_the_marker(tmp_path: Path):
    source = _corpus(tmp_path / "data")
    api.run_one("ingest", _config(tmp_path / "run", source))
    for _ in range(2):
        result = CliRunner().invoke(main, ["status", str(tmp_path / "run")])
        assert result.exit_code == 0 and "[x] ingest" in result.output
        (tmp_path / "run" / RUN_MARKER).unlink(missing_ok=True)


def test_swap_in_keeps_files_mira_did_not_write_and_survives_a_kill_mid_swap(tmp_path: Path):
    def ours(path) -> bool:
        return path.suffix == ".jsonl"

    final, new = tmp_path / "sel", tmp_path / "sel.partial"
    (final / "src").mkdir(parents=True)
    (final / "src" / "old.jsonl").write_text("old")
    (final / "src" / "notes.md").write_text("mine")
    (final / "important.txt").write_text("mine too")
    (final / "empty_dir_of_mine").mkdir()
    new.mkdir()
    (new / "new.jsonl").write_text("new")
    swap_in(new, final, ours)
    assert _tree(final) == {"new.jsonl": b"new", "src/notes.md": b"mine", "important.txt": b"mine too"}
    assert (final / "empty_dir_of_mine").is_dir() and not (tmp_path / ".sel.previous").exists()
    # Killed after moving the old folder away and before moving the new one in.
    final.rename(tmp_path / ".sel.previous")
    newer = tmp_path / "sel.partial"
    newer.mkdir()
    (newer / "newer.jsonl").write_text("newer")
    swap_in(newer, final, ours)
    assert _tree(final) == {"newer.jsonl": b"newer", "src/notes.md": b"mine", "important.txt": b"mine too"}
    assert remove_own_files(final, ours) == [PurePosixPath("important.txt"), PurePosixPath("src/notes.md")]


def test_swap_in_keeps_both_copies_of_a_file_of_the_users_found_on_both_sides(tmp_path: Path):
    final, new = tmp_path / "sel", tmp_path / "sel.partial"
    for folder, text in ((final, "old notes"), (new, "new notes")):
        folder.mkdir()
        (folder / "notes.md").write_text(text)
        (folder / "00000.jsonl").write_text(text)
    swap_in(new, final, lambda path: path.suffix == ".jsonl")
    assert _tree(final) == {"00000.jsonl": b"new notes", "notes.md": b"new notes"}
    (aside,) = tmp_path.glob(".sel.previous.kept-*")
    assert _tree(aside) == {"notes.md": b"old notes"}
    new.mkdir()
    swap_in(new, final, lambda path: path.suffix == ".jsonl")  # and the next swap still works
    assert _tree(final) == {"notes.md": b"new notes"}
