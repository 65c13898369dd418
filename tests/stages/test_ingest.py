import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.core.config import ConfigError, EngineConfig, IngestConfig
from tests.conftest import make_config


def _inventory(cfg):
    return json.loads((Path(cfg.run_dir) / "inventory.json").read_text())


def test_mixed_formats_are_detected_and_counted(mixed_config):
    outcome = api.run_one("ingest", mixed_config)
    inv = _inventory(mixed_config)
    formats = {name: s["format"] for name, s in inv["sources"].items()}
    assert formats == {"code": "code", "faq": "qa", "agent": "chat"} or formats["agent"] == "agent"
    assert inv["sources"]["code"]["ok"] == 5 and inv["sources"]["faq"]["ok"] == 3
    assert all(s["records"] == s["ok"] + s["quarantined"] for s in inv["sources"].values())
    assert outcome.counts["records"] == inv["totals"]["records"] and inv["totals"]["tokens"] > 1000


def test_broken_inputs_are_quarantined_with_reasons_and_counts_add_up(tmp_path, data_dir):
    broken = data_dir / "broken"
    cfg = make_config(tmp_path, [
        {"name": "lines", "path": str(broken / "broken.jsonl")},
        {"name": "gz", "path": str(broken / "truncated.jsonl.gz")},
        {"name": "pq", "path": str(broken / "garbage.parquet")},
        {"name": "files", "path": str(broken / "files"), "include": "*.py"},
    ], ingest=IngestConfig(max_record_bytes=2000))
    api.run_one("ingest", cfg)
    inv = _inventory(cfg)
    for name, s in inv["sources"].items():
        assert s["records"] == s["ok"] + s["quarantined"], name
    lines = inv["sources"]["lines"]
    assert (lines["ok"], lines["quarantined"]) == (2, 7)
    assert inv["sources"]["pq"]["quarantined"] == 1 and inv["sources"]["pq"]["ok"] == 0
    assert inv["sources"]["files"]["ok"] == 1 and inv["sources"]["files"]["quarantined"] == 3
    quarantine = [json.loads(line)
                  for line in (Path(cfg.run_dir) / "quarantine" / "lines.jsonl").read_text().splitlines()]
    assert len(quarantine) == 7 and all(q["reason"] and q["locator"].startswith("broken.jsonl:") for q in quarantine)
    reasons = " | ".join(q["reason"] for q in quarantine)
    for fragment in ("malformed JSON", "not valid UTF-8", "missing text field", "empty record", "empty line",
                     "expected a JSON object", "record larger than 2000 bytes"):
        assert fragment in reasons


@pytest.mark.slow
def test_rerun_skips_and_force_redoes(mixed_config):
    first = api.run_one("ingest", mixed_config)
    assert not first.skipped
    assert api.run_one("ingest", mixed_config).skipped
    assert not api.run_one("ingest", mixed_config, force=True).skipped


def test_changed_input_invalidates_the_stage(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"text": "one"}) + "\n")
    cfg = make_config(tmp_path, [{"name": "a", "path": str(data)}])
    api.run_one("ingest", cfg)
    data.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
    outcome = api.run_one("ingest", cfg)
    assert not outcome.skipped and outcome.counts["records"] == 2


def test_shards_are_recorded_and_match_record_counts(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(25)))
    cfg = make_config(tmp_path, [{"name": "a", "path": str(data)}], ingest=IngestConfig(shard_records=10))
    api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["a"]
    assert [s["count"] for s in source["shards"]] == [10, 10, 5] and source["ok"] == 25


def test_missing_source_is_a_config_error(tmp_path):
    cfg = make_config(tmp_path, [{"name": "a", "path": str(tmp_path / "missing.jsonl")}])
    with pytest.raises(ConfigError, match="does not exist"):
        api.run_one("ingest", cfg)


def test_cli_bad_input_gives_one_line_and_no_traceback(tmp_path, data_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path}/run\nsources:\n  - {{name: u, path: {data_dir}/broken/notes.xyz}}\n")
    result = CliRunner().invoke(main, ["ingest", str(cfg)])
    assert result.exit_code == 2
    assert "unknown file format" in result.output and "Traceback" not in result.output


