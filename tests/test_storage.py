"""URL sources against a real S3 endpoint (moto's server on 127.0.0.1, see the `s3` fixture).

A source in a bucket must be listed, sharded and read exactly as the same files on disk: same
shards (byte ranges, row groups), same items and locators, same input digests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mira.cli import main
from mira.core.config import ConfigError, RunConfig, SourceConfig
from mira.io.digests import shard_digest
from mira.io.readers import iter_shard, list_source_files, plan_shards
from mira.io.storage import RemoteFile
from mira.run.config_file import load_config


def _storage(s3):
    return RunConfig.model_validate({"storage": s3.storage()}).storage


def _corpus(folder: Path, data_dir: Path) -> Path:
    """Plain JSONL (several byte-range shards), gzip JSONL, Parquet with several row groups, and a
    broken file: every reader and every error path."""
    folder.mkdir()
    shutil.copy(data_dir / "mixed" / "code.jsonl", folder / "code.jsonl")
    shutil.copy(data_dir / "mixed" / "agent.jsonl.gz", folder / "agent.jsonl.gz")
    for name in ("broken.jsonl", "truncated.jsonl.gz", "corrupt.jsonl.gz", "corrupt.jsonl.zst"):
        shutil.copy(data_dir / "broken" / name, folder / name)  # bad data: quarantined, as on disk
    rows = pq.read_table(data_dir / "mixed" / "faq.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist(rows), folder / "faq.parquet", row_group_size=2)
    return folder


def _read(shards, storage=None):
    out = []
    for shard in shards:
        digest = shard_digest()
        items = [(i.locator, i.data, i.error, i.nbytes) for i in iter_shard(shard, 1000, digest, storage)]
        out.append((shard.reader, shard.offset, shard.count, shard.first_line, items, digest.hexdigest()))
    return out


@pytest.mark.slow
def test_a_bucket_prefix_is_sharded_and_read_exactly_like_the_same_folder(s3, tmp_path, data_dir):
    local = _corpus(tmp_path / "corpus", data_dir)
    for path in sorted(local.iterdir()):
        s3.upload(path, f"corpus/{path.name}")
    storage = _storage(s3)
    remote_source = SourceConfig(name="c", path=s3.url("corpus/"))
    reader, base, files = list_source_files(remote_source, storage)
    assert reader == "mixed" and base == s3.url("corpus")
    assert [f.name for f in files] == sorted(p.name for p in local.iterdir())
    assert all(isinstance(f, RemoteFile) and f.size > 0 and f.version for f in files)

    local_shards = plan_shards(SourceConfig(name="c", path=str(local)), 3, 1000)
    remote_shards = plan_shards(remote_source, 3, 1000, storage)
    assert len(remote_shards) == len(local_shards) > 9  # byte ranges and row groups, not whole files
    assert {s.reader for s in remote_shards} == {"jsonl", "parquet"}
    assert all(f.startswith("s3://") for s in remote_shards for f in s.files)
    local_items, remote_items = _read(local_shards), _read(remote_shards, storage)
    assert remote_items == local_items
    assert any(error for *_, items, _ in remote_items for _, _, error, _ in items)  # broken.jsonl's lines


@pytest.mark.slow
def test_a_single_object_and_a_glob_resolve_like_local_paths(s3, tmp_path, data_dir):
    local = _corpus(tmp_path / "corpus", data_dir)
    for path in sorted(local.iterdir()):
        s3.upload(path, f"glob/{path.name}")
    storage = _storage(s3)
    reader, _, files = list_source_files(SourceConfig(name="one", path=s3.url("glob/faq.parquet")), storage)
    assert reader == "parquet" and [f.name for f in files] == ["faq.parquet"]
    reader, _, files = list_source_files(SourceConfig(name="g", path=s3.url("glob/*.jsonl")), storage)
    assert reader == "jsonl" and [f.name for f in files] == ["broken.jsonl", "code.jsonl"]
    shards = plan_shards(SourceConfig(name="g", path=s3.url("glob/*.jsonl")), 100, 1000, storage)
    assert [i[0] for i in _read(shards, storage)[1][4]][:2] == ["code.jsonl:1", "code.jsonl:2"]


def test_a_rewritten_object_changes_the_ingest_fingerprint(s3, tmp_path):
    """The ETag stands in for the mtime: new data under the same key is a new ingest."""
    from mira.run.context import StageContext
    from mira.run.rundir import RunDir
    from mira.stages import ingest

    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "first"}) + "\n")
    config = RunConfig.model_validate({"sources": [{"name": "a", "path": s3.upload(path, "a.jsonl")}],
                                       "storage": s3.storage()})
    context = StageContext(config, RunDir(tmp_path / "run"))
    before = ingest.fingerprint(context)
    assert ingest.fingerprint(context) == before
    path.write_text(json.dumps({"text": "again"}) + "\n")  # same size, new content
    s3.upload(path, "a.jsonl")
    assert ingest.fingerprint(context) != before


@pytest.mark.parametrize("where, message", [
    ("s3://{missing}/corpus/", "nothing at s3://{missing}/corpus/"),
    ("{bucket}/nothing-here.jsonl", "nothing at {bucket}/nothing-here.jsonl"),
    ("{bucket}/none-*.jsonl", "no files match"),
])
def test_a_url_that_names_nothing_is_a_one_line_config_error(s3, where, message):
    missing = f"{s3.name}-missing"
    url = where.format(missing=missing, bucket=s3.url().rstrip("/"))
    with pytest.raises(ConfigError) as info:
        list_source_files(SourceConfig(name="m", path=url), _storage(s3))
    text = str(info.value)
    assert message.format(missing=missing, bucket=s3.url().rstrip("/")) in text and "\n" not in text


def test_cli_with_a_missing_bucket_exits_2_with_one_line(s3, tmp_path):
    config = {"name": "m", "run_dir": str(tmp_path / "run"), "storage": s3.storage(),
              "sources": [{"name": "m", "path": f"s3://{s3.name}-missing/data.jsonl"}]}
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["ingest", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"s3://{s3.name}-missing/data.jsonl" in lines[0] and "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "run").exists()  # a config whose first stage fails leaves no run directory


def test_an_unreachable_endpoint_is_a_one_line_config_error(tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    storage = RunConfig.model_validate({"storage": {"s3": {"options": {
        "endpoint_url": f"http://127.0.0.1:{port}", "config_kwargs": {"retries": {"max_attempts": 1}}}}}}).storage
    with pytest.raises(ConfigError, match=r"cannot list s3://bucket/x.jsonl: .*") as info:
        list_source_files(SourceConfig(name="u", path="s3://bucket/x.jsonl"), storage)
    assert "\n" not in str(info.value)


def test_storage_config_keeps_credentials_out_of_the_file(tmp_path):
    with pytest.raises(ConfigError, match="storage.s3.options: .*secret is a credential") as info:
        load_config(overrides=["storage.s3.options.secret=abc123"])
    assert "abc123" not in str(info.value)
    with pytest.raises(ConfigError, match="aws_secret_access_key is a credential"):
        load_config(overrides=["storage.s3.options.client_kwargs={aws_secret_access_key: abc}"])
    with pytest.raises(ConfigError, match="sources.0.path: .*no credentials") as info:
        load_config(overrides=["sources=[{name: a, path: 's3://user:pw1234@bucket/a.jsonl'}]"])
    assert "pw1234" not in str(info.value)
    with pytest.raises(ValueError, match="no credentials"):  # the Python API too, not only the YAML
        RunConfig.model_validate({"selection": {"output": "s3://bucket/out?X-Amz-Signature=abc"}})
    with pytest.raises(ConfigError, match="run_dir must be a local folder"):
        load_config(overrides=["run_dir=s3://bucket/run"])
    # Non-secret options and names of variables are fine; URLs are not resolved against the YAML's folder.
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{name: a, path: 's3://bucket/a/*.jsonl'}]\nselection: {output: out}\n"
                    "storage: {s3: {options: {endpoint_url: 'http://127.0.0.1:9'}, options_from_env: {key: K}}}\n")
    config = load_config(path)
    assert config.sources[0].path == "s3://bucket/a/*.jsonl"
    assert config.selection.output == str(tmp_path / "out")
    assert config.storage["s3"].options_from_env == {"key": "K"}


def test_an_unset_credential_variable_is_named_in_one_line(s3, monkeypatch):
    monkeypatch.delenv("MIRA_TEST_S3_SECRET")
    with pytest.raises(ConfigError, match="environment variable MIRA_TEST_S3_SECRET is not set"):
        list_source_files(SourceConfig(name="a", path=s3.url("a.jsonl")), _storage(s3))


def test_object_names_with_spaces_and_non_ascii_keep_their_locators(s3, tmp_path):
    path = tmp_path / "x.jsonl"
    lines = [json.dumps({"text": "héllo wörld ✓"}, ensure_ascii=False), json.dumps({"text": "two"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    s3.upload(path, "odd/naïve données 1.jsonl")
    storage = _storage(s3)
    shards = plan_shards(SourceConfig(name="o", path=s3.url("odd/")), 1, 1000, storage)
    items = [i for s in shards for i in iter_shard(s, 1000, storage=storage)]
    assert [i.locator for i in items] == ["naïve données 1.jsonl:1", "naïve données 1.jsonl:2"]
    assert items[0].data == {"text": "héllo wörld ✓"}


def test_a_connection_lost_while_reading_stops_the_stage_instead_of_quarantining(s3, tmp_path, data_dir):
    """A passing network failure must not become quarantined (lost) records: the stage stops
    unfinished (exit 3) and a rerun reads the shard again."""
    import s3fs

    from mira.core.errors import StageIncomplete

    storage = _storage(s3)
    corpus = _corpus(tmp_path / "corpus", data_dir)
    for name in ("code.jsonl", "faq.parquet"):
        s3.upload(corpus / name, f"c/{name}")
    shards = plan_shards(SourceConfig(name="c", path=s3.url("c/")), 3, 1000, storage)
    before = _read(shards, storage)

    def reset(*args, **kwargs):
        raise ConnectionResetError("connection reset by peer")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(s3fs.core.S3File, "_fetch_range", reset)
        for shard in (shards[0], shards[-1]):  # a JSONL byte range, a Parquet row group
            with pytest.raises(StageIncomplete, match=r"reading s3://.* failed \(ConnectionResetError: .*rerun"):
                list(iter_shard(shard, 1000, storage=storage))
    assert _read(shards, storage) == before  # the rerun reads every record


@pytest.mark.slow
def test_sampled_reads_of_url_shards_match_streaming(s3, tmp_path, data_dir):
    """read_items (the sample index's reader) seeks into objects as into files."""
    from mira.io.sampled import read_items

    local = _corpus(tmp_path / "corpus", data_dir)
    for path in sorted(local.iterdir()):
        s3.upload(path, f"corpus/{path.name}")
    storage = _storage(s3)
    for shard in plan_shards(SourceConfig(name="c", path=s3.url("corpus/")), 3, 1000, storage):
        items, offsets, offset = list(iter_shard(shard, 1000, storage=storage)), {}, shard.offset
        for position, item in enumerate(items):
            offsets[position] = offset
            offset += item.nbytes
        wanted = {p: offsets[p] for p in range(0, len(items), 2) if items[p].data is not None}  # as indexed
        got = list(read_items(shard, wanted, 1000, storage))
        assert [(p, i.locator, i.data) for p, i in got] == [(p, items[p].locator, items[p].data) for p in wanted]


@pytest.mark.slow
def test_an_endpoint_that_goes_away_mid_ingest_exits_3_with_one_line(tmp_path, monkeypatch):
    """botocore's EndpointConnectionError is no OSError: it ended ingest with exit 1 and a traceback
    hint instead of the README's exit 3 (stopped early, rerun resumes)."""
    import logging

    from moto.server import ThreadedMotoServer

    import mira.stages.ingest as ingest
    from tests.s3 import S3Bucket

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MIRA_TEST_S3_KEY", "mira-test-key-id")
    monkeypatch.setenv("MIRA_TEST_S3_SECRET", "s3cret-never-written-anywhere")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # this test's own: it stops it
    server.start()
    stopped = False
    try:
        host, port = server.get_host_and_port()
        bucket = S3Bucket.create(f"http://{host}:{port}", "mira-goes-away")
        data = tmp_path / "a.jsonl"
        data.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(20)))
        bucket.upload(data, "c/a.jsonl")
        storage = bucket.storage()
        storage["s3"]["options"]["config_kwargs"] = {"retries": {"max_attempts": 1}}
        config = {"name": "m", "run_dir": str(tmp_path / "run"), "storage": storage, "engine": {"workers": 1},
                  "sources": [{"name": "m", "path": bucket.url("c/")}]}
        path = tmp_path / "m.yaml"
        path.write_text(json.dumps(config))
        read_shard = ingest.ingest_shard

        def after_planning(*args, **kwargs):  # the shards are planned: now the endpoint goes away
            nonlocal stopped
            if not stopped:
                server.stop()
                stopped = True
            return read_shard(*args, **kwargs)

        monkeypatch.setattr(ingest, "ingest_shard", after_planning)
        result = CliRunner().invoke(main, ["ingest", str(path)])
    finally:
        if not stopped:
            server.stop()
    assert stopped
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "reading s3://mira-goes-away/c/a.jsonl failed (EndpointConnectionError" in errors[0]
    assert "rerun the same command" in errors[0] and "s3cret" not in result.output
    assert not (tmp_path / "run" / "_done" / "ingest.json").exists()


def test_a_closed_connection_in_a_sampled_read_stops_the_stage(s3, tmp_path):
    """The sample index's reader (read_items) had no transport check at all."""
    import botocore.exceptions
    import s3fs

    from mira.core.errors import StageIncomplete
    from mira.io.sampled import read_items

    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(4)))
    s3.upload(data, "a.jsonl")
    (shard,) = plan_shards(SourceConfig(name="a", path=s3.url("a.jsonl")), 10, 1000, _storage(s3))

    def closed(*args, **kwargs):
        raise botocore.exceptions.ConnectionClosedError(endpoint_url=s3.endpoint)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(s3fs.core.S3File, "_fetch_range", closed)
        with pytest.raises(StageIncomplete, match=r"reading s3://.*a.jsonl failed \(ConnectionClosedError: .*rerun"):
            list(read_items(shard, {1: len(data.read_text().splitlines()[0]) + 1}, 1000, _storage(s3)))
        with pytest.raises(StageIncomplete, match="ConnectionClosedError"):
            list(iter_shard(shard, 1000, storage=_storage(s3)))
