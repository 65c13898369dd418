"""The session's model cache (tests/conftest.py): isolated, and seeded only with complete models."""

from __future__ import annotations

import os

from mira.text.embed import cache_root
from tests.conftest import _copy_models


def test_tests_use_the_session_cache(mira_cache_dir, tmp_path_factory):
    assert cache_root() == mira_cache_dir
    assert os.environ["MIRA_CACHE_DIR"] == str(mira_cache_dir)


def test_copy_takes_complete_models_and_keeps_what_is_there(tmp_path):
    source, target = tmp_path / "user", tmp_path / "session"
    (source / "whole").mkdir(parents=True)
    (source / "whole" / "config.json").write_text("{}")
    (source / "whole" / "model.safetensors").write_bytes(b"\0weights")
    (source / "partial").mkdir()  # a distillation that died before its rename has no config.json
    (source / "partial" / "model.safetensors").write_bytes(b"half")
    (source / ".whole.tmp123").mkdir()  # another process's work in progress
    (source / ".whole.tmp123" / "config.json").write_text("{}")
    (source / "theirs").mkdir()
    (source / "theirs" / "config.json").write_text('{"from": "user"}')
    (target / "theirs").mkdir(parents=True)
    (target / "theirs" / "config.json").write_text('{"from": "session"}')

    _copy_models(source, target)

    assert sorted(p.name for p in target.iterdir()) == ["theirs", "whole"]
    assert (target / "whole" / "model.safetensors").read_bytes() == b"\0weights"
    assert (target / "theirs" / "config.json").read_text() == '{"from": "session"}'
    _copy_models(tmp_path / "missing", target)  # no user cache: nothing to do, no error


def test_copy_into_an_unwritable_cache_is_skipped(tmp_path):
    source = tmp_path / "session"
    (source / "whole").mkdir(parents=True)
    (source / "whole" / "config.json").write_text("{}")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _copy_models(source, blocker / "static")  # mkdir fails: the next session distills again, no error
    assert blocker.read_text() == "not a folder"