def test_cli_ingest_dry_run_and_status(tmp_path, data_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path}/run\nsources:\n  - {{name: code, path: {data_dir}/mixed/code.jsonl}}\n")
    runner = CliRunner()
    dry = runner.invoke(main, ["ingest", str(cfg), "--dry-run"])
    assert dry.exit_code == 0 and "fingerprint" in dry.output and "ingest (runs): not run yet" in dry.output
    assert not (tmp_path / "run" / "inventory.json").exists()
    assert runner.invoke(main, ["ingest", str(cfg)]).exit_code == 0
    status = runner.invoke(main, ["status", str(tmp_path / "run")])
    assert status.exit_code == 0 and "[x] ingest" in status.output and "[ ] group" in status.output


def test_ingest_runs_on_the_configured_engine(tmp_path, data_dir, monkeypatch):
    broken = data_dir / "broken"
    sources = [{"name": "lines", "path": str(broken / "broken.jsonl")},
               {"name": "code", "path": str(data_dir / "mixed" / "code.jsonl")},
               {"name": "files", "path": str(broken / "files"), "include": "*.py"}]
    inline = make_config(tmp_path / "inline", sources, ingest=IngestConfig(max_record_bytes=2000, shard_records=2),
                         engine=EngineConfig(workers=1))
    pooled = make_config(tmp_path / "pooled", sources, ingest=IngestConfig(max_record_bytes=2000, shard_records=2),
                         engine=EngineConfig(workers=2))
    for cfg in (inline, pooled):
        api.run_one("ingest", cfg)
    read = [(Path(c.run_dir) / "inventory.json").read_text() for c in (inline, pooled)]
    assert read[0] == read[1] and len(_inventory(inline)["sources"]["lines"]["shards"]) > 2
    monkeypatch.setitem(sys.modules, "ray", None)  # `engine.kind` is honoured: Ray is asked for
    ray = make_config(tmp_path / "ray", sources, engine=EngineConfig(kind="ray"))
    with pytest.raises(ConfigError, match=r"pip install mira\[ray\]"):
        api.run_one("ingest", ray)


@pytest.mark.slow
def test_ingest_never_deletes_a_file_mira_did_not_write(mixed_config):
    api.run_one("ingest", mixed_config)
    run = Path(mixed_config.run_dir)
    mine = {"quarantine/shards/README": "mine", "quarantine/shards/code/notes.txt": "mine too",
            "quarantine/notes.md": "mine as well"}
    for name, text in mine.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    api.run_one("ingest", mixed_config, force=True)
    assert {name: (run / name).read_text() for name in mine} == mine


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ingest_on_ray_writes_the_same_inventory_as_inline(tmp_path, data_dir):
    pytest.importorskip("ray")
    sources = [{"name": "lines", "path": str(data_dir / "broken" / "broken.jsonl")},
               {"name": "code", "path": str(data_dir / "mixed" / "code.jsonl")}]
    ingest = IngestConfig(max_record_bytes=2000, shard_records=2)
    inline = make_config(tmp_path / "inline", sources, ingest=ingest, engine=EngineConfig(workers=1))
    on_ray = make_config(tmp_path / "ray", sources, ingest=ingest, engine=EngineConfig(kind="ray", workers=2))
    for cfg in (inline, on_ray):
        api.run_one("ingest", cfg)
    for name in ("inventory.json", "quarantine/lines.jsonl"):
        assert (Path(inline.run_dir) / name).read_bytes() == (Path(on_ray.run_dir) / name).read_bytes(), name


# --- hostile input (issue 10) ----------------------------------------------------------------------

