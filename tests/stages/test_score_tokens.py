"""Score reuses ingest's per-record token counts (mira.corpus.shard_tokens) and stays byte-identical."""

import json
import logging
import os

import numpy as np
import pytest

from mira import api
from mira.core.config import EngineConfig, IngestConfig, RenderConfig
from mira.corpus.records import full_text, render
from mira.corpus.shard_tokens import NOT_A_RECORD, tokens_path
from mira.corpus.sources import Quarantined, iter_shard_records, source_infos
from mira.scoring import corpus_scores
from mira.text.tokens import TiktokenTokenizer, get_tokenizer
from tests.engines.doubles import (
    FORMAT_SCORES,
    DoubleModels,
    FormatModels,
    HashStudent,
    build_corpus,
    make_config,
    prepare_run,
    tree_bytes,
)

MAX_TOKENS = 96


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The shared test corpus plus long records with odd Unicode: windowed text and qa sections."""
    root = tmp_path_factory.mktemp("corpus")
    sources = build_corpus(root)
    odd = "naïve café 東京 ❤️ 👩‍👩‍👧 e\u0301 \u200b\U0001f600 "
    with open(root / "docs.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "long-odd", "text": odd * 300}) + "\n")
        # few characters, many tokens
        handle.write(json.dumps({"id": "short-odd", "text": "👩‍👩‍👧" * 30}) + "\n")
        handle.write(json.dumps({"id": "short", "text": "fits easily"}) + "\n")
        handle.write(json.dumps({"id": "surrogate", "text": "lone \ud800 half " * 60}) + "\n")
        handle.write(json.dumps({"id": "medium", "title": "ZWJ", "text": "a👩‍👩‍👧b " * 40}) + "\n")
    with open(root / "qa.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "qa-long", "question": "Why? " * 50, "reasoning": odd * 80,
                                 "answer": "Because. " * 40}) + "\n")
    return sources


@pytest.fixture
def doubles(monkeypatch):
    monkeypatch.setattr(corpus_scores, "StageModels", DoubleModels)


def _config(corpus, run_dir, **engine):
    return make_config(corpus, run_dir, render=RenderConfig(max_tokens=MAX_TOKENS),
                       engine=EngineConfig(workers=1, batch_size=5, **engine))


def _without_reuse(monkeypatch):
    monkeypatch.setattr(corpus_scores, "read_shard_tokens", lambda *a, **k: None)


def test_ingest_writes_one_count_per_input_item(tmp_path, corpus):
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    tokenizer = get_tokenizer(config.tokenizer.name)
    windowed = 0
    for info in source_infos(run):
        for shard in info.shards:
            with np.load(tokens_path(run, shard), allow_pickle=False) as data:
                counts = data["counts"].tolist()
                windowed_here = data["window_items"].tolist()
            # Ingest's pass has no duplicates marked; score's pass sees the same items in the same order.
            items = list(iter_shard_records(config, config.source(info.name), shard, info.format))
            assert counts == [NOT_A_RECORD if isinstance(i, Quarantined) else tokenizer.count(full_text(i))
                              for i in items]
            windowed += len(windowed_here)
    assert windowed >= 3  # long records windowed as one sequence have their window spans recorded


def test_reused_counts_give_byte_identical_scores(tmp_path, corpus, doubles, monkeypatch):
    fast = _config(corpus, tmp_path / "fast")
    prepare_run(fast)
    api.run_one("score", fast)
    _without_reuse(monkeypatch)
    slow = _config(corpus, tmp_path / "slow")
    prepare_run(slow)
    api.run_one("score", slow)
    fast_bytes = tree_bytes(tmp_path / "fast" / "scores")
    assert fast_bytes == tree_bytes(tmp_path / "slow" / "scores") and len(fast_bytes) > 3


def _reference_scores(config, run, path_of) -> dict[str, bytes]:
    """Every score file as the straightforward writer made it: each record rendered by counting,
    one dict per row, a table from the rows (the code before score wrote columns in batches)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    models, out = DoubleModels(), {}
    groups = models.source_to_group(run)
    tokenizer = get_tokenizer(config.tokenizer.name)
    for info in source_infos(run):
        group = groups.get(info.name)
        student = models.load_student(run, group) if group is not None else HashStudent([])
        rows = []
        for item in iter_shard_records(config, config.source(info.name), info.shards[0], info.format):
            if isinstance(item, Quarantined):
                rows.append({"id": f"{info.name}/{item.locator}", "locator": item.locator, "source": info.name,
                             "group": group, "tokens": 0, "quarantine": item.reason,
                             **{a: float("nan") for a in student.anchors}})
                continue
            rendering = render(item, tokenizer, config.render.max_tokens, config.render.windows)
            scores = np.asarray(student.predict([item.format], [rendering.text]), dtype=np.float64)[0].tolist()
            rows.append({"id": item.id, "locator": item.locator, "source": info.name, "group": group,
                         "tokens": rendering.tokens, "quarantine": None, **dict(zip(student.anchors, scores))})
        table_schema = corpus_scores.schema(student.anchors)
        path = path_of(info.name)
        with pq.ParquetWriter(str(path), table_schema, compression="zstd") as writer:
            for start in range(0, len(rows), corpus_scores.ROW_GROUP_ROWS):
                part = rows[start:start + corpus_scores.ROW_GROUP_ROWS]
                writer.write_table(pa.Table.from_pylist(part, schema=table_schema),
                                   row_group_size=corpus_scores.ROW_GROUP_ROWS)
        out[info.name] = path.read_bytes()
    return out


