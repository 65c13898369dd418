import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mira import api
from mira.artifacts.anchors import Anchor, save_rubric
from mira.core.config import AnnotationConfig
from mira.core.errors import StageIncomplete
from mira.corpus.sources import source_quotas
from mira.io.files import atomic_write_json
from mira.pipeline.runner import run_stage
from mira.rubrics import annotation
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.stages import annotate_plan
from mira.teacher.prompts import neutralize_fences, record_fence
from mira.teacher.testing import Reply, ScriptedServer

GROUPS = {"g0": ["code", "faq"], "g1": ["agent"]}
ANCHORS = {"g0": ["a00", "a01", "a02"], "g1": ["c00", "c01"]}


def _score(tag: str, anchor: str) -> int:
    return (int(tag[-4:], 16) + ord(anchor[-1])) % 10  # deterministic per (record, anchor), 0..9


def handler(body: dict) -> str | Reply:
    """A teacher that scores from the record fence; it answers garbage for the record `this.py`."""
    prompt = body["messages"][-1]["content"]
    if "path: this.py" in prompt:
        return "I refuse to answer in JSON."
    tag = re.search(r"<<<(RECORD_[0-9a-f]{8})", prompt).group(1)
    schema = body["response_format"]["json_schema"]["schema"]
    order = list(schema["properties"])
    with_why = "why" in json.dumps(schema)
    flat = "enum" in json.dumps(schema["properties"][order[0]])  # v2 scores only: {"a00": 7, ...}
    answer = {a: (_score(tag, a) if flat else {"why": f"reason for {a}", "score": _score(tag, a)} if with_why
                  else {"score": _score(tag, a)}) for a in order}
    # Half the probability on the next score up: expected value = sampled + 0.5.
    return Reply(json.dumps(answer), score_probs=[{_score(tag, a): 0.5, _score(tag, a) + 1: 0.5} for a in order],
                 score_key=tuple(order) if flat else "score")


def _prepare(config):
    api.run_one("ingest", config)
    run = RunDir(config.resolved_run_dir())
    sources = [s for g in GROUPS.values() for s in g]
    atomic_write_json(run.groups_path, {
        "k": 2, "chosen_by": "config", "k_scores": {},
        "groups": [{"id": g, "label": g, "sources": s, "within_similarity": 1.0, "pinned": False}
                   for g, s in GROUPS.items()],
        "source_to_group": {s: g for g, ss in GROUPS.items() for s in ss},
        "similarity": {"sources": sources, "matrix": [[1.0] * 3] * 3}})
    run.mark_done("group", "group-fp")
    for group, ids in ANCHORS.items():
        save_rubric(run, group, [Anchor(id=a, name=f"Quality {a}", definition=f"How good the record is at {a}.",
                                        low="poor", mid="ordinary", high="exemplary") for a in ids])
    run.mark_done("discover", "discover-fp")
    return run


def _configure(config, server, **teacher):
    config.teacher = server.teacher_config(**teacher)
    config.annotation = AnnotationConfig(allocation="even",
        protocol="annotate_v2", records_per_group=8, self_consistency_records=2)
    return config


