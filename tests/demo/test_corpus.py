"""The demo corpus: real local files, deterministic, heterogeneous, and readable by the real ingest stage."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mira import api
from mira.demo import corpus
from mira.demo.agent import PERTURBATIONS
from mira.demo.textconv import roff_to_text, rst_sections
from mira.run.config_file import load_config

SCALE = 0.05
REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo-data")
    return out, corpus.build(out, seed=0, scale=SCALE)


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return [json.loads(line) for line in handle]


def _jsonl_lines(path: Path) -> list[dict]:
    """The lines of a JSONL file that parse (fortunes.jsonl ends with planted broken ones)."""
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def test_build_is_heterogeneous(built: tuple[Path, dict]) -> None:
    out, summary = built
    assert summary == json.loads((out / "manifest.json").read_text())
    assert len(summary["sources"]) >= 8, summary["skipped"]
    assert len({s["format"] for s in summary["sources"].values()}) >= 4
    assert {s["reader"] for s in summary["sources"].values()} >= {"jsonl", "parquet", "files"}
    assert any(s["file"].endswith(".jsonl.gz") for s in summary["sources"].values())
    assert summary["records"] == sum(s["records"] for s in summary["sources"].values())
    for name, entry in summary["sources"].items():
        assert (out / entry["file"]).exists(), name
        assert entry["records"] >= corpus.MIN_PER_SOURCE, name


def test_ids_are_stable_and_unique(built: tuple[Path, dict]) -> None:
    out, summary = built
    for name, entry in summary["sources"].items():
        if entry["reader"] != "jsonl" or name == "fortunes":
            continue
        ids = [r["id"] for r in _jsonl(out / entry["file"])]
        assert len(ids) == len(set(ids)) and all(i.startswith(f"{name}/") for i in ids), name


@pytest.mark.slow
def test_same_seed_gives_identical_bytes(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = built
    again = tmp_path / "again"
    corpus.build(again, seed=0, scale=SCALE)
    assert _files(again) == _files(out)
    other = tmp_path / "other-seed"
    corpus.build(other, seed=1, scale=SCALE)
    assert _files(other) != _files(out)


@pytest.mark.slow
def test_rebuild_with_same_arguments_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = corpus.build(tmp_path, seed=3, scale=0.01)

    def fail(*args: object) -> list[dict]:
        raise AssertionError("a source was rebuilt although the stored corpus matched")
    monkeypatch.setattr(corpus, "SOURCES", tuple(dataclasses.replace(s, build=fail) for s in corpus.SOURCES))
    assert corpus.build(tmp_path, seed=3, scale=0.01) == first
    (tmp_path / first["sources"]["fortunes"]["file"]).write_text("tampered\n")
    with pytest.raises(AssertionError):  # a changed file invalidates the stored build
        corpus.build(tmp_path, seed=3, scale=0.01)


@pytest.mark.slow
def test_missing_source_is_skipped_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mira.demo import sources

    monkeypatch.setattr(sources, "FORTUNE_ROOT", tmp_path / "no-such-dir")
    summary = corpus.build(tmp_path / "out", scale=0.01)
    assert "fortunes" not in summary["sources"]
    assert "no-such-dir" in summary["skipped"]["fortunes"]
    assert all(s.name != "fortunes" for s in corpus.demo_config(tmp_path / "out", tmp_path / "run").sources)


def test_agent_perturbations_are_marked(built: tuple[Path, dict]) -> None:
    out, summary = built
    if "bfcl_agent" not in summary["sources"]:
        pytest.skip(summary["skipped"]["bfcl_agent"])
    records = _jsonl(out / summary["sources"]["bfcl_agent"]["file"])
    good = [r for r in records if r["demo_perturbation"] is None]
    bad = [r for r in records if r["demo_perturbation"] is not None]
    assert good and {r["demo_perturbation"] for r in bad} == set(PERTURBATIONS)
    for record in good:  # real trajectories are well-formed: valid JSON arguments, known tool names
        names = {t["function"]["name"] for t in record["tools"]}
        calls = [c for m in record["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        assert calls and all(c["function"]["name"] in names for c in calls)
        assert all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    for record in bad:
        calls = [c for m in record["messages"] for c in m.get("tool_calls") or []]
        kind = record["demo_perturbation"]
        if kind in ("concatenated_json", "malformed_json", "repeated_failing_call"):
            with pytest.raises(json.JSONDecodeError):
                json.loads(calls[0]["function"]["arguments"])
        if kind == "repeated_failing_call":
            assert len(calls) >= 3 and len({c["function"]["arguments"] for c in calls}) == 1
        if kind == "wrong_function_name":
            assert calls[0]["function"]["name"] not in {t["function"]["name"] for t in record["tools"]}


def test_fortunes_end_with_the_planted_bad_lines(built: tuple[Path, dict]) -> None:
    out, summary = built
    entry = summary["sources"]["fortunes"]
    assert entry["planted_bad_lines"] == 3
    tail = (out / entry["file"]).read_bytes().splitlines()[-3:]
    assert tail == [line.rstrip(b"\n") for line in corpus.PLANTED_BAD_LINES]


def test_demo_config_matches_the_example_yaml(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = built
    example = load_config(REPO / "examples" / "demo.yaml")
    built_cfg = corpus.demo_config(out, tmp_path / "run")
    assert example.name == built_cfg.name == "demo"
    assert Path(example.run_dir) == REPO / "runs" / "demo"
    strip = {"sources": True, "run_dir": True, "compare": {"eval_sets"}}
    assert example.model_dump(exclude=strip) == built_cfg.model_dump(exclude=strip)
    assert example.compare.known_bad == "demo_perturbation" and not example.compare.proxy.enabled

    def eval_shape(cfg):
        return [(s.name, Path(s.path).relative_to(Path(s.path).parents[1]), s.format) for s in cfg.compare.eval_sets]
    assert eval_shape(example) == eval_shape(built_cfg) and len(example.compare.eval_sets) == 3
    assert all(Path(s.path).parents[1] == REPO / "demo-data" for s in example.compare.eval_sets)
    assert example.discovery.records_per_group == 4 and example.annotation.records_per_group == 12

    def shape(cfg):
        return [(s.name, Path(s.path).name, s.reader, s.format, s.include) for s in cfg.sources]
    assert shape(example) == shape(built_cfg)
    assert all(Path(s.path).parent == REPO / "demo-data" for s in example.sources)


def test_corpus_ingests_through_the_real_pipeline(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = built
    cfg = corpus.demo_config(out, tmp_path / "run")
    outcome = api.run_one("ingest", cfg)
    assert not outcome.skipped
    inventory = json.loads((tmp_path / "run" / "inventory.json").read_text())
    assert not inventory.get("errors")  # every source resolved and was read
    assert set(inventory["sources"]) == set(summary["sources"])
    for name, stats in inventory["sources"].items():
        assert stats["records"] == stats["ok"] + stats["quarantined"], name
        assert stats["records"] == summary["sources"][name]["records"], name
        assert stats["format"] == summary["sources"][name]["format"], name
        if name != "fortunes":
            assert stats["quarantined"] == 0, (name, stats["quarantine_reasons"])
    fortunes = inventory["sources"]["fortunes"]
    assert fortunes["quarantined"] == 3, fortunes["quarantine_reasons"]
    assert inventory["sources"]["c_headers"]["reader"] == "files"


def test_roff_stripper_keeps_text_and_drops_markup() -> None:
    source = "\n".join([
        '.\\" a comment that must vanish', ".TH LS 1", ".SH NAME", "ls \\- list directory contents",
        ".SH DESCRIPTION", ".B ls", "lists \\fIfiles\\fR, see", ".BR dir (1).", ".PP",
        ".ie n \\{\\", "nroff branch", ".\\}", ".el \\{\\", "troff branch", ".\\}", "the \\(lqend\\(rq \\e0"])
    title, text = roff_to_text(source)
    assert title == "LS 1"
    assert "NAME\nls - list directory contents" in text
    assert "ls lists files, see dir(1)." in text
    assert "nroff branch" in text and "troff branch" not in text
    assert 'the "end" \\0' in text and "comment" not in text and "\\f" not in text
    assert roff_to_text(".so man1/other.1") == ("", "")


def test_rst_sections_follow_adornment_levels() -> None:
    text = ("=====\nTitle\n=====\n\nintro\n\nFirst\n-----\n\nbody one\n\n"
            "Sub\n~~~\n\ndeep\n\nSecond\n------\n\nbody two\n")
    assert [(lvl, h) for lvl, h, _ in rst_sections(text)] == [(0, "Title"), (1, "First"), (2, "Sub"), (1, "Second")]
    assert rst_sections(text)[1][2] == "body one"


def test_eval_sets_are_held_out_from_the_corpus(built: tuple[Path, dict]) -> None:
    from mira.evaluation.overlap import TextIndex, normalise
    from mira.evaluation.training import read_eval_sets

    out, summary = built
    assert set(summary["eval_sets"]) | set(summary["skipped"]) >= {"heldout_code", "heldout_docs", "heldout_headers"}
    corpus_ids: set[str] = set()
    corpus_texts = TextIndex()
    exact, normal = set(), set()
    for entry in summary["sources"].values():
        path = out / entry["file"]
        if path.is_dir():
            rows = [{"id": f"c_headers/{p.relative_to(path)}", "text": p.read_text()} for p in path.rglob("*.h")]
        elif entry["reader"] == "parquet":
            rows = pq.read_table(path).to_pylist()
        else:  # fortunes ends with planted broken lines
            rows = _jsonl(path) if "planted_bad_lines" not in entry else _jsonl_lines(path)
        for row in rows:
            text = row.get("content") or row.get("text")
            corpus_ids.add(row["id"].split("/", 1)[1])
            if isinstance(text, str):
                corpus_texts.add(row["id"], text)
                exact.add(text)
                normal.add(" ".join(text.split()))
    seen: set[str] = set()
    for name, entry in summary["eval_sets"].items():
        rows = _jsonl(out / entry["file"])
        assert len(rows) == entry["records"] > 0
        for row in rows:
            text = row.get("content") or row.get("text")
            assert row["id"].startswith(f"{name}/") and row["id"].split("/", 1)[1] not in corpus_ids
            # Not the same text, not the same up to whitespace, not a near-duplicate, and no eval
            # record twice.
            assert text not in exact and " ".join(text.split()) not in normal
            assert not corpus_texts.matches(text), row["id"]
            assert normalise(text) not in seen, row["id"]
            seen.add(normalise(text))
    headers = _jsonl(out / summary["eval_sets"]["heldout_headers"]["file"])
    assert all(r["path"].endswith(".h") and r["language"] == "c" for r in headers)
    # `mira compare` reads them like sources, through the config demo_config writes.
    config = corpus.demo_config(out, out / "run")
    texts = read_eval_sets(config)
    assert set(texts) == set(summary["eval_sets"]) and all(texts.values())
    assert "def " in texts["heldout_code"][0] or "class " in texts["heldout_code"][0]
    assert "#" in texts["heldout_headers"][0]


def test_the_fuller_demo_profile_is_the_demo_with_larger_knobs() -> None:
    demo = load_config(REPO / "examples" / "demo.yaml")
    full = load_config(REPO / "examples" / "demo-full.yaml")
    assert [(s.name, s.path, s.format) for s in full.sources] == [(s.name, s.path, s.format) for s in demo.sources]
    assert Path(full.run_dir) == REPO / "runs" / "demo-full"
    assert full.annotation.records_per_group > demo.annotation.records_per_group
    assert full.discovery.anchors_per_group > demo.discovery.anchors_per_group
    assert full.render == demo.render and full.teacher == demo.teacher