@pytest.mark.parametrize("reuse", [True, False])
def test_scores_are_the_bytes_of_a_row_by_row_writer(tmp_path, corpus, doubles, monkeypatch, reuse):
    # Row groups of 7 rows and batches of 5: groups straddle batches, quarantined rows fall inside
    # both. One shard per source, so each source's file is compared whole.
    monkeypatch.setattr(corpus_scores, "ROW_GROUP_ROWS", 7)
    # A source with no usable record (no group, no anchor columns): every row is quarantined, and
    # whole batches hold no record at all.
    junk = tmp_path / "junk.jsonl"
    junk.write_text("\n".join(['{"text": NaN}', "[1, 2]", "{broken", '{"text": "\\ud800 lone"}', "",
                               '{"text": 42}', '{"text": "   "}', '"a string"', "null"] * 2) + "\n",
                    encoding="utf-8")
    sources = [*corpus, {"name": "junk", "path": str(junk), "format": "text"}]
    config = make_config(sources, tmp_path / "run", render=RenderConfig(max_tokens=MAX_TOKENS),
                         engine=EngineConfig(workers=1, batch_size=5), ingest=IngestConfig(shard_records=10_000))
    run = prepare_run(config)
    if not reuse:
        _without_reuse(monkeypatch)
    api.run_one("score", config)
    (tmp_path / "reference").mkdir()
    expected = _reference_scores(config, run, lambda source: tmp_path / "reference" / f"{source}.parquet")
    written = {info.name: corpus_scores.shard_scores_path(run, info.shards[0]).read_bytes()
               for info in source_infos(run)}
    assert written == expected and len(expected) == 4
    junk_scores = corpus_scores.shard_scores_path(run, next(i for i in source_infos(run) if i.name == "junk").shards[0])
    assert pq_rows_quarantined(junk_scores) == 18
    quarantined = sum(pq_rows_quarantined(corpus_scores.shard_scores_path(run, i.shards[0])) for i in source_infos(run))
    assert quarantined > 0  # the corpus has broken lines: their rows are part of the comparison