@pytest.mark.slow
def test_annotate_writes_labels_failures_and_consistency_then_replays_from_cache(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        run = _prepare(config)
        outcome = run_stage("annotate", StageContext(config, run))
        labels = pq.read_table(annotation.labels_path(run, "g0")).to_pylist()
        assert len(labels) == 8 and Counter(r["source"] for r in labels) == {"code": 5, "faq": 3}
        failed = [r for r in labels if not r["ok"]]
        assert len(failed) == 1 and "this.py" in failed[0]["text"] and failed[0]["error"]
        assert failed[0]["a00"] is None
        for row in labels:
            if not row["ok"]:
                continue
            tag = record_fence(neutralize_fences(row["text"]))[0].lstrip("<")  # the fence the teacher saw
            for a in ANCHORS["g0"]:
                assert row[f"{a}__sampled"] == _score(tag, a)
                assert row[a] == pytest.approx(row[f"{a}__sampled"] + 0.5, abs=1e-3)  # the expected score
                assert row[f"{a}__target_kind"] == "expected"
                assert row[f"{a}__why"] == f"reason for {a}"
            assert row["tokens"] > 0 and row["format"] in ("code", "qa")
        again = pq.read_table(annotation.labels_path(run, "g0", consistency=True)).to_pylist()
        assert len(again) == 2 and {r["record_id"] for r in again} <= {r["record_id"] for r in labels}
        assert pq.read_table(annotation.labels_path(run, "g1")).num_rows == 2
        # The consistency requests showed the anchors in another order: a different request.
        orders = {tuple(b["response_format"]["json_schema"]["schema"]["properties"]) for b in server.requests}
        assert len([o for o in orders if sorted(o) == ANCHORS["g0"]]) >= 2
        assert outcome.counts["labels"] == 7 + 2 and outcome.counts["failed"] >= 1

        sent = len(server.requests)
        forced = run_stage("annotate", StageContext(config, run, force=True))
        # Answers come from the cache; only the failure is asked again (a failure is never cached).
        resent = server.requests[sent:]
        assert resent and all("path: this.py" in b["messages"][-1]["content"] for b in resent)
        assert forced.counts["cache_hits"] == outcome.counts["requests"] - 1
        assert run_stage("annotate", StageContext(config, run)).skipped


@pytest.mark.slow
def test_budget_stop_raises_incomplete_and_a_rerun_completes_without_asking_twice(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server, max_requests=4)
        run = _prepare(config)
        with pytest.raises(StageIncomplete, match="budget"):
            run_stage("annotate", StageContext(config, run))
        assert run.done("annotate") is None and not annotation.labels_path(run, "g0").exists()
        first = len(server.requests)
        assert 4 <= first <= 4 * 3  # at most 4 logical requests (with parse retries)
        config.teacher = server.teacher_config()
        run_stage("annotate", StageContext(config, run))
        assert run.done("annotate") is not None
        answered = Counter(json.dumps(b["messages"]) for b in server.requests
                           if "this.py" not in b["messages"][-1]["content"])
        assert max(answered.values()) == 1  # no successful request was paid for twice
        assert pq.read_table(annotation.labels_path(run, "g0")).num_rows == 8


def test_scores_only_mode_and_dry_run_plan(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=4, self_consistency_records=1, rationales=False)
        run = _prepare(config)
        lines = annotate_plan.plan(config, run)
        assert any("g0: 4 records x 3 anchors, 5 requests" in line for line in lines)
        assert lines[-1].startswith("total: 8 requests") and " min" not in lines[-1]  # time: mira.pipeline.plan
        from mira.pipeline.plan import estimate

        assert "no speed figure for 'scripted'" in estimate("annotate", config, run, False).basis
        config.teacher.model, config.teacher.provider = "qwen2.5-coder-1.5b", "local"
        basis = estimate("annotate", config, run, False).basis
        assert basis.startswith("8 new of 8 teacher requests; constants for qwen2.5-coder-1.5b"), basis
        config.teacher.model, config.teacher.provider = "scripted", "openai"
        assert len(server.requests) == 0  # planning asks nothing
        run_stage("annotate", StageContext(config, run))
        assert all("why" not in json.dumps(b["response_format"]) for b in server.requests)
        rows = pq.read_table(annotation.labels_path(run, "g0")).to_pylist()
        assert all(r["a00__why"] == "" for r in rows if r["ok"])
        assert max(b["max_tokens"] for b in server.requests) < 100


def split_handler(body: dict) -> str | Reply:
    """A Qwen-like teacher (numbers digit by digit): a00 sampled 7 with 45% on "1"->"0" (unknowable
    from top_logprobs), a01 sampled 10 (resolved by the "0" position), a02 sampled 3 (plain)."""
    order = list(body["response_format"]["json_schema"]["schema"]["properties"])
    sampled = {"a00": 7, "a01": 10, "a02": 3}
    probs = {"a00": {7: 0.55, 10: 0.45}, "a01": {10: 0.8, 9: 0.2}, "a02": {3: 0.5, 4: 0.5}}
    answer = {a: {"why": "w", "score": sampled.get(a, 5)} for a in order}  # group g1's anchors: a plain 5
    return Reply(json.dumps(answer), score_probs=[probs.get(a, {5: 1.0}) for a in order], split_digits=True)


def test_digit_split_targets_are_unbiased_and_carry_their_provenance(mixed_config):
    with ScriptedServer(split_handler) as server:
        config = _configure(mixed_config, server)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        rows = [r for r in pq.read_table(annotation.labels_path(run, "g0")).to_pylist() if r["ok"]]
        again = [r for r in pq.read_table(annotation.labels_path(run, "g0", consistency=True)).to_pylist() if r["ok"]]
    assert rows and again
    for row in rows + again:  # the consistency rows asked the anchors in another order
        assert (row["a00"], row["a00__target_kind"]) == (7.0, "sampled")  # not 4.30
        assert row["a01"] == pytest.approx(9.8) and row["a01__target_kind"] == "expected"
        assert row["a02"] == pytest.approx(3.5) and row["a02__target_kind"] == "expected"


def test_flat_scores_protocol_request_shape_parsing_and_cache_replay(mixed_config):
    """annotate_v2 scores-only: {"a00": 7, ...}, expected scores from digit-split logprobs, one
    shared prefix per group (the server's prompt cache), one shuffled order for the re-scoring."""
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=6, self_consistency_records=3, rationales=False)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        g0 = [b for b in server.requests if "a00" in json.dumps(b["response_format"])]
        for body in g0:
            props = body["response_format"]["json_schema"]["schema"]["properties"]
            assert all(p["type"] == "integer" and p["enum"] == list(range(11)) for p in props.values())
            assert '"a00": <score>' in body["messages"][-1]["content"]
        # Everything before the record (and its kind) is the same for every record asked in the
        # same order. Parse retries re-send the same messages: count distinct requests.
        distinct = {json.dumps(b["messages"]): b for b in g0}.values()
        prefixes = Counter(b["messages"][-1]["content"].split("The record is ")[0] for b in distinct)
        assert sorted(prefixes.values()) == [3, 6] and all(b["messages"][0] == g0[0]["messages"][0] for b in g0)
        orders = {tuple(b["response_format"]["json_schema"]["schema"]["properties"]) for b in g0}
        assert len(orders) == 2 and ("a00", "a01", "a02") in orders  # one shuffled order for the group
        rows = [r for r in pq.read_table(annotation.labels_path(run, "g0")).to_pylist() if r["ok"]]
        again = [r for r in pq.read_table(annotation.labels_path(run, "g0", consistency=True)).to_pylist() if r["ok"]]
        assert len(rows) >= 5 and len(again) >= 2
        for row in rows + again:
            tag = record_fence(neutralize_fences(row["text"]))[0].lstrip("<")
            for a in ANCHORS["g0"]:
                # The expectation lines up with each anchor although the answer order was shuffled.
                assert row[f"{a}__sampled"] == _score(tag, a)
                assert row[a] == pytest.approx(_score(tag, a) + 0.5, abs=1e-3)
        sent = len(server.requests)
        run_stage("annotate", StageContext(config, run, force=True))
        assert len(server.requests) == sent  # replayed from the teacher cache
        replayed = [r for r in pq.read_table(annotation.labels_path(run, "g0")).to_pylist() if r["ok"]]
        assert replayed == rows  # the same targets, expectations included


