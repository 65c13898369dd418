import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mira import api
from mira.cli import main
from mira.config import ConfigError, EngineConfig, IngestConfig
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
    quarantine = [json.loads(line) for line in (Path(cfg.run_dir) / "quarantine" / "lines.jsonl").read_text().splitlines()]
    assert len(quarantine) == 7 and all(q["reason"] and q["locator"].startswith("broken.jsonl:") for q in quarantine)
    reasons = " | ".join(q["reason"] for q in quarantine)
    for fragment in ("malformed JSON", "not valid UTF-8", "missing text field", "empty record", "empty line",
                     "expected a JSON object", "record larger than 2000 bytes"):
        assert fragment in reasons


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
    assert dry.exit_code == 0 and "fingerprint" in dry.output and "ingest (to do)" in dry.output
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
