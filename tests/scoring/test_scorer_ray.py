"""examples/scorer_ray_data.py: mira.Scorer inside Ray Data's map_batches on a local Ray (2 scoring actors)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

import mira
from tests.engines.doubles import DoubleModels, build_scored_run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scorer_ray_data.py"


def _example(monkeypatch):
    spec = importlib.util.spec_from_file_location("mira_example_scorer_ray_data", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_ray_data_example_appends_the_scores_the_scorer_gives(tmp_path, monkeypatch):
    pytest.importorskip("ray.data")
    import ray
    import ray.cloudpickle

    corpus, run = build_scored_run(tmp_path)
    docs = [json.loads(line) for line in Path(corpus[1]["path"]).read_text().splitlines()
            if line.strip().endswith("}")]  # the corpus plants a broken line; Ray's JSON reader would refuse it
    docs = [d for d in docs if d["text"]]  # and an empty record (quarantined, scored below)
    assert len(docs) > 20
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in docs + [{"id": "blank", "text": " "}]))

    example = _example(monkeypatch)
    ray.cloudpickle.register_pickle_by_value(example)  # a module loaded from a path: workers cannot import it
    # Each scoring actor holds a CPU for its lifetime: 2 actors and the read task need 3 (logical) CPUs,
    # else the read waits for a CPU the actors never give back.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        dataset = example.score_dataset(ray.data.read_json(str(inputs)), str(run), "docs", concurrency=2,
                                        batch_size=7, models=DoubleModels())
        rows = dataset.take_all()
    finally:
        ray.shutdown()
    expected = mira.Scorer.load(run, models=DoubleModels()).score(docs + [{"id": "blank", "text": " "}],
                                                                  source="docs").to_pylist()
    by_id = {r["id"]: r for r in expected}
    assert sorted(r["id"] for r in rows) == sorted(by_id)
    for row in rows:
        want = by_id[row["id"]]
        assert row["text"] is not None and row["mira_group"] == "g1" == want["group"]
        assert row["mira_tokens"] == want["tokens"] and row["mira_quarantine"] == want["quarantine"]
        for key in ("score", "g1/a00", "g1/a01"):
            got, exp = row[f"mira_{key}"], want[key]
            assert (math.isnan(got) and math.isnan(exp)) or got == exp
    blank = next(r for r in rows if r["id"] == "blank")
    assert blank["mira_quarantine"] == "empty record" and math.isnan(blank["mira_score"])
