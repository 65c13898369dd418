"""annotate_v3: one anchor per request, a bare integer answer, the record prefix pinned to a slot."""

import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from mira.artifacts.anchors import Anchor
from mira.core.config import AnnotationConfig
from mira.core.errors import StageIncomplete
from mira.pipeline.runner import run_stage
from mira.rubrics import annotation, annotation_v3
from mira.run.context import StageContext
from mira.stages import annotate, annotate_plan
from mira.teacher.prompts import neutralize_fences, record_fence
from mira.teacher.scores import BARE, expected_scores, score_offsets
from mira.teacher.testing import Reply, ScriptedServer
from tests.stages.test_annotate import ANCHORS, _prepare, _score


def _asked(body: dict) -> tuple[str, str]:
    """(record fence tag, anchor id) of a v3 request."""
    prompt = body["messages"][-1]["content"]
    tag = re.search(r"<<<(RECORD_[0-9a-f]{8})", prompt).group(1)
    return tag, re.search(r"Score the record on \[(\w+)\]", prompt).group(1)


def handler(body: dict) -> str | Reply:
    """Scores from the record fence and the anchor; garbage for record `this.py` on anchor a01 only."""
    assert body["response_format"]["json_schema"]["schema"]["type"] == "integer"  # a bare integer
    prompt = body["messages"][-1]["content"]
    tag, anchor = _asked(body)
    if "path: this.py" in prompt and anchor == "a01":
        return "seven"
    score = _v3_score(tag, anchor)
    return Reply(str(score), score_probs=[{score: 0.5, score + 1: 0.5}], score_key=BARE)


def _v3_score(tag: str, anchor: str) -> int:
    # 2..8 on the 0-9 scale, so that score + 1 is still on it.
    return 2 + _score(tag, anchor) % 7


def _configure(config, server, **teacher):
    config.teacher = server.teacher_config(**teacher)
    config.annotation = AnnotationConfig(allocation="even",
                                         protocol="annotate_v3", records_per_group=8, self_consistency_records=2)
    return config


def _rows(run, group, consistency=False):
    return pq.read_table(annotation.labels_path(run, group, consistency)).to_pylist()


def _distinct(requests):
    return list({json.dumps(b["messages"]): b for b in requests}.values())  # parse retries re-send


@pytest.mark.slow
def test_v3_asks_one_anchor_per_request_and_labels_every_anchor_with_expectations(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        run = _prepare(config)
        outcome = run_stage("annotate", StageContext(config, run))
        rows = _rows(run, "g0")
        assert len(rows) == 8
        for row in rows:
            if not row["ok"]:
                continue
            tag = record_fence(neutralize_fences(row["text"]))[0].lstrip("<")
            for a in ANCHORS["g0"]:
                assert row[f"{a}__sampled"] == _v3_score(tag, a)
                assert row[a] == pytest.approx((_v3_score(tag, a) + 0.5) * 10 / 9, abs=1e-3)
                assert row[f"{a}__target_kind"] == "expected" and row[f"{a}__why"] == ""
        # One failed anchor request fails the record's row, and says which anchor.
        failed = [r for r in rows if not r["ok"]]
        assert len(failed) == 1 and "this.py" in failed[0]["text"] and failed[0]["error"].startswith("a01:")
        assert failed[0]["a00"] is None
        asked = Counter(_asked(b) for b in _distinct(server.requests))
        assert set(asked.values()) == {1, 2}  # each (record, anchor) once; re-scored ones twice
        assert {a for _, a in asked} == set(ANCHORS["g0"] + ANCHORS["g1"])
        assert all(b["max_tokens"] <= 2 for b in server.requests)
        assert all(b["response_format"]["json_schema"]["schema"]["enum"] == list(range(10)) for b in server.requests)
        assert outcome.counts["requests"] == (8 + 2) * 3 + (2 + 2) * 2
        assert len(_rows(run, "g1")) == 2 and len(_rows(run, "g0", consistency=True)) == 2

        sent = len(server.requests)
        forced = run_stage("annotate", StageContext(config, run, force=True))
        resent = server.requests[sent:]
        # Replayed from the cache; only the failed anchor request is asked again (never cached).
        assert resent and {_asked(b)[1] for b in resent} == {"a01"}
        assert all("path: this.py" in b["messages"][-1]["content"] for b in resent)
        assert forced.counts["cache_hits"] == outcome.counts["requests"] - 1
        assert [r for r in _rows(run, "g0") if r["ok"]] == [r for r in rows if r["ok"]]


@pytest.mark.slow
def test_v3_prefix_is_shared_up_to_the_question_and_each_record_stays_on_one_slot(mixed_config, monkeypatch):
    from mira.teacher.client import ChatClient

    body = ChatClient.body

    def with_slot(self, *args, **kwargs):  # what a local llama.cpp server would get (id_slot)
        out = body(self, *args, **kwargs)
        out["id_slot"], out["cache_prompt"] = args[8] if len(args) > 8 else kwargs.get("slot"), True
        return out

    monkeypatch.setattr(ChatClient, "body", with_slot)
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server, concurrency=2)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        by_record: dict[str, list[dict]] = {}
        for body in _distinct(server.requests):
            by_record.setdefault(body["messages"][-1]["content"].split("Score the record on")[0], []).append(body)
        assert len(by_record) == (8 + 2) + (2 + 2)  # originals and variants of g0 and g1
        for bodies in by_record.values():
            # The anchors of one record differ only in the question at the very end ...
            assert len(bodies) == len({_asked(b)[1] for b in bodies}) in (2, 3)
            # ... and run on one slot, whose prompt cache then holds the record.
            assert len({b["id_slot"] for b in bodies}) == 1 and all(b["cache_prompt"] for b in bodies)
        assert {b["id_slot"] for b in server.requests} == {0, 1}


