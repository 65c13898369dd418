"""Publishing a selection to object storage: summary.json is the completion marker, written last."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from mira.core.config import ConfigError, RunConfig
from mira.selection.publish import check_output, publish_selection
from mira.stages.select import is_selection_file


def _selection(folder: Path, shards: dict[str, str], summary: dict) -> Path:
    for name, text in shards.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _storage(s3):
    return RunConfig.model_validate({"storage": s3.storage()}).storage


@pytest.mark.slow
def test_a_republished_selection_replaces_the_old_files_and_keeps_the_users(s3, tmp_path):
    first = _selection(tmp_path / "one", {"a/00000.jsonl": "a0\n", "a/00001.jsonl": "a1\n",
                                          "_decisions/a/00000.parquet": "d0"}, {"n": 1})
    url = publish_selection(first, s3.url("out"), "sel", _storage(s3), is_selection_file)
    assert url == s3.url("out/sel")
    assert s3.keys("out/sel") == ["out/sel/_decisions/a/00000.parquet", "out/sel/a/00000.jsonl",
                                  "out/sel/a/00001.jsonl", "out/sel/summary.json"]
    s3.fs().pipe_file(f"{s3.name}/out/sel/NOTES.md", b"mine")  # not mira's: must survive

    second = _selection(tmp_path / "two", {"a/00000.jsonl": "new a0\n", "b/00000.jsonl": "b0\n"}, {"n": 2})
    publish_selection(second, s3.url("out/"), "sel", _storage(s3), is_selection_file)
    assert s3.keys("out/sel") == ["out/sel/NOTES.md", "out/sel/a/00000.jsonl", "out/sel/b/00000.jsonl",
                                  "out/sel/summary.json"]
    assert s3.read("out/sel/a/00000.jsonl") == b"new a0\n"
    assert json.loads(s3.read("out/sel/summary.json")) == {"n": 2}


def test_a_publication_that_fails_part_way_leaves_no_summary(s3, tmp_path):
    """Readers trust a prefix only with a summary: after a failed upload there must be none, not
    the previous one over a mix of old and new files."""
    import s3fs

    old = _selection(tmp_path / "old", {"a/00000.jsonl": "old\n"}, {"n": 1})
    publish_selection(old, s3.url("out"), "sel", _storage(s3), is_selection_file)
    new = _selection(tmp_path / "new", {"a/00000.jsonl": "new\n", "a/00001.jsonl": "more\n"}, {"n": 2})

    real_put_file = s3fs.S3FileSystem._put_file

    async def put_file_failing_on_the_second_shard(self, lpath, rpath, *args, **kwargs):
        if rpath.endswith("00001.jsonl"):
            # A backend may echo a credential back in its error: it must not reach the message.
            raise ConnectionResetError(f"connection reset by peer (key {os.environ['MIRA_TEST_S3_KEY']})")
        return await real_put_file(self, lpath, rpath, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(s3fs.S3FileSystem, "_put_file", put_file_failing_on_the_second_shard)
        with pytest.raises(ConfigError, match=r"publishing to s3://.*/out/sel failed .*rerun `mira select`") as info:
            publish_selection(new, s3.url("out"), "sel", _storage(s3), is_selection_file)
    assert "\n" not in str(info.value) and "[redacted]" in str(info.value)
    assert os.environ["MIRA_TEST_S3_KEY"] not in str(info.value)
    assert "out/sel/summary.json" not in s3.keys("out/sel")
    publish_selection(new, s3.url("out"), "sel", _storage(s3), is_selection_file)  # the rerun
    assert json.loads(s3.read("out/sel/summary.json")) == {"n": 2}


def test_an_unfinished_local_selection_is_never_published(s3, tmp_path):
    folder = tmp_path / "sel"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "00000.jsonl").write_text("x\n")
    with pytest.raises(ConfigError, match="not a finished selection"):
        publish_selection(folder, s3.url("out"), "sel", _storage(s3), is_selection_file)
    assert s3.keys("out") == []


def test_a_missing_output_bucket_is_found_before_any_work(s3):
    with pytest.raises(ConfigError, match=r"selection.output: s3://.*-missing/out: no such bucket"):
        check_output(f"s3://{s3.name}-missing/out", _storage(s3))
    check_output(s3.url("out"), _storage(s3))  # an existing bucket, no prefix yet: fine


def test_a_local_output_folder_is_created(tmp_path):
    sel = _selection(tmp_path / "sel", {"a/00000.jsonl": "a\n"}, {"n": 1})
    target = tmp_path / "published" / "deep"
    check_output(str(target), None)
    publish_selection(sel, str(target), "name", None, is_selection_file)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["name/a/00000.jsonl", "name/summary.json"]
    assert is_selection_file(PurePosixPath("a/00000.jsonl"))
