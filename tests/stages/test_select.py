import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest

from mira import api
from mira.core.config import EngineConfig, SelectionConfig
from mira.run.rundir import RunDir
from mira.selection.named import current_selection
from tests.engines.doubles import build_corpus, build_scored_run, make_config, score_with_doubles, tree_bytes


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One scored run (stand-in student; qa fully masked); tests copy it."""
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _run(scored, tmp_path, **selection):
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    config = make_config(corpus, tmp_path / "run", selection=SelectionConfig(**selection))
    return config, RunDir(tmp_path / "run")


def _select(config):
    outcome = api.run_one("select", config)
    summary = json.loads((current_selection(RunDir(Path(config.run_dir))) / "summary.json").read_text())
    return outcome, summary


def _decisions(run: RunDir) -> list[dict]:
    rows = []
    for path in sorted((current_selection(run) / "_decisions").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            rows.append({**row, "source": path.parent.name})
    return rows


def _scores(run: RunDir) -> list[dict]:
    """Score rows with the aggregate select computes at join time (default reliability config)."""
    from mira.core.config import ReliabilityConfig
    from mira.scoring.reliability import current_mask
    from mira.scoring.table import aggregate_scores

    rows = []
    for path in sorted((run.root / "scores").glob("*/*.parquet")):
        table = pq.read_table(path)
        group = next((g for g in table.column("group").to_pylist() if g), None)
        mask = current_mask(run, group, ReliabilityConfig()) if group else None
        for row, score in zip(table.to_pylist(), aggregate_scores(table, mask, ReliabilityConfig()), strict=True):
            rows.append({**row, "score": float(score)})
    return rows


def _max_tokens(rows, **where) -> int:
    return max(r["tokens"] for r in rows if all(r[k] == v for k, v in where.items()))


def _check_books(summary):
    for part in ("sources", "groups"):
        for name, c in summary[part].items():
            assert c["records_in"] == c["kept"] + c["rejected"] + c["quarantined"], name
            assert c["tokens_in"] == c["kept_tokens"] + c["rejected_tokens"], name
    for key, total in summary["totals"].items():
        assert total == sum(c[key] for c in summary["sources"].values())
        assert total == sum(c[key] for c in summary["groups"].values())


def test_group_mode_meets_each_group_budget_within_one_record(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=0.5)
    outcome, summary = _select(config)
    _check_books(summary)
    scores = _scores(run)
    for group, unit in summary["units"].items():
        assert abs(unit["kept_tokens"] - unit["budget_tokens"]) <= _max_tokens(scores, group=group)
        assert unit["kept_tokens"] == summary["groups"][group]["kept_tokens"]
    assert summary["mode"] == "group" and summary["method"] == "mira"
    # kept records are exactly the best of their group: no rejected scored record beats a kept one
    decisions = {d["id"]: d for d in _decisions(run)}
    for group in ("g0", "g1"):
        rows = [s for s in scores if s["group"] == group and not np.isnan(s["score"])]
        kept = [s["score"] for s in rows if decisions[s["id"]]["kept"]]
        dropped = [s["score"] for s in rows if not decisions[s["id"]]["kept"]]
        assert kept and dropped and min(kept) >= max(dropped)
    assert outcome.counts["kept"] == sum(d["kept"] for d in decisions.values())


def test_masked_records_are_rejected_with_a_reason_and_counted(scored, tmp_path):
    config, run = _run(scored, tmp_path, unscored="reject")
    _, summary = _select(config)
    qa = [d for d in _decisions(run) if d["source"] == "qa"]
    assert len(qa) == 20 and not any(d["kept"] for d in qa)
    assert {d["reason"] for d in qa} == {"unscored (all anchors masked)"}
    assert all(d["rank"] is None for d in qa)
    assert summary["sources"]["qa"]["unscored"] == 20 == summary["totals"]["unscored"]
    assert summary["sources"]["qa"]["rejected"] == 20
    quarantined = [d for d in _decisions(run) if d["reason"].startswith("quarantined:")]
    assert len(quarantined) == 2 and summary["sources"]["docs"]["quarantined"] == 2
    assert any("malformed JSON" in d["reason"] for d in quarantined)


def test_cells_excluded_by_config_are_masked_at_select_time(scored, tmp_path):
    # reliability.exclude: a cell ablated without touching the students (what `mira compare` uses).
    from mira.core.config import ReliabilityConfig

    config, run = _run(scored, tmp_path, unscored="reject")
    docs_ok = sum(1 for r in _scores(run) if r["source"] == "docs" and r["quarantine"] is None)
    config.reliability = ReliabilityConfig(exclude=["docs/*"])
    _, summary = _select(config)
    assert summary["sources"]["docs"]["unscored"] == docs_ok > 0 and summary["sources"]["docs"]["kept"] == 0
    assert summary["sources"]["qa"]["unscored"] == 20 and summary["sources"]["pycode"]["unscored"] == 0
    config.reliability = ReliabilityConfig(exclude=["docs/a00"])  # one of its two anchors: still scored
    _, summary = _select(config)
    assert summary["sources"]["docs"]["unscored"] == 0


def test_score_files_with_other_row_counts_than_ingest_stop_the_join(scored, tmp_path):
    # The score table is allocated from ingest's counts; rows beyond or short of them are an error.
    from mira.corpus.sources import source_infos
    from mira.scoring.table import load_score_table

    config, run = _run(scored, tmp_path)
    infos = source_infos(run)
    assert len(load_score_table(config, run, infos).tokens) == sum(i.records for i in infos)
    for delta in (-1, 1):
        infos = source_infos(run)
        infos[0].records += delta
        with pytest.raises(RuntimeError, match="rerun `mira score`"):
            load_score_table(config, run, infos)


def test_unscored_sources_keep_a_random_share_by_default(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=0.5)
    _, summary = _select(config)
    qa = [d for d in _decisions(run) if d["source"] == "qa"]
    kept = [d for d in qa if d["kept"]]
    qa_tokens = sum(d["tokens"] for d in qa)
    # The source keeps about half its tokens (within one record), drawn at random, not by score.
    assert abs(sum(d["tokens"] for d in kept) - 0.5 * qa_tokens) <= max(d["tokens"] for d in qa)
    assert {d["reason"] for d in kept} == {"kept (unscored: source-preserving random share)"}
    assert summary["sources"]["qa"]["unscored"] == 20 and summary["sources"]["qa"]["kept"] == len(kept) > 0
    totals = summary["totals"]
    assert totals["records_in"] == totals["kept"] + totals["rejected"] + totals["quarantined"]
    # The unit's budget is still met as a whole: scored records share what the random draw left.
    for unit in summary["units"].values():
        assert abs(unit["kept_tokens"] - unit["budget_tokens"]) <= 2 * max(d["tokens"] for d in _decisions(run))
    again = {d["id"]: d["kept"] for d in _decisions(run)}
    _select(config)
    assert {d["id"]: d["kept"] for d in _decisions(run)} == again  # seeded: the same draw every time


def test_selected_records_keep_original_fields_and_score_columns(scored, tmp_path):
    config, run = _run(scored, tmp_path, output_formats=["jsonl", "parquet"])
    _, summary = _select(config)
    files = sorted(current_selection(run).glob("[!_]*/*.jsonl"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == summary["totals"]["kept"]
    doc = next(r for r in records if r["mira_id"].startswith("doc-"))
    assert doc["id"] == doc["mira_id"] and doc["text"] and doc["mira_group"] == "g1"
    assert {"mira_score", "mira_tokens", "mira_anchors"} <= set(doc)
    assert [a["anchor"] for a in doc["mira_anchors"]] == ["g1/a00", "g1/a01"]  # (anchor ids: one per group)
    code = next(r for r in records if r["mira_group"] == "g0")
    assert code["path"].endswith(".py") and [a["anchor"] for a in code["mira_anchors"]][-1] == "g0/a02"
    # the same JSON reader `datasets.load_dataset("json", ...)` uses
    table = pj.read_json(files[0])
    assert table.num_rows == len(files[0].read_text().splitlines()) and "mira_score" in table.column_names
    parquet_rows = sum(pq.read_table(p).num_rows for p in current_selection(run).glob("[!_]*/*.parquet"))
    assert parquet_rows == len(records)


def test_parquet_shards_of_a_source_share_one_schema(scored, tmp_path):
    config, run = _run(scored, tmp_path, output_formats=["parquet"])
    _, summary = _select(config)
    files = sorted(current_selection(run).glob("docs/*.parquet"))
    assert len(files) > 1
    schemas = {str(pq.read_schema(p)) for p in files}
    assert len(schemas) == 1
    assert sum(pq.read_metadata(p).num_rows for p in files) == summary["sources"]["docs"]["kept"]


def test_load_dataset_reads_the_selection(scored, tmp_path):
    datasets = pytest.importorskip("datasets")
    config, run = _run(scored, tmp_path, output_formats=["jsonl", "parquet"])
    _, summary = _select(config)
    files = [str(p) for p in sorted(current_selection(run).glob("docs/*.parquet"))]
    dataset = datasets.load_dataset("parquet", data_files=files, split="train")
    assert len(dataset) == summary["sources"]["docs"]["kept"]


def test_a_new_budget_never_touches_scores(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=0.5)
    _, half = _select(config)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run.root / "scores").rglob("*") if p.is_file()}
    score_fp = run.stage_fingerprint("score")
    config.selection.budget = 0.2
    outcome, fifth = _select(config)
    assert not outcome.skipped and fifth["totals"]["kept_tokens"] < half["totals"]["kept_tokens"]
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run.root / "scores").rglob("*") if p.is_file()}
    assert after == before and run.stage_fingerprint("score") == score_fp
    assert api.run_one("score", config).skipped  # the score fingerprint does not see selection settings
    assert not [p for p in (run.root / "selection").iterdir() if p.name.startswith(".")]  # no build leftovers


def test_plan_says_no_model_runs(scored, tmp_path):
    from mira.stages import select as select_stage

    config, run = _run(scored, tmp_path, budget=0.25)
    lines = select_stage.plan(config, run)
    assert "budget: 25% of tokens" in lines[0] and "no model is run" in lines[1]
    assert lines[-1].startswith("writes selection/mira-group-25pct/")


def test_selection_is_deterministic(scored, tmp_path):
    config, run = _run(scored, tmp_path, method="random", seed=3)
    _select(config)
    first = tree_bytes(run.root / "selection")
    api.run_one("select", config, force=True)
    assert tree_bytes(run.root / "selection") == first


def test_source_mode_cuts_each_source_and_global_mode_once(scored, tmp_path):
    config, run = _run(scored, tmp_path, mode="source", budget=0.4)
    _, summary = _select(config)
    _check_books(summary)
    scores = _scores(run)
    assert set(summary["units"]) == {"pycode", "docs", "qa"}
    for source in ("pycode", "docs"):
        unit = summary["units"][source]
        assert (abs(unit["kept_tokens"] - 0.4 * summary["sources"][source]["tokens_in"])
                <= _max_tokens(scores, source=source))
    qa = summary["units"]["qa"]  # nothing scorable there: the random share stands in
    assert qa["unscored_share_tokens"] == qa["budget_tokens"]
    assert abs(qa["kept_tokens"] - 0.4 * summary["sources"]["qa"]["tokens_in"]) <= _max_tokens(scores, source="qa")

    config.selection.mode = "global"
    _, summary = _select(config)
    _check_books(summary)
    assert list(summary["units"]) == ["all"]
    assert abs(summary["totals"]["kept_tokens"] - 0.4 * summary["totals"]["tokens_in"]) <= _max_tokens(scores)


def test_absolute_budget_is_shared_by_token_share(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=3000)
    _, summary = _select(config)
    total = summary["totals"]["tokens_in"]
    for group, unit in summary["units"].items():
        assert unit["budget_tokens"] == pytest.approx(3000 * summary["groups"][group]["tokens_in"] / total, abs=0.1)
    assert summary["budget_kind"] == "tokens"


def test_floor_and_cap_are_respected(scored, tmp_path):
    config, run = _run(scored, tmp_path, mode="global", budget=0.5, floor={"docs": 0.8}, cap={"pycode": 0.3})
    _, summary = _select(config)
    _check_books(summary)
    docs, code = summary["sources"]["docs"], summary["sources"]["pycode"]
    assert docs["kept_tokens"] >= 0.8 * docs["tokens_in"]
    assert code["kept_tokens"] <= 0.3 * code["tokens_in"]
    reasons = {d["reason"] for d in _decisions(run)}
    assert {"kept (source floor)", "source cap"} <= reasons


@pytest.mark.parametrize(("override", "message"), [
    ("selection.floor={nope: 0.1}", "selection: floor: unknown source 'nope' (sources: docs, pycode, qa)"),
    ("selection.cap={doc: 0.1}", "selection: cap: unknown source 'doc'; did you mean 'docs'?")])
def test_unknown_source_in_floor_or_cap_is_refused_at_config_load(scored, tmp_path, override, message):
    # Refused where --dry-run refuses it too, not first by the real run's select.
    from mira.core.config import ConfigError
    from mira.run.config_file import load_config

    corpus, _ = scored
    sources = "sources=[" + ", ".join(f"{{name: {s['name']}, path: x.jsonl}}" for s in corpus) + "]"
    with pytest.raises(ConfigError) as refused:
        load_config(None, [sources, override])
    assert str(refused.value) == f"invalid config: {message}"


@pytest.mark.parametrize("bounds", [{"cap": {"qa": 0.1}}, {"floor": {"qa": 0.9}}])
def test_floor_and_cap_bound_a_source_whose_records_are_all_unscored(scored, tmp_path, bounds):
    # qa is fully masked: its records are kept by the seeded random share, which the bound holds too.
    config, run = _run(scored, tmp_path, budget=0.5, **bounds)
    _, summary = _select(config)
    _check_books(summary)
    qa = summary["sources"]["qa"]
    assert qa["unscored"] == qa["records_in"] == 20
    share = qa["kept_tokens"] / qa["tokens_in"]
    assert share <= 0.1 if "cap" in bounds else share >= 0.9


def test_random_baseline_preserves_every_source_share(scored, tmp_path):
    config, run = _run(scored, tmp_path, method="random", budget=0.3)
    _, summary = _select(config)
    _check_books(summary)
    scores = _scores(run)
    assert summary["mode"] == "source"
    for source, counts in summary["sources"].items():  # qa too: random needs no score
        assert abs(counts["kept_tokens"] - 0.3 * counts["tokens_in"]) <= _max_tokens(scores, source=source)
    other_seed, _ = _run(scored, tmp_path / "b", method="random", budget=0.3, seed=1)
    _select(other_seed)
    kept = {d["id"] for d in _decisions(run) if d["kept"]}
    assert kept != {d["id"] for d in _decisions(RunDir(Path(other_seed.run_dir))) if d["kept"]}


def test_length_baseline_keeps_the_longest(scored, tmp_path):
    config, run = _run(scored, tmp_path, method="length", mode="source")
    _select(config)
    decisions = [d for d in _decisions(run) if d["source"] == "docs" and not d["reason"].startswith("quarantined")]
    kept = [d["tokens"] for d in decisions if d["kept"]]
    assert min(kept) >= max(d["tokens"] for d in decisions if not d["kept"])


def test_mira_global_uses_one_cutoff_over_scores(scored, tmp_path):
    config, run = _run(scored, tmp_path, method="mira", mode="global")
    _, summary = _select(config)
    assert summary["mode"] == "global" and list(summary["units"]) == ["all"]
    decisions = {d["id"]: d for d in _decisions(run)}
    scored_rows = [s for s in _scores(run) if not np.isnan(s["score"])]
    kept = [s["score"] for s in scored_rows if decisions[s["id"]]["kept"]]
    assert min(kept) >= max(s["score"] for s in scored_rows if not decisions[s["id"]]["kept"])


def test_dsir_baseline_ranks_by_importance_weight(scored, tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                              ["Return the sum of a and b.", "Return a new list sorted by key.",
                               "Return True if the string matches the pattern."]))
    config, run = _run(scored, tmp_path, method="dsir", dsir_target=str(target), mode="source", budget=0.5)
    _, summary = _select(config)
    _check_books(summary)
    assert summary["key"].startswith("dsir") and summary["totals"]["kept"] > 0
    assert summary["sources"]["qa"]["kept"] > 0  # dsir reads text, not the masked scores
    for source in ("docs", "qa", "pycode"):
        decisions = [d for d in _decisions(run) if d["source"] == source and d["key"] is not None]
        assert min(d["key"] for d in decisions if d["kept"]) >= max(d["key"] for d in decisions if not d["kept"])


# --- hostile input (issue 10) ----------------------------------------------------------------------

def _score(config):
    score_with_doubles(config)


@pytest.fixture(scope="module")
def mixed_types(tmp_path_factory):
    """A scored run whose docs disagree on a field's type (list / string / number / object) within
    and across shards, and whose qa source is Parquet with NaN and Infinity in a float column."""
    root = tmp_path_factory.mktemp("mixed_types")
    corpus = build_corpus(root / "corpus")
    docs = root / "corpus" / "docs.jsonl"
    shapes = [["a", "b"], "tag", 7, {"k": "v"}, None]
    lines = []
    for i, line in enumerate(docs.read_text().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        record["tags"] = shapes[i % len(shapes)]
        if i % 4 == 0:
            record["only_lists"] = [i]  # one type throughout: must stay a list column
        lines.append(json.dumps(record))
    docs.write_text("\n".join(lines) + "\n")
    qa_rows = [json.loads(line) for line in (root / "corpus" / "qa.jsonl").read_text().splitlines()]
    weights = [float("nan"), float("inf"), -float("inf"), 0.5]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([{**r, "weight": weights[i % 4]} for i, r in enumerate(qa_rows)]),
                   root / "corpus" / "qa.parquet", row_group_size=8)
    corpus[2]["path"] = str(root / "corpus" / "qa.parquet")
    config = make_config(corpus, root / "run", engine=EngineConfig(workers=1))
    _score(config)
    return corpus, root / "run"


def test_mixed_type_field_becomes_one_json_column_in_parquet(mixed_types, tmp_path):
    # It used to die with ArrowInvalid ("cannot mix list and non-list") after writing JSONL.
    config, run = _run(mixed_types, tmp_path, budget_fraction=1.0, output_formats=["jsonl", "parquet"])
    _, summary = _select(config)
    assert summary["json_columns"] == ["tags"]  # in every output file: JSONL too, one schema for the selection
    files = sorted(current_selection(run).glob("docs/*.parquet"))
    assert len(files) > 1 and len({str(pq.read_schema(p)) for p in files}) == 1
    table = pq.read_table(files)
    assert str(table.schema.field("tags").type) == "string"
    assert str(table.schema.field("only_lists").type).startswith("list")
    jsonl = [json.loads(line) for f in sorted(current_selection(run).glob("docs/*.jsonl"))
             for line in f.read_text().splitlines()]
    # The JSON texts decode to exactly the original values, in the same order as the JSONL output.
    decoded = [None if v is None else json.loads(v) for v in table.column("tags").to_pylist()]
    assert table.column("tags").to_pylist() == [r["tags"] for r in jsonl]
    assert {type(v) for v in decoded} == {list, str, int, dict, type(None)}
    assert table.num_rows == summary["sources"]["docs"]["kept"]


def test_selection_jsonl_is_strict_json(mixed_types, tmp_path):
    config, run = _run(mixed_types, tmp_path, budget_fraction=1.0)
    _, summary = _select(config)

    def refuse(name):
        raise ValueError(f"bare {name} in the selection")

    files = sorted(current_selection(run).glob("[!_]*/*.jsonl"))
    records = [json.loads(line, parse_constant=refuse) for f in files for line in f.read_text().splitlines()]
    assert len(records) == summary["totals"]["kept"]
    weights = [r["weight"] for r in records if "weight" in r]
    assert weights and None in weights and 0.5 in weights  # NaN and Infinity written as null


def test_budget_tokens_and_a_budget_that_keeps_nothing_is_noted(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget_tokens=1, unscored="reject")
    outcome, summary = _select(config)
    assert summary["budget_kind"] == "tokens" and summary["budget_label"] == "1 tokens"
    assert summary["totals"]["kept"] == 0
    assert any("keeps nothing" in note and "budget_tokens" in note for note in outcome.notes)
    config, run = _run(scored, tmp_path / "b", budget_fraction=0.5)
    outcome, _ = _select(config)
    assert not any("keeps nothing" in note for note in outcome.notes)


def test_select_stops_when_an_input_changed_in_place_since_scoring(tmp_path):
    import os

    from mira.core.errors import StageNotReady

    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=1),
                         selection=SelectionConfig(budget_fraction=1.0))
    _score(config)
    _select(config)
    docs = tmp_path / "corpus" / "docs.jsonl"
    stat, data = docs.stat(), docs.read_bytes()
    first_text = json.loads(data.splitlines()[0])["text"]
    edited = data.replace(first_text[:6].encode(), first_text[:6][::-1].encode(), 1)
    assert len(edited) == len(data) and edited != data
    docs.write_bytes(edited)
    os.utime(docs, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same size and mtime: no stat can tell
    before = tree_bytes(tmp_path / "run" / "selection")
    with pytest.raises(StageNotReady, match=r"source docs shard 00000 \(docs.jsonl\): input changed since "
                                            r"scoring.*mira score --force"):
        api.run_one("select", config, force=True)
    assert tree_bytes(tmp_path / "run" / "selection") == before  # the previous selection is intact
    score_with_doubles(config, "ingest", "score", prepare=False)  # what the message says to do
    api.run_one("select", config, force=True)
    shard = current_selection(RunDir(tmp_path / "run")) / "docs" / "00000.jsonl"
    kept = [json.loads(line) for line in shard.read_text().splitlines()]
    assert kept[0]["text"].startswith(first_text[:6][::-1])


def test_records_that_no_longer_line_up_with_their_scores_stop_with_one_line():
    from mira.core.errors import StageNotReady
    from mira.corpus.sources import SourceInfo
    from mira.io.readers import RawItem, Shard
    from mira.selection.build import _aligned

    info = SourceInfo("docs", "text", [], 2, 2, 10)
    shard = Shard(source="docs", index=0, reader="jsonl", files=("/data/docs.jsonl",))
    scores = [{"locator": "docs.jsonl:1"}, {"locator": "docs.jsonl:2"}]
    raw = [RawItem("docs.jsonl:1", {}), RawItem("docs.jsonl:2", {})]
    assert len(list(_aligned(iter(raw), scores, info, shard))) == 2
    for items, detail in ((raw[:1], "fewer records"), (raw + [RawItem("docs.jsonl:3", {})], "more records"),
                          ([raw[1], raw[0]], "docs.jsonl:2 vs docs.jsonl:1")):
        with pytest.raises(StageNotReady, match=rf"source docs shard 00000 \(docs.jsonl\): input changed "
                                                rf"since scoring \({detail}.*mira score --force"):
            list(_aligned(iter(items), scores, info, shard))


def test_reselecting_never_deletes_files_mira_did_not_write(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=0.5, name="mine")
    _select(config)
    folder = run.root / "selection" / "mine"
    mine = {"mine/important.txt": "keep", "mine/docs/notes.md": "mine", "mine/_decisions/README": "mine too",
            "mine/docs/.draft.tmp": "half-written notes", "important.txt": "next to the selections"}
    for name, text in mine.items():
        (run.root / "selection" / name).write_text(text)
    old_shards = sorted(p.name for p in (folder / "docs").glob("*.jsonl"))
    config = make_config(scored[0], run.root, selection=SelectionConfig(budget=0.2, name="mine"))
    outcome, summary = _select(config)
    for name, text in mine.items():
        assert (run.root / "selection" / name).read_text() == text, name
    rows = sum(len(p.read_text().splitlines()) for p in folder.glob("*/*.jsonl"))
    assert rows == summary["totals"]["kept"] == outcome.counts["kept"] and summary["budget"] == 0.2
    assert old_shards and not [p for p in (run.root / "selection").iterdir() if p.name.startswith(".")]


def _cli(config, *args):
    from click.testing import CliRunner

    from mira.cli import main
    from mira.run.config_file import dump_config

    path = Path(config.run_dir).parent / "config.yaml"
    path.write_text(dump_config(config))
    return CliRunner().invoke(main, [args[0], str(path), *args[1:]])


@pytest.mark.parametrize("entry, message", [
    ("docs/a99", "reliability.exclude 'docs/a99': group g1 of source docs has no anchor 'a99' "
                 "(its anchors: a00, a01)"),
    ("pycode/a2", "reliability.exclude 'pycode/a2': group g0 of source pycode has no anchor 'a2' "
                  "(its anchors: a00, a01, a02); did you mean 'a02'?"),
    ("*/a02x", "reliability.exclude '*/a02x': no group has an anchor 'a02x' (anchors by group: g0: a00, a01, a02; "
               "g1: a00, a01); did you mean 'a02'?")])
def test_an_excluded_anchor_that_does_not_exist_stops_select_and_leaves_its_marker(scored, tmp_path, entry, message):
    # The typo excluded nothing, silently; found under the run lock it also cleared the done marker and
    # wrote the refused config into config.yaml before failing.
    config, run = _run(scored, tmp_path)
    assert not _cli(config, "select").exit_code
    before = {p: run.path(p).read_bytes() for p in ("_done/select.json", "config.yaml")}
    result = _cli(config, "select", "--set", f"reliability.exclude=['{entry}']")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {message}"]
    assert {p: run.path(p).read_bytes() for p in before} == before
    assert "skipped (done)" in _cli(config, "select").output


def test_excluded_anchors_that_exist_are_accepted(scored, tmp_path):
    config, _ = _run(scored, tmp_path)
    result = _cli(config, "select", "--set", "reliability.exclude=['docs/a01', '*/a02', 'qa/*', '*/*']")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("deleted", ["selection/mira-group-50pct", "selection/mira-group-50pct/summary.json",
                                     "selection/_current.json"])
def test_a_deleted_selection_is_not_done(scored, tmp_path, deleted):
    # The done marker vouched for a selection that was gone: select said "skipped (done)" and the
    # report showed another selection as the selection.
    config, run = _run(scored, tmp_path, budget=0.5)
    _select(config)
    other = config.model_copy(update={"selection": SelectionConfig(budget=0.3)})
    api.run_one("select", other)
    _select(config)  # the 50% selection again: current, done
    assert api.run_one("select", config).skipped
    target = run.path(deleted)
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert run.done("select") is None
    assert api.status(run.root)["stages"]["select"]["done"] is False
    outcome, summary = _select(config)
    assert not outcome.skipped and summary["name"] == "mira-group-50pct"
    assert current_selection(run) == run.path("selection", "mira-group-50pct")
    assert api.run_one("select", config).skipped


def test_records_appended_since_ingest_stop_select_with_one_line(tmp_path):
    # `mira select --force` joined the old scores and left the appended records out without a word
    # (issue 27 item 5): the sources changed since ingest, so the line says what to run.
    from click.testing import CliRunner

    from mira.cli import main

    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=1))
    _score(config)
    _select(config)
    with open(tmp_path / "corpus" / "qa.jsonl", "a") as handle:
        handle.write(json.dumps({"id": "late", "question": "Appended?", "answer": "After ingest."}) + "\n")
    before = tree_bytes(tmp_path / "run" / "selection")
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    result = CliRunner().invoke(main, ["select", "--force", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "the files of qa changed since ingest" in line and "run `mira ingest`, then `mira select`" in line
    assert tree_bytes(tmp_path / "run" / "selection") == before


def test_the_summary_counts_the_tokens_a_random_draw_kept(scored, tmp_path):
    config, run = _run(scored, tmp_path, budget=0.5)
    _, summary = _select(config)
    drawn = [d for d in _decisions(run) if d["reason"] == "kept (unscored: source-preserving random share)"]
    assert drawn and summary["unscored_policy"] == "random"
    assert summary["totals"]["unscored_kept"] == len(drawn)
    assert summary["totals"]["unscored_kept_tokens"] == sum(d["tokens"] for d in drawn)
    assert summary["groups"]["g1"]["unscored_kept_tokens"] == summary["sources"]["qa"]["unscored_kept_tokens"] > 0
    assert summary["groups"]["g0"]["unscored_kept_tokens"] == 0


def _cli_select(scored, tmp_path, *overrides):
    from click.testing import CliRunner

    from mira.cli import main

    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    path = tmp_path / "config.json"  # JSON is YAML
    path.write_text(make_config(corpus, tmp_path / "run").model_dump_json())
    args = [a for o in overrides for a in ("--set", o)]
    return CliRunner().invoke(main, ["select", str(path), *args])


def test_mira_select_closes_with_the_ranked_and_random_shares_per_group(scored, tmp_path):
    result = _cli_select(scored, tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index(f"selection: {tmp_path / 'run' / 'selection' / 'mira-group-50pct'}")
    assert lines[at + 1].startswith("  ranked by a reliable score: ") and "random: " in lines[at + 1]
    assert lines[at + 2].startswith("    g0: 100.0% ranked, 0.0% random (")
    assert lines[at + 3].startswith("    g1: ") and "% random (" in lines[at + 3]
    assert "most of this selection is random" not in result.output  # qa is a small part


def test_a_mostly_random_selection_is_said_once(scored, tmp_path, caplog):
    # Every cell masked: the warning is a note of the stage, shown once, and not logged beside it.
    result = _cli_select(scored, tmp_path, 'reliability.exclude=["docs/*", "pycode/*", "qa/*"]')
    assert result.exit_code == 0, result.output
    assert result.output.count("most of this selection is random: 100.0% of its tokens (groups g0, g1)") == 1
    assert "ranked by a reliable score: 0.0% of the tokens; random: 100.0%" in result.output
    assert not [r for r in caplog.records if "random" in r.getMessage() and r.levelno >= 30]


def test_a_baseline_that_reads_no_score_warns_about_no_masked_anchor(scored, tmp_path, caplog):
    # `mira compare` said "... records have every anchor masked" for the length baseline too.
    config, _ = _run(scored, tmp_path, method="length", budget=0.5)
    outcome, _ = _select(config)
    said = [r.getMessage() for r in caplog.records if r.levelno >= 30] + outcome.notes
    assert not [m for m in said if "anchor" in m or "masked" in m or "random" in m], said


def test_one_load_dataset_call_reads_every_source_of_a_selection(scored, tmp_path):
    # Each source's files had their own columns, so one load over all sources failed (issue 27 item 19).
    datasets = pytest.importorskip("datasets")
    config, run = _run(scored, tmp_path, budget=0.5, output_formats=["parquet"])
    _, summary = _select(config)
    folder = current_selection(run)
    files = sorted(str(p) for p in folder.glob("[!_]*/*.parquet"))
    assert {Path(f).parent.name for f in files} == {"pycode", "docs", "qa"}
    dataset = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(dataset) == summary["totals"]["kept"]
    assert {"path", "text", "question", "answer", "mira_anchors", "mira_reason"} <= set(dataset.column_names)
    qa = [r for r in dataset if r["mira_group"] == "g1" and r["question"] is not None]
    assert qa and all(r["path"] is None and r["text"] is None for r in qa)  # a field its source lacks: null
    assert len({str(pq.read_schema(f)) for f in files}) == 1


def test_compressed_jsonl_of_a_whole_selection_loads_as_json(scored, tmp_path):
    datasets = pytest.importorskip("datasets")
    import yaml

    config, run = _run(scored, tmp_path, budget=0.5, output_formats=["jsonl.gz", "jsonl.zst"])
    _, summary = _select(config)
    folder = current_selection(run)
    kept = summary["totals"]["kept"]
    # The card: one config per JSON lines format, with the selection's features (a JSON reader types
    # each file alone, and a column null throughout one file would refuse the next one).
    gz = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf"))
    zst = datasets.load_dataset(str(folder), "jsonl_zst", split="train", cache_dir=str(tmp_path / "hf"))
    assert len(gz) == len(zst) == kept and gz.features == zst.features
    assert sorted(gz["mira_id"]) == sorted(zst["mira_id"])
    card = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    features = datasets.Features._from_yaml_list(card["dataset_info"][0]["features"])
    files = sorted(str(p) for p in folder.glob("[!_]*/*.jsonl.gz"))
    plain = datasets.load_dataset("json", data_files=files, features=features, split="train",
                                  cache_dir=str(tmp_path / "hf"))
    assert len(plain) == kept and plain.features == gz.features


def test_anchor_scores_say_their_group_and_whether_they_are_reliable(scored, tmp_path):
    # `mira_a00` meant another dimension in each group; the mask was nowhere in the output.
    config, run = _run(scored, tmp_path, budget=1.0)
    _select(config)
    records = [json.loads(line) for f in sorted(current_selection(run).glob("[!_]*/*.jsonl"))
               for line in f.read_text().splitlines()]
    by_source = {}
    for r in records:
        source = "qa" if r.get("question") is not None else "docs" if r["mira_group"] == "g1" else "pycode"
        by_source.setdefault(source, []).append(r)
    assert not any(k.startswith("mira_a0") for r in records for k in r)
    assert {a["anchor"] for r in by_source["pycode"] for a in r["mira_anchors"]} == {"g0/a00", "g0/a01", "g0/a02"}
    assert {a["anchor"] for r in by_source["docs"] for a in r["mira_anchors"]} == {"g1/a00", "g1/a01"}
    assert all(a["reliable"] for r in by_source["docs"] for a in r["mira_anchors"])
    assert not any(a["reliable"] for r in by_source["qa"] for a in r["mira_anchors"])  # qa is masked
    assert {r["mira_reason"] for r in by_source["qa"]} == {"kept (unscored: source-preserving random share)"}
    assert all(r["mira_score"] is None for r in by_source["qa"])


def test_the_selection_files_select_owns_include_the_card_and_compressed_jsonl():
    from pathlib import PurePosixPath

    from mira.selection.build import is_selection_file

    for name in ("README.md", "summary.json", "docs/00000.jsonl.gz", "docs/00000.jsonl.zst", "docs/00000.parquet",
                 "docs/.00000.jsonl.gz.ab12cd34.tmp", "_decisions/docs/00000.parquet"):
        assert is_selection_file(PurePosixPath(name)), name
    for name in ("docs/README.md", "notes.md", "docs/00000.json.gz", "docs/00000.jsonl.bz2"):
        assert not is_selection_file(PurePosixPath(name)), name


def test_mira_run_shows_the_stage_notes_and_closes_with_the_shares(scored, tmp_path, monkeypatch):
    # `mira run` printed "select: done" and dropped the stage's notes; its closing lines said only where.
    from click.testing import CliRunner

    from mira.cli import main
    from mira.core.config import ReliabilityConfig

    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    config = make_config(corpus, tmp_path / "run", reliability=ReliabilityConfig(exclude=["docs/*", "pycode/*"]))
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())

    def pipeline(cfg, force, until, progress, on_stage=None, wait=False):  # the select stage only
        outcome = api.run_one("select", cfg, force, progress)
        on_stage(outcome)
        return [outcome]

    monkeypatch.setattr(api, "run_pipeline", pipeline)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("note: most of this selection is random: 100.0% of its tokens") == 1
    assert "ranked by a reliable score: 0.0% of the tokens; random: 100.0%" in result.output
    assert result.output.index("note: most") < result.output.index("selection: ")