def test_corrupt_compressed_files_are_quarantined_and_the_other_files_still_read(tmp_path, data_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("corrupt.jsonl.zst", "corrupt.jsonl.gz"):
        shutil.copyfile(data_dir / "broken" / name, folder / name)
    (folder / "good.jsonl").write_text("".join(json.dumps({"text": f"good record {i}"}) + "\n" for i in range(3)))
    cfg = make_config(tmp_path, [{"name": "d", "path": str(folder)}])
    api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["d"]
    assert source["records"] == source["ok"] + source["quarantined"]
    assert source["ok"] == 3 and source["quarantined"] == 2  # one reason line per damaged file
    quarantine = [json.loads(line) for line in (Path(cfg.run_dir) / "quarantine" / "d.jsonl").read_text().splitlines()]
    assert sorted(q["locator"].split(":")[0] for q in quarantine) == ["corrupt.jsonl.gz", "corrupt.jsonl.zst"]
    assert all(q["reason"].startswith("unreadable data") for q in quarantine)


def _hostile_run(tmp_path, data_dir):
    cfg = make_config(tmp_path, [{"name": "h", "path": str(data_dir / "broken" / "hostile.jsonl")}])
    return cfg, api.run_one("ingest", cfg)


def test_hostile_records_are_quarantined_with_reasons_and_counts_add_up(tmp_path, data_dir):
    cfg, outcome = _hostile_run(tmp_path, data_dir)
    source = _inventory(cfg)["sources"]["h"]
    assert (source["records"], source["ok"], source["quarantined"]) == (10, 3, 7)
    quarantine = {q["locator"]: q for q in map(json.loads, (Path(cfg.run_dir) / "quarantine" / "h.jsonl")
                                                 .read_text(encoding="utf-8").splitlines())}
    reasons = {loc.split(":")[1]: q["reason"] for loc, q in quarantine.items()}
    assert reasons["2"].startswith("lone UTF-16 surrogate")
    assert "NaN" in reasons["4"] and "Infinity" in reasons["5"]
    assert reasons["6"].endswith("got a number") and reasons["7"].endswith("got a list")
    assert reasons["8"].endswith("got an object")
    assert reasons["9"].startswith("duplicate id") and quarantine["hostile.jsonl:9"]["first"] == "hostile.jsonl:1"
    assert source["quarantine_reasons"]["duplicate id"] == 1
    assert any("duplicate" in note for note in outcome.notes)


def test_every_stage_sees_the_same_records_and_unique_ids(tmp_path, data_dir):
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.run.rundir import RunDir

    cfg, _ = _hostile_run(tmp_path, data_dir)
    (info,) = source_infos(RunDir(Path(cfg.run_dir)))
    records = list(iter_source_records(cfg, info))
    assert [(r.id, r.locator) for r in records] == [("h1", "hostile.jsonl:1"), ("h3", "hostile.jsonl:3"),
                                                    ("h9", "hostile.jsonl:10")]
    assert len(records) == info.ok


def test_no_hostile_record_reaches_rendering_or_a_teacher_request(tmp_path, data_dir):
    # A lone surrogate used to pass ingest and kill annotate with UnicodeEncodeError.
    from mira.artifacts.anchors import Anchor
    from mira.corpus.records import render
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.rubrics import annotation_v3
    from mira.rubrics.annotation import KIND, PART, PROMPT, build_request
    from mira.run.rundir import RunDir
    from mira.teacher import load_prompt
    from mira.text.tokens import get_tokenizer

    cfg, _ = _hostile_run(tmp_path, data_dir)
    (info,) = source_infos(RunDir(Path(cfg.run_dir)))
    tokenizer = get_tokenizer(cfg.tokenizer.name)
    v2, v3 = load_prompt(PROMPT, 2), load_prompt(PROMPT, 3)
    anchor = Anchor(id="a00", name="Clarity", definition="How clear the record is.")
    records = list(iter_source_records(cfg, info))
    assert records
    for record in records:
        rendering = render(record, tokenizer, cfg.render.max_tokens)
        requests = [build_request(v2, [anchor], record, rendering, True, 100, record.id)]
        requests += annotation_v3.build_requests(v3, [anchor], record, rendering, record.id, False, None,
                                               KIND.get(record.format, "a record"), PART)
        for request in requests:  # both protocols' requests can be keyed and sent
            request.cache_key({"provider": "local", "model": "m", "sampling": {}})
            json.dumps(request.messages, ensure_ascii=False).encode("utf-8")


def test_mixed_folder_ingests_jsonl_and_parquet_by_suffix(tmp_path):
    # It used to switch to the files reader: the JSONL became one text record, the Parquet binary.
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": f"json line {i}"}) + "\n" for i in range(2)))
    pq.write_table(pa.Table.from_pylist([{"text": f"parquet row {i}"} for i in range(3)]), folder / "b.parquet")
    cfg = make_config(tmp_path, [{"name": "m", "path": str(folder)}])
    api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["m"]
    assert source["reader"] == "jsonl+parquet" and source["format"] == "text"
    assert (source["ok"], source["quarantined"]) == (5, 0)


def test_cli_source_resolving_to_nothing_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path}/run\nsources:\n  - {{name: e, path: {tmp_path}/empty}}\n")
    result = CliRunner().invoke(main, ["ingest", str(cfg)])
    assert result.exit_code == 2 and "no files under" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_dry_run_with_a_missing_path_exits_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {tmp_path}/run\nsources:\n  - {{name: m, path: {tmp_path}/missing.jsonl}}\n")
    for command in (["ingest", str(cfg), "--dry-run"], ["run", str(cfg), "--dry-run"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, command
        assert "does not exist" in result.output and "Traceback" not in result.output


def test_duplicate_ids_across_shards_keep_the_first_and_counts_add_up(tmp_path):
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.run.rundir import RunDir

    data = tmp_path / "a.jsonl"
    ids = ["a", "b", "a", "c", "b", "a", 7, "7"]  # 7 and "7" are the same id once read
    data.write_text("".join(json.dumps({"id": rid, "text": f"record {i} with id {rid}"}) + "\n"
                            for i, rid in enumerate(ids)))
    cfg = make_config(tmp_path, [{"name": "a", "path": str(data)}], ingest=IngestConfig(shard_records=2),
                      engine={"workers": 2})
    api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["a"]
    assert (source["records"], source["ok"], source["quarantined"]) == (8, 4, 4)
    (info,) = source_infos(RunDir(Path(cfg.run_dir)))
    records = list(iter_source_records(cfg, info))
    assert [(r.id, r.locator) for r in records] == [("a", "a.jsonl:1"), ("b", "a.jsonl:2"), ("c", "a.jsonl:4"),
                                                    ("7", "a.jsonl:7")]
    # the tokens of the quarantined duplicates are taken out of the source's total
    from mira.corpus.records import full_text
    from mira.text.tokens import get_tokenizer

    tokenizer = get_tokenizer(cfg.tokenizer.name)
    assert source["tokens"] == sum(tokenizer.count(full_text(r)) for r in records)
    quarantine = [json.loads(line) for line in (Path(cfg.run_dir) / "quarantine" / "a.jsonl").read_text().splitlines()]
    assert [(q["locator"], q["first"]) for q in quarantine] == [
        ("a.jsonl:3", "a.jsonl:1"), ("a.jsonl:5", "a.jsonl:2"), ("a.jsonl:6", "a.jsonl:1"), ("a.jsonl:8", "a.jsonl:7")]


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_a_file_name_that_is_not_utf8_is_escaped_and_the_rest_of_the_run_proceeds(tmp_path):
    # One such name stopped the whole ingest (UnicodeEncodeError hashing the locator into an id).
    import os

    from mira.corpus.sources import iter_source_records, sample_source, source_infos
    from mira.run.rundir import RunDir

    files, lines = tmp_path / "files", tmp_path / "lines"
    files.mkdir()
    lines.mkdir()
    (files / "ok.py").write_text("print('fine')\n")
    with open(os.path.join(os.fsencode(files), b"caf\xe9.py"), "w") as handle:  # Latin-1, not UTF-8
        handle.write("print('latin-1 name')\n")
    with open(os.path.join(os.fsencode(lines), b"r\xff.jsonl"), "w") as handle:
        handle.write(json.dumps({"text": "a record"}) + "\n{broken\n")
    cfg = make_config(tmp_path, [{"name": "files", "path": str(files), "include": "*.py"},
                                 {"name": "lines", "path": str(lines)}])
    result = CliRunner().invoke(main, ["ingest", str(_yaml(tmp_path, cfg))])
    assert result.exit_code == 0, result.output
    inv = _inventory(cfg)
    assert (inv["sources"]["files"]["ok"], inv["sources"]["lines"]["ok"]) == (2, 1)
    assert inv["sources"]["lines"]["quarantined"] == 1
    infos = {info.name: info for info in source_infos(RunDir(Path(cfg.run_dir)))}
    records = list(iter_source_records(cfg, infos["files"]))
    assert sorted(r.locator for r in records) == ["caf\\xe9.py", "ok.py"]
    assert sorted(r.id for r in records) == ["files/caf\\xe9.py", "files/ok.py"]  # stable: the name's bytes
    assert sorted(r.id for r in sample_source(cfg, infos["files"], 2, seed=0)) == sorted(r.id for r in records)
    (quarantined,) = (Path(cfg.run_dir) / "quarantine" / "lines.jsonl").read_text().splitlines()
    assert json.loads(quarantined)["locator"] == "r\\xff.jsonl:2"


def _yaml(tmp_path, cfg):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_defaults=True)))
    return path