@pytest.mark.slow
def test_v3_rescoring_is_an_equivalent_variant_with_guides_high_to_low(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        again = {r["record_id"] for r in _rows(run, "g0", consistency=True)}
        prompts = [b["messages"][-1]["content"] for b in _distinct(server.requests) if "a00" in _asked(b)[1]]

    def low_first(text: str) -> bool:
        return text.index("0-2: poor") < text.index("7-9: exemplary") and text.index("0-1:") < text.index("\n9:")

    ascending = [p for p in prompts if low_first(p)]
    descending = [p for p in prompts if not low_first(p)]
    assert len(ascending) == 8 and len(descending) == len(again) == 2
    # The same cards and bands, only listed the other way round.
    assert all(sorted(p.splitlines()) == sorted(ascending[0].splitlines()) for p in ascending[:1])
    for p in descending:
        assert p.index("7-9: exemplary") < p.index("3-6: ordinary") < p.index("0-2: poor")
        assert p.index("\n9: exemplary") < p.index("\n4-5: a typical") < p.index("\n0-1: broken")


@pytest.mark.slow
def test_v3_budget_stop_is_incomplete_and_the_rerun_pays_no_request_twice(mixed_config):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server, max_requests=5)
        run = _prepare(config)
        with pytest.raises(StageIncomplete, match="budget"):
            run_stage("annotate", StageContext(config, run))
        assert run.done("annotate") is None and not annotation.labels_path(run, "g0").exists()
        config.teacher = server.teacher_config()
        run_stage("annotate", StageContext(config, run))
        assert run.done("annotate") is not None
        answered = Counter(json.dumps(b["messages"]) for b in server.requests if "seven" not in json.dumps(b))
        ok = [k for k in answered if "path: this.py" not in k or "[a01]" not in k]
        assert max(answered[k] for k in ok) == 1
        assert len(_rows(run, "g0")) == 8


@pytest.mark.slow
def test_v3_targets_are_exact_expectations_mapped_to_ten_even_with_an_unsampled_one(mixed_config):
    # On the old 0-10 scale the a00 answer (7 sampled, 45% on "1") had no exact expectation with
    # digit-split tokens: it fell back to 7. On 0-9 "1" can only be 1.
    def split(body: dict) -> Reply:
        _, anchor = _asked(body)
        answers = {"a00": (7, {7: 0.55, 1: 0.45}), "a01": (9, {9: 0.8, 8: 0.2})}
        sampled, probs = answers.get(anchor, (3, {3: 0.5, 4: 0.5}))
        return Reply(str(sampled), score_probs=[probs], split_digits=True, score_key=BARE)

    with ScriptedServer(split) as server:
        config = _configure(mixed_config, server)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        rows = _rows(run, "g0") + _rows(run, "g0", consistency=True)
    assert rows and all(r["ok"] for r in rows)
    for row in rows:
        assert row["a00"] == pytest.approx((7 * 0.55 + 1 * 0.45) * 10 / 9) and row["a00__target_kind"] == "expected"
        assert row["a00__sampled"] == 7
        assert row["a01"] == pytest.approx(8.8 * 10 / 9) and row["a01__target_kind"] == "expected"
        assert row["a02"] == pytest.approx(3.5 * 10 / 9) and row["a02__target_kind"] == "expected"


def test_a_one_digit_scale_has_no_open_prefix():
    from mira.teacher.testing import synthetic_logprobs

    logprobs = synthetic_logprobs(Reply("7", score_probs=[{7: 0.55, 1: 0.45}], split_digits=True, score_key=BARE))
    assert expected_scores("7", logprobs, BARE) == [None]  # 0-10: the "1" may be 1 or 10
    assert expected_scores("7", logprobs, BARE, scale_max=9) == [pytest.approx(4.3)]


