"""mira.integrations.datatrove: a datatrove step adding mira's scores to each document (skipped without datatrove)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

import mira
from tests.engines.doubles import DoubleModels, build_scored_run

pytest.importorskip("datatrove")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _step(run, **kwargs):
    from mira.integrations.datatrove import MiraScorer

    step = MiraScorer(str(run), **kwargs)
    step._scorer = mira.Scorer.load(run, models=DoubleModels())  # the stand-in student of the test run
    return step


def test_each_document_gets_the_scores_of_its_record_and_none_is_dropped(scored):
    from datatrove.data import Document

    corpus, run = scored
    docs = [json.loads(line) for line in Path(corpus[1]["path"]).read_text().splitlines()
            if line.strip().endswith("}")]
    # As datatrove's JsonlReader makes them: text and id taken out, the other fields in metadata.
    documents = [Document(text=d["text"], id=d["id"], metadata={k: v for k, v in d.items() if k not in ("text", "id")})
                 for d in docs]
    out = list(_step(run, source="docs", batch_size=5).run(iter(documents)))
    expected = mira.Scorer.load(run, models=DoubleModels()).score(docs, source="docs").to_pylist()
    assert [d.id for d in out] == [d["id"] for d in docs]
    for doc, want in zip(out, expected, strict=True):
        assert doc.metadata["mira_group"] == "g1" and doc.metadata["mira_tokens"] == want["tokens"]
        assert doc.metadata["mira_quarantine"] == want["quarantine"]
        assert repr(doc.metadata["mira_anchors"]) == repr({"a00": want["g1/a00"], "a01": want["g1/a01"]})  # NaN too
        assert (math.isnan(want["score"]) and math.isnan(doc.metadata["mira_score"])) or \
            doc.metadata["mira_score"] == want["score"]
    empty = next(d for d in out if d.id == "empty")
    assert empty.metadata["mira_quarantine"] == "empty record (field 'text' is empty)"
    assert all(math.isnan(v) for v in [empty.metadata["mira_score"], *empty.metadata["mira_anchors"].values()])


def test_a_code_source_reads_its_text_key_and_the_source_may_come_from_metadata(scored):
    from datatrove.data import Document

    corpus, run = scored
    code = (Path(corpus[0]["path"]) / "bisect.py").read_text()
    doc = Document(text=code, id="bisect", metadata={"path": "bisect.py", "mira_source": "pycode"})
    (out,) = _step(run, text_key="text").run(iter([doc]))
    want = mira.Scorer.load(run, models=DoubleModels()).score([{"text": code, "path": "bisect.py"}],
                                                              source="pycode").to_pylist()[0]
    assert out.metadata["mira_group"] == "g0" and out.metadata["mira_score"] == want["score"]
    assert out.metadata["mira_tokens"] == want["tokens"] > 0


def test_the_step_pickles_without_its_loaded_scorer_so_each_worker_loads_its_own(scored):
    step = _step(scored[1], source="docs")
    clone = pickle.loads(pickle.dumps(step))
    assert clone._scorer is None and step._scorer is not None and clone.source == "docs"