def test_the_student_is_given_each_records_format(tmp_path, corpus, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(corpus_scores, "StageModels", FormatModels)
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    api.run_one("score", config)
    seen = set()
    for info in source_infos(run):
        table = pq.read_table(corpus_scores.shard_scores_path(run, info.shards[0])).to_pylist()
        scored = [row for row in table if row["quarantine"] is None]
        anchors = [k for k in table[0] if k.startswith("a0")]
        assert scored and anchors
        assert all(row[a] == FORMAT_SCORES[info.format] for row in scored for a in anchors), info.name
        seen.add(info.format)
    assert len(seen) > 1  # the corpus mixes formats, so a swapped or constant format would show


def pq_rows_quarantined(path) -> int:
    import pyarrow.parquet as pq

    return sum(q is not None for q in pq.read_table(path, columns=["quarantine"]).column(0).to_pylist())


def _counted_texts(monkeypatch):
    counted: list[str] = []
    original = TiktokenTokenizer.count

    def count(self, text):
        counted.append(text)
        return original(self, text)

    monkeypatch.setattr(TiktokenTokenizer, "count", count)
    return counted


@pytest.mark.parametrize("reuse", [True, False])
def test_records_that_fit_are_not_tokenized_again(tmp_path, corpus, doubles, monkeypatch, reuse):
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    tokenizer = get_tokenizer(config.tokenizer.name)
    fitting = {full_text(item) for info in source_infos(run) for shard in info.shards
               for item in iter_shard_records(config, config.source(info.name), shard, info.format)
               if not isinstance(item, Quarantined) and tokenizer.count(full_text(item)) <= MAX_TOKENS}
    assert len(fitting) > 20
    if not reuse:
        _without_reuse(monkeypatch)
    counted = _counted_texts(monkeypatch)
    api.run_one("score", config)
    recounted = fitting.intersection(counted)
    # Without the reuse (the old path) every record is counted again: the assertion has teeth.
    assert (not recounted) if reuse else recounted == fitting


@pytest.mark.parametrize("reuse", [True, False])
def test_long_records_windowed_whole_are_not_tokenized_again(tmp_path, corpus, doubles, monkeypatch, reuse):
    # Long records windowed by exact token ranges, and very long ones cut on character slices
    # (the stdlib files at 96 tokens): ingest records where their windows lie in either case.
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    recorded: dict[str, set[str]] = {"window_items": set(), "slice_items": set()}
    for info in source_infos(run):
        for shard in info.shards:
            with np.load(tokens_path(run, shard), allow_pickle=False) as data:
                positions = {key: set(data[key].tolist()) for key in recorded}
            items = list(iter_shard_records(config, config.source(info.name), shard, info.format))
            for key, texts in recorded.items():
                texts |= {full_text(item) for i, item in enumerate(items) if i in positions[key]}
    assert len(recorded["window_items"]) >= 3 and len(recorded["slice_items"]) >= 20
    if not reuse:
        _without_reuse(monkeypatch)
    encoded: list[str] = []
    original = TiktokenTokenizer.encode
    monkeypatch.setattr(TiktokenTokenizer, "encode", lambda self, text: encoded.append(text) or original(self, text))
    api.run_one("score", config)
    # A sliced record is tokenized in pieces (slices of its text), a windowed one whole.
    pieces = [t for t in encoded if len(t) >= 100]
    for texts in recorded.values():
        again = {full for full in texts if any(piece in full for piece in pieces)}
        assert (not again) if reuse else again == texts


def _same_size_same_mtime_edit(path, old: str, new: str) -> None:
    assert len(old.encode()) == len(new.encode())
    stat = path.stat()
    data = path.read_text(encoding="utf-8")
    assert old in data
    path.write_text(data.replace(old, new, 1), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_input_edited_since_ingest_is_scored_with_fresh_counts(tmp_path, doubles, monkeypatch, caplog):
    corpus = build_corpus(tmp_path / "corpus")
    docs = tmp_path / "corpus" / "docs.jsonl"
    with open(docs, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "edited", "text": "plain words here " * 3}) + "\n")
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    # Same size, same mtime: ingest's fingerprint cannot see it, only the bytes' digest can.
    _same_size_same_mtime_edit(docs, "plain words here " * 3, "x9 q7 z3 k1 w8 j2 " * 2 + "v5 b4 m6 f0 a1 ")
    assert api.run_one("ingest", config).skipped
    with caplog.at_level(logging.WARNING, logger="mira.stages.score"):
        api.run_one("score", config)
    assert any("changed since ingest" in r.getMessage() for r in caplog.records)
    _without_reuse(monkeypatch)
    fresh = _config(corpus, tmp_path / "fresh")
    prepare_run(fresh)
    api.run_one("score", fresh)
    assert tree_bytes(run.root / "scores") == tree_bytes(tmp_path / "fresh" / "scores")


def test_counts_of_another_ingest_are_not_trusted(tmp_path, corpus, doubles, monkeypatch):
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    for info in source_infos(run):
        for shard in info.shards:  # wrong counts under a foreign fingerprint: must be ignored
            path = tokens_path(run, shard)
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                counts = data["counts"] + 1
            meta["fingerprint"] = "another-ingest"
            np.savez(path, counts=counts, meta=np.asarray(json.dumps(meta)))
    api.run_one("score", config)
    _without_reuse(monkeypatch)
    fresh = _config(corpus, tmp_path / "fresh")
    prepare_run(fresh)
    api.run_one("score", fresh)
    assert tree_bytes(run.root / "scores") == tree_bytes(tmp_path / "fresh" / "scores")


