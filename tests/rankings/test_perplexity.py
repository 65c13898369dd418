import json
import random
import re
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mira import api
from mira.core.config import EngineConfig, PerplexityConfig, SelectionConfig
from mira.run.rundir import RunDir
from mira.selection.named import current_selection
from mira.selection.rankings import perplexity
from mira.selection.rankings.ngram import NgramModel, token_ids
from tests.engines.doubles import build_corpus, make_config, score_with_doubles
from tests.stages.test_select_out_of_core import assert_out_of_core_identical

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAIN = ["argparse.py", "ast.py", "calendar.py", "csv.py", "dataclasses.py", "difflib.py", "enum.py",
         "fractions.py", "functools.py", "inspect.py", "pathlib.py", "shutil.py", "subprocess.py", "textwrap.py"]
HELD_OUT = ["heapq.py", "bisect.py", "glob.py", "fnmatch.py", "queue.py", "copy.py"]


def _shuffled_words(text: str, seed: int) -> str:
    """The same words in a random order, every space and newline left where it was."""
    pieces = re.findall(r"\S+|\s+", text)
    slots = [i for i, p in enumerate(pieces) if not p.isspace()]
    words = [pieces[i] for i in slots]
    random.Random(seed).shuffle(words)
    for i, word in zip(slots, words):
        pieces[i] = word
    return "".join(pieces)


@pytest.fixture(scope="module")
def stdlib_texts():
    return ([(STDLIB / n).read_text(encoding="utf-8") for n in TRAIN],
            [(STDLIB / n).read_text(encoding="utf-8") for n in HELD_OUT])


@pytest.mark.parametrize(("level", "order"), [("bytes", 5), ("words", 3)])
def test_model_prefers_real_code_to_the_same_words_shuffled(stdlib_texts, level, order):
    train, held = stdlib_texts
    model = NgramModel(level, order, 16).fit([token_ids(t, level) for t in train])
    natural = model.bits_per_token([token_ids(t, level) for t in held])
    junk = model.bits_per_token([token_ids(_shuffled_words(t, i), level) for i, t in enumerate(held)])
    chars = model.bits_per_token([token_ids("".join(random.Random(i).sample(t, len(t))), level)
                                  for i, t in enumerate(held)])
    assert np.all(natural < junk) and np.all(junk < chars)
    assert np.all(natural > 0)


def test_model_is_deterministic_and_survives_a_save(stdlib_texts, tmp_path):
    train, held = stdlib_texts
    docs = [token_ids(t, "bytes") for t in train]
    a = NgramModel("bytes", 4, 14).fit(docs)
    b = NgramModel("bytes", 4, 14).fit(docs)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.contexts, b.contexts)
    a.save(tmp_path / "m.npz")
    loaded = NgramModel.load(tmp_path / "m.npz")
    probe = [token_ids(t, "bytes") for t in held]
    assert np.array_equal(loaded.bits_per_token(probe), a.bits_per_token(probe))
    # Batching does not change a record's loss (n-grams never span two records).
    one_by_one = np.concatenate([a.bits_per_token([d]) for d in probe])
    assert np.allclose(one_by_one, a.bits_per_token(probe), rtol=1e-6)


def test_model_handles_odd_text():
    odd = ["", "é" * 3, "\ud800 lone surrogate", "🙂 emoji 🙂", "\x00\x01 control", "x"]
    for level in ("bytes", "words"):
        model = NgramModel(level, 3, 10).fit([token_ids(t, level) for t in odd])
        loss = model.bits_per_token([token_ids(t, level) for t in odd])
        assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:]))
    empty = NgramModel("bytes", 3, 10).fit([])  # an empty reference: uniform, still finite
    assert np.allclose(empty.bits_per_token([token_ids("abc", "bytes")]), 8.0)


# --- through select --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scored_with_junk(tmp_path_factory):
    """The doubles corpus plus junk records (docstrings with their words shuffled) in `docs`."""
    root = tmp_path_factory.mktemp("ppl")
    corpus = build_corpus(root / "corpus")
    docs = root / "corpus" / "docs.jsonl"
    lines = [json.loads(line) for line in docs.read_text(encoding="utf-8").splitlines()
             if line.startswith('{"id": "doc-')]
    with open(docs, "a", encoding="utf-8") as handle:
        for row in lines:
            handle.write(json.dumps({"id": "junk-" + row["id"], "text": _shuffled_words(row["text"], 1)}) + "\n")
    config = make_config(corpus, root / "run", engine=EngineConfig(workers=1))
    score_with_doubles(config)
    return corpus, root / "run"


def _select(scored, tmp_path, **perplexity_cfg):
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    selection = SelectionConfig(method="perplexity", mode="global", budget=0.5,  # the paper's one cutoff
                                perplexity=PerplexityConfig(bits=16, **perplexity_cfg))
    config = make_config(corpus, tmp_path / "run", selection=selection, engine=EngineConfig(workers=1))
    api.run_one("select", config)
    run = RunDir(tmp_path / "run")
    decisions = {}
    for path in sorted((current_selection(run) / "_decisions").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            decisions[row["id"]] = row
    return config, run, decisions, json.loads((current_selection(run) / "summary.json").read_text())


def _reference_file(tmp_path):
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps({"text": (STDLIB / n).read_text(encoding="utf-8")}) + "\n"
                                 for n in TRAIN))
    return reference