def _per_file_folder(tmp_path, ids=range(40)):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": f"jsonl row {i}"}) + "\n" for i in ids))
    pq.write_table(pa.Table.from_pylist([{"id": i, "text": f"parquet row {i}"} for i in ids]), folder / "b.parquet",
                   row_group_size=8)
    return folder


def test_ids_numbered_per_file_are_qualified_by_file_and_nothing_is_dropped(tmp_path, caplog):
    # Both files hold ids 0-39: 40 of the 80 records were quarantined as duplicates (issue 27 item 6).
    from mira.corpus.sources import iter_source_records, sample_source, source_infos
    from mira.run.rundir import RunDir

    cfg = make_config(tmp_path, [{"name": "m", "path": str(_per_file_folder(tmp_path))}],
                      ingest=IngestConfig(shard_records=16), engine={"workers": 2})
    outcome = api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["m"]
    assert (source["records"], source["ok"], source["quarantined"]) == (80, 80, 0)
    assert source["ids"] == "per file" and all(s["file_ids"] for s in source["shards"])
    (note,) = outcome.notes
    assert "the same id in a.jsonl and b.parquet" in note and "`a.jsonl#<id>`" in note and "fields: {id:" in note
    assert source["notes"] == [note]
    (info,) = source_infos(RunDir(Path(cfg.run_dir)))
    ids = [r.id for r in iter_source_records(cfg, info)]
    assert ids == [f"a.jsonl#{i}" for i in range(40)] + [f"b.parquet#{i}" for i in range(40)]
    with caplog.at_level("WARNING"):
        sample = sample_source(cfg, info, 10, seed=0)
    assert len({r.id for r in sample}) == 10 and set(r.id for r in sample) <= set(ids)
    assert not caplog.records  # served by the sample index, whose ranks are of the qualified ids