def test_flat_answers_with_digit_split_tens_get_exact_expectations(mixed_config):
    """A Qwen-like server writes 10 as "1","0": the flat keys are scanned like "score" was."""
    def tens(body: dict) -> Reply:
        order = list(body["response_format"]["json_schema"]["schema"]["properties"])
        answer = {a: 10 for a in order}
        return Reply(json.dumps(answer), score_probs=[{10: 0.5, 8: 0.5}] * len(order), split_digits=True,
                     score_key=tuple(order))

    with ScriptedServer(tens) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=2, self_consistency_records=0, rationales=False)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        rows = pq.read_table(annotation.labels_path(run, "g0")).to_pylist()
        assert rows and all(r["a01__sampled"] == 10 and r["a01"] == pytest.approx(9.0, abs=1e-3) for r in rows)


def test_the_v1_protocol_stays_available_for_comparison(mixed_config):
    from mira.corpus.records import Record, Rendering
    from mira.teacher import load_prompt

    anchors = [Anchor(id=a, name=a, definition="d", low="l", mid="m", high="h") for a in ("a00", "a01")]
    record = Record(id="r1", source="s", format="code", data={"text": "x = 1"}, locator="s:0")
    rendering = Rendering(text="x = 1", tokens=3, truncated=False)
    old = annotation.build_request(load_prompt("annotate", 1), anchors, record, rendering, False, 100, "r1")
    new = annotation.build_request(load_prompt("annotate", 2), anchors, record, rendering, False, 100, "r1")
    assert old.score_key == "score" and "$ref" in json.dumps(old.json_schema()["properties"]["a00"])
    assert new.score_key == ("a00", "a01") and new.json_schema()["properties"]["a00"]["type"] == "integer"
    assert new.max_tokens < old.max_tokens and new.prompt_version == "annotate_v2"
    assert old.schema.model_validate({"a00": {"score": 3}, "a01": {"score": 4}})
    with pytest.raises(ValueError):
        new.schema.model_validate({"a00": 11, "a01": 4})


