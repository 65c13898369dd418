import os
from pathlib import Path

import pytest

from mira.rundir import RunDir, StageNotReady, atomic_path, atomic_write_text, fingerprint, hash_files


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