def test_a_repeat_inside_one_file_of_a_per_file_source_is_still_a_duplicate(tmp_path):
    folder = _per_file_folder(tmp_path, ids=[0, 1, 2, 1])  # 1 twice in each file
    cfg = make_config(tmp_path, [{"name": "m", "path": str(folder)}])
    api.run_one("ingest", cfg)
    source = _inventory(cfg)["sources"]["m"]
    assert (source["records"], source["ok"], source["quarantined"]) == (8, 6, 2)
    quarantine = [json.loads(line) for line in (Path(cfg.run_dir) / "quarantine" / "m.jsonl").read_text().splitlines()]
    assert [(q["id"], q["locator"], q["first"]) for q in quarantine] == [
        ("a.jsonl#1", "a.jsonl:4", "a.jsonl:2"), ("b.parquet#1", "b.parquet:row 3", "b.parquet:row 1")]


def test_ids_unique_across_files_and_single_files_keep_their_inventory_byte_for_byte(tmp_path):
    # Only a source whose ids repeat across files changes: everything else is as before (no new keys).
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "unique"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"id": f"a{i}", "text": f"row {i}"}) + "\n" for i in range(5)))
    pq.write_table(pa.Table.from_pylist([{"id": f"b{i}", "text": f"row {i}"} for i in range(5)]), folder / "b.parquet")
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps({"id": i % 3, "text": f"row {i}"}) + "\n" for i in range(6)))
    cfg = make_config(tmp_path, [{"name": "u", "path": str(folder)}, {"name": "s", "path": str(single)}])
    api.run_one("ingest", cfg)
    inv = _inventory(cfg)
    assert (inv["sources"]["u"]["ok"], inv["sources"]["s"]["ok"], inv["sources"]["s"]["quarantined"]) == (10, 3, 3)
    for source in inv["sources"].values():
        assert "ids" not in source and all("file_ids" not in s for s in source["shards"])
    assert not [n for n in inv["sources"]["u"].get("notes", [])]


def test_an_empty_source_file_is_said_in_one_line_and_an_empty_corpus_stops(tmp_path):
    # records=0, exit 0 and not a word (issue 27 item 14).
    empty, full = tmp_path / "empty.jsonl", tmp_path / "full.jsonl"
    empty.write_text("")
    full.write_text(json.dumps({"text": "a record"}) + "\n")
    cfg = make_config(tmp_path, [{"name": "e", "path": str(empty)}, {"name": "f", "path": str(full)}])
    outcome = api.run_one("ingest", cfg)
    (note,) = outcome.notes
    assert note == f"source e: {empty} holds no record (empty); it takes no part in the run"
    assert _inventory(cfg)["sources"]["e"]["notes"] == [note] and "notes" not in _inventory(cfg)["sources"]["f"]
    (tmp_path / "b").mkdir()
    only_empty = make_config(tmp_path / "b", [{"name": "e", "path": str(empty)}])
    result = CliRunner().invoke(main, ["ingest", str(_yaml(tmp_path / "b", only_empty))])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line.startswith("error: no usable record in any source (0 read, 0 quarantined")
    assert not (Path(only_empty.run_dir) / "_done" / "ingest.json").exists()