def test_plan_names_sources_that_cannot_reach_the_validation_minimum(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=8, min_validation_per_source=2)
        config.student.validation = "holdout"
        run = _prepare(config)
        lines = "\n".join(annotate_plan.plan(config, run))
        # g0 = code (5 usable) + faq (3): 8 records give code 5 labels (1 validation row), faq 3 (1).
        assert "g0: sources below 2 validation rows" in lines
        assert "faq 1 (only 3 usable records)" in lines
        # Cross-fitted, every label validates: 2 rows are within reach, 4 are not for faq.
        config.student.validation = "crossfit"
        assert "validation rows" not in "\n".join(annotate_plan.plan(config, run))
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=8, min_validation_per_source=4)
        lines = "\n".join(annotate_plan.plan(config, run))
        assert "g0: sources below 4 validation rows" in lines and "faq 3 (only 3 usable records)" in lines
        config.annotation = AnnotationConfig(allocation="even",
            protocol="annotate_v2", records_per_group=8, min_validation_per_source=0)
        assert "validation rows" not in "\n".join(annotate_plan.plan(config, run))


def test_validation_quota_helpers():
    assert source_quotas({"a": 100, "b": 3, "c": 100}, 20) == {"a": 9, "b": 3, "c": 8}
    assert annotation.validation_rows(1, 0.25) == 0 and annotation.validation_rows(40, 0.25) == 10
    assert annotation.validation_rows(1, None) == 0 and annotation.validation_rows(12, None) == 12  # crossfit


@pytest.mark.slow
def test_labels_follow_tokens_across_groups_and_sources_and_the_dry_run_says_so(mixed_config):
    from mira.corpus.sources import source_infos
    from mira.rubrics.allocation import allocate_labels
    from mira.stages import annotate_plan

    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(protocol="annotate_v2", records_per_group=6, self_consistency_records=0,
                                             min_per_group=2, min_per_source=1)
        run = _prepare(config)
        infos = {i.name: i for i in source_infos(run)}
        expected = allocate_labels({g: {s: infos[s].tokens for s in ss} for g, ss in GROUPS.items()},
                                   {s: infos[s].ok for s in infos}, 12, 2, 1)
        # The fixture's sources differ in tokens, so the allocation is not the even one.
        assert expected != {"g0": {"code": 3, "faq": 3}, "g1": {"agent": 6}}
        plan_lines = annotate_plan.plan(config, run)
        outcome = run_stage("annotate", StageContext(config, run))
    got = {g: Counter(r["source"] for r in pq.read_table(annotation.labels_path(run, g)).to_pylist())
           for g in GROUPS}
    assert got == {g: {s: n for s, n in per.items() if n} for g, per in expected.items()}
    assert outcome.counts["labels"] + outcome.counts["failed"] == sum(sum(per.values()) for per in expected.values())
    for group, per in expected.items():
        line = next(line for line in plan_lines if line.startswith(f"{group}: ") and "labels for" in line)
        assert all(f"{s} {n}" in line for s, n in per.items())
    assert any("labels for" in note for note in outcome.notes)