def test_windows_cut_for_other_render_settings_are_not_used(tmp_path, corpus, doubles, monkeypatch):
    ingested = _config(corpus, tmp_path / "run")  # windows recorded for max_tokens=96
    run = prepare_run(ingested)
    config = make_config(corpus, tmp_path / "run", render=RenderConfig(max_tokens=160, windows=2),
                         engine=EngineConfig(workers=1, batch_size=5))
    assert api.run_one("ingest", config).skipped  # render settings are not ingest's
    api.run_one("score", config)
    _without_reuse(monkeypatch)
    fresh = make_config(corpus, tmp_path / "fresh", render=RenderConfig(max_tokens=160, windows=2),
                        engine=EngineConfig(workers=1, batch_size=5))
    prepare_run(fresh)
    api.run_one("score", fresh)
    assert tree_bytes(run.root / "scores") == tree_bytes(tmp_path / "fresh" / "scores")


def test_ingest_removes_its_killed_temporaries_and_stale_counts_and_nothing_else(tmp_path, corpus):
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    folder = run.path("inventory", "tokens", "docs")
    leftover = folder / ".00000.npz.k3j9x_q2.tmp"  # what a kill -9 mid-write leaves
    leftover.write_bytes(b"partial")
    mine = folder / "notes.txt"
    mine.write_text("the user's", encoding="utf-8")
    stale = folder / "00999.npz"  # a shard the source no longer has
    stale.write_bytes((folder / "00000.npz").read_bytes())
    api.run_one("ingest", config, force=True)
    assert not leftover.exists() and not stale.exists() and (folder / "00000.npz").exists()
    assert mine.read_text(encoding="utf-8") == "the user's"


def test_digests_recorded_by_an_older_mira_still_match(tmp_path, corpus, doubles, caplog):
    # Ingest, score and select fingerprint a shard's bytes; mira used blake2b-128 (an untagged hex)
    # before SHA-256 ("sha256:<hex>"). A run directory made before must not look edited.
    import hashlib

    from mira.io.digests import shard_digest
    from mira.io.readers import iter_shard
    from mira.scoring.corpus_scores import shard_marker_path

    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    for info in source_infos(run):
        for shard in info.shards:
            legacy = hashlib.blake2b(digest_size=16)
            for _ in iter_shard(shard, config.ingest.max_record_bytes, legacy):
                pass
            assert shard_digest(legacy.hexdigest()).legacy and not shard_digest().legacy
            path = tokens_path(run, shard)
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            meta = json.loads(str(arrays["meta"]))
            assert meta["input_digest"].startswith("sha256:")
            meta["input_digest"] = legacy.hexdigest()
            np.savez(path, **{**arrays, "meta": np.asarray(json.dumps(meta))})
    with caplog.at_level(logging.WARNING, logger="mira.stages.score"):
        api.run_one("score", config)
    assert not any("changed since ingest" in r.getMessage() for r in caplog.records)
    markers = [json.loads(shard_marker_path(run, s).read_text()) for i in source_infos(run) for s in i.shards]
    assert markers and all(":" not in m["input_digest"] for m in markers)  # score computed the legacy kind
    api.run_one("select", config)  # and select compares like with like: no "input changed since scoring"


def test_counts_written_before_slices_were_recorded_still_serve(tmp_path, corpus, doubles, monkeypatch):
    # An ingest of the previous version wrote counts and exact window spans but no slices: score
    # uses what is there and tokenizes the very long records, with the same bytes as ever.
    config = _config(corpus, tmp_path / "run")
    run = prepare_run(config)
    sliced = 0
    for info in source_infos(run):
        for shard in info.shards:
            path = tokens_path(run, shard)
            with np.load(path, allow_pickle=False) as data:
                kept = {k: data[k] for k in data.files if not k.startswith("slice_")}
                sliced += len(data["slice_items"])
            np.savez(path, **kept)
    assert sliced >= 20
    encoded: list[str] = []
    original = TiktokenTokenizer.encode
    monkeypatch.setattr(TiktokenTokenizer, "encode", lambda self, text: encoded.append(text) or original(self, text))
    api.run_one("score", config)
    assert len([t for t in encoded if len(t) >= 100]) >= 3 * sliced  # three slices a very long record
    monkeypatch.setattr(TiktokenTokenizer, "encode", original)
    _without_reuse(monkeypatch)
    fresh = _config(corpus, tmp_path / "fresh")
    prepare_run(fresh)
    api.run_one("score", fresh)
    assert tree_bytes(run.root / "scores") == tree_bytes(tmp_path / "fresh" / "scores")