def test_perplexity_selection_keeps_natural_text_and_drops_shuffled(scored_with_junk, tmp_path):
    config, run, decisions, summary = _select(scored_with_junk, tmp_path, reference=str(_reference_file(tmp_path)))
    assert summary["method"] == "perplexity" and summary["mode"] == "global"
    pairs = [(d, decisions[i.removeprefix("junk-")]) for i, d in decisions.items() if i.startswith("junk-")]
    assert len(pairs) > 20
    # A docstring almost always beats the same words shuffled (a few-word one can tie by chance).
    wins = [natural["key"] > junk["key"] for junk, natural in pairs if natural["tokens"] >= 30]
    assert len(wins) > 15 and sum(wins) >= 0.9 * len(wins), f"{sum(wins)} of {len(wins)}"
    kept = [d["key"] for d in decisions.values() if d["kept"]]
    assert min(kept) >= max(d["key"] for d in decisions.values() if not d["kept"] and d["key"] is not None)
    assert_out_of_core_identical(config, run)  # ranked piece by piece out of core: the same bytes


def test_corpus_reference_is_cross_fitted(scored_with_junk, tmp_path):
    from mira.corpus.sources import iter_source_records, source_infos
    from mira.selection.rankings.texts import record_text

    config, run, decisions, _ = _select(scored_with_junk, tmp_path)
    meta = json.loads((perplexity.folder(run) / "reference.json").read_text())
    assert meta["cross_fitted"] and all(h["texts"] > 0 for h in meta["halves"])
    models = [NgramModel.load(perplexity.folder(run) / f"model.{i}.npz") for i in (0, 1)]
    seed = config.selection.perplexity.seed
    records = [r for info in source_infos(run) for r in iter_source_records(config, info)]
    assert {perplexity.fold(seed, r.id) for r in records} == {0, 1}
    for record in records[::5]:
        ids = [token_ids(record_text(record), config.selection.perplexity.level)]
        own, other = (models[i].bits_per_token(ids)[0] for i in (perplexity.fold(seed, record.id),
                                                                 1 - perplexity.fold(seed, record.id)))
        # Scored by the half that never saw it, which finds it harder than the half that did.
        assert decisions[record.id]["key"] == pytest.approx(-other)
        assert own < other
    kept = [d["key"] for d in decisions.values() if d["kept"]]
    assert min(kept) >= max(d["key"] for d in decisions.values() if not d["kept"] and d["key"] is not None)
    meta = json.loads((perplexity.folder(run) / "reference.json").read_text())
    assert meta["cross_fitted"] and all(h["texts"] > 0 for h in meta["halves"])


def test_perplexity_scores_are_cached_and_reused(scored_with_junk, tmp_path, monkeypatch):
    from mira.corpus.sources import source_infos

    config, run, first, _ = _select(scored_with_junk, tmp_path)
    calls = []
    monkeypatch.setattr(NgramModel, "fit", lambda self, docs: calls.append("fit") or self)
    real_score_shard = perplexity.score_shard
    monkeypatch.setattr(perplexity, "score_shard", lambda *a: calls.append("score") or real_score_shard(*a))
    config.selection.budget = 0.3  # a new budget re-selects from the cached perplexities
    api.run_one("select", config)
    assert calls == []
    config.selection.perplexity.order = 4  # a model setting retrains and rescores
    api.run_one("select", config)
    assert calls[:2] == ["fit", "fit"] and calls.count("score") == sum(len(i.shards) for i in source_infos(run))


def test_user_reference_trains_one_model(scored_with_junk, tmp_path):
    config, run, decisions, summary = _select(scored_with_junk, tmp_path, reference=str(_reference_file(tmp_path)))
    meta = json.loads((perplexity.folder(run) / "reference.json").read_text())
    assert not meta["cross_fitted"] and meta["halves"][0]["texts"] == len(TRAIN)
    assert summary["totals"]["kept"] > 0




def test_a_crash_mid_pass_resumes_at_the_next_shard(scored_with_junk, tmp_path, monkeypatch):
    from mira.corpus.sources import source_infos

    corpus, template = scored_with_junk
    shutil.copytree(template, tmp_path / "run")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=1),
                         selection=SelectionConfig(method="perplexity", perplexity=PerplexityConfig(bits=14)))
    run = RunDir(tmp_path / "run")
    shards = sum(len(i.shards) for i in source_infos(run))
    real_score_shard = perplexity.score_shard
    done = []

    def crash_on_third(*args):
        if len(done) == 2:
            raise KeyboardInterrupt  # as if killed mid-pass
        done.append(real_score_shard(*args))
        return done[-1]

    monkeypatch.setattr(perplexity, "score_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        perplexity.prepare(config, run)
    monkeypatch.setattr(perplexity, "score_shard", real_score_shard)
    counts = perplexity.prepare(config, run)
    assert counts["shards_scored"] == shards - 2  # the finished shards are kept


def test_an_empty_reference_is_a_one_line_error(scored_with_junk, tmp_path):
    from mira.core.config import ConfigError

    reference = tmp_path / "empty.jsonl"
    reference.write_text('{"text": 3}\n\n{"title": "no text"}\n')
    with pytest.raises(ConfigError, match="has no texts"):
        _select(scored_with_junk, tmp_path, reference=str(reference))