def test_bare_integer_answers_are_located_exactly():
    assert score_offsets("7", BARE) == [(0, 7)]
    assert score_offsets(" 10\n", BARE) == [(1, 10)]
    for text in ("7.5", "seven", "7 8", '{"score": 7}', ""):
        assert score_offsets(text, BARE) == []
    assert expected_scores("seven", None, BARE) is None


def test_v3_plan_counts_one_request_per_anchor_and_other_prompts_keep_their_version(mixed_config, monkeypatch):
    with ScriptedServer(handler) as server:
        config = _configure(mixed_config, server)
        config.annotation = AnnotationConfig(allocation="even",
                                             protocol="annotate_v3", records_per_group=4, self_consistency_records=1)
        run = _prepare(config)
        lines = annotate_plan.plan(config, run)
        assert any("g0: 4 records x 3 anchors, 15 requests" in line for line in lines)
        assert lines[-1].startswith("total: 21 requests")  # g1 (2 records, 1 re-scored) x 2 anchors
        assert not server.requests
        # The question v3 builds in code is part of what the stage asks: a new wording re-labels.
        from mira.run.context import StageContext

        before = annotate.fingerprint(StageContext(config, run))
        monkeypatch.setattr(annotation_v3, "QUESTION", annotation_v3.QUESTION.replace("Score", "Rate"))
        assert annotate.fingerprint(StageContext(config, run)) != before
        # v2 and v3 never share a cache entry or a stage fingerprint.
        v2 = AnnotationConfig(allocation="even",
                              protocol="annotate_v2", records_per_group=4, self_consistency_records=1)
        assert annotation.protocol_prompt(config).id == "annotate_v3"
        config.annotation = v2
        assert annotation.protocol_prompt(config).id == "annotate_v2"


def test_slot_hints_reach_only_a_local_llama_server():
    from mira.core.config import TeacherConfig
    from mira.teacher.client import ChatClient

    local = ChatClient(TeacherConfig(concurrency=2), "http://127.0.0.1:1/v1", "m", None)
    remote = ChatClient(TeacherConfig(provider="openai", concurrency=2), "https://api.example/v1", "m", "k")
    assert local.body([], None, "x", 3, 0.0, 0, True, True, slot=3)["id_slot"] == 1
    assert "id_slot" not in local.body([], None, "x", 3, 0.0, 0, True, True)
    assert "id_slot" not in remote.body([], None, "x", 3, 0.0, 0, True, True, slot=1)


def test_schedule_interleaves_labels_and_pins_multi_request_labels_to_slots():
    from mira.teacher import TeacherRequest

    labels = [[TeacherRequest(messages=[], tag=f"{i}.{j}") for j in range(3)] for i in range(3)]
    flat, positions = annotation.schedule(labels, 2)
    assert [r.tag for r in flat] == ["0.0", "1.0", "0.1", "1.1", "0.2", "1.2", "2.0", "2.1", "2.2"]
    assert [[flat[i].tag for i in pos] for pos in positions] == [[f"{i}.{j}" for j in range(3)] for i in range(3)]
    assert [r.slot for r in flat] == [0, 1, 0, 1, 0, 1, 0, 0, 0]
    single = [[TeacherRequest(messages=[])] for _ in range(3)]
    assert all(r.slot is None for r in annotation.schedule(single, 2)[0])  # v1/v2: the server picks


def test_v3_question_names_one_anchor_and_the_cache_key_changes_with_the_protocol():
    from mira.corpus.records import Record, Rendering
    from mira.teacher import load_prompt

    anchors = [Anchor(id=a, name=a.upper(), definition="How good.", low="l", mid="m", high="h") for a in ("a00", "a01")]
    record = Record(id="r1", source="s", format="code", data={"text": "x = 1"}, locator="s:0")
    rendering = Rendering(text="x = 1", tokens=3, truncated=False)
    reqs = annotation_v3.build_requests(load_prompt("annotate", 3), anchors, record, rendering, "r1", False, None,
                                      "code", annotation.PART)
    assert [r.messages[-1]["content"].splitlines()[-1] for r in reqs] == [
        "Score the record on [a00] A00 only (How good). Answer one integer from 0 to 9.",
        "Score the record on [a01] A01 only (How good). Answer one integer from 0 to 9."]
    # benchmarks/labels.py's "v3s" leaves the definition to the cards above.
    short = annotation_v3.build_requests(load_prompt("annotate", 3), anchors, record, rendering, "r1", False, None,
                                       "code", annotation.PART, define=False)
    assert short[0].messages[-1]["content"].splitlines()[-1] == \
        "Score the record on [a00] A00 only. Answer one integer from 0 to 9."
    assert {r.prompt_version for r in reqs} == {"annotate_v3"} and reqs[0].schema.model_validate(9).root == 9
    assert reqs[0].score_max == 9
    with pytest.raises(ValueError):
        reqs[0].schema.model_validate(10)
    identity = {"model": "m", "sampling": {}}
    assert reqs[0].cache_key(identity) != reqs[1].cache_key(identity)
