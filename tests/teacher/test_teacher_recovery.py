"""Issue 10: exact replay of every prompt kind, failures never cached, the deadline, secrets."""

import json
import sqlite3
import time

import pytest

from mira.rubrics.annotation import answer_schema
from mira.rubrics.discovery import AnchorCard, judgment_model
from mira.run.rundir import RunDir
from mira.teacher import TeacherRequest, open_teacher
from mira.teacher.testing import Fault, Reply, ScriptedServer, script

ANNOTATE = answer_schema(["a00", "a01", "b-7"], True, 80)
ANNOTATE_SCORES = answer_schema(["a00", "a01"], False, 80)
JUDGE_QA = judgment_model(("question", "answer", "both"), 3)
JUDGE_DOC = judgment_model(("whole",), 3)


def _answer(body: dict) -> str | Reply:
    """A valid answer for whatever schema the request carries (free text without one)."""
    if "response_format" not in body:
        return "free text: fine"
    name = body["response_format"]["json_schema"]["name"]
    props = body["response_format"]["json_schema"]["schema"].get("properties", {})
    if name == "Annotation":
        with_why = "why" in json.dumps(body["response_format"])
        value = {k: ({"why": f"why {k}", "score": 6} if with_why else {"score": 6}) for k in props}
        return Reply(json.dumps(value), score_probs=[{6: 0.5, 7: 0.5}] * len(props))
    if name == "AnchorCard":
        return json.dumps({"name": "Clarity", "definition": "How clear it is.", "is_quality": True,
                           "low": "murky", "mid": "plain", "high": "crisp"})
    dim = {"name": "Correctness", "reason": "steps hold", "score": 8}
    if "part" in json.dumps(body["response_format"]):
        dim["part"] = "answer"
    return Reply(json.dumps({"dimensions": [dim]}), score_probs=[{8: 0.7, 9: 0.3}])


def _kinds() -> list[TeacherRequest]:
    def req(schema, text):
        return TeacherRequest(messages=[{"role": "user", "content": text}], schema=schema, prompt_version="v1",
                              max_tokens=200, tag=text)

    return [req(ANNOTATE, "annotate with reasons"), req(ANNOTATE_SCORES, "annotate scores only"),
            req(JUDGE_QA, "judge a qa record"), req(JUDGE_DOC, "judge a document"),
            req(AnchorCard, "write a card"), req(None, "free text")]


def _dump(result):
    value = result.value.model_dump(by_alias=True) if hasattr(result.value, "model_dump") else result.value
    return result.ok, value, result.expected_scores, result.raw


def _run(server, tmp_path, requests, **overrides):
    with open_teacher(server.teacher_config(**overrides), RunDir(tmp_path / "run"), stage="test") as teacher:
        return teacher.run(requests), teacher


def test_every_prompt_kind_replays_exactly_with_zero_requests(tmp_path):
    with ScriptedServer(_answer) as server:
        first, _ = _run(server, tmp_path, _kinds())
        sent = len(server.requests)
        again, teacher = _run(server, tmp_path, _kinds())
    assert all(r.ok for r in first) and sent == len(first)
    assert len(server.requests) == sent and all(r.cached for r in again)
    assert [_dump(r) for r in again] == [_dump(r) for r in first]
    assert teacher.usage["cache_hits"] == len(first) and teacher.usage["sent"] == 0


def test_caches_written_by_older_versions_still_replay(tmp_path):
    """Older rows stored field names (f0, f1) and may lack nothing else; with or without raw text."""
    with ScriptedServer(_answer) as server:
        first, _ = _run(server, tmp_path, _kinds()[:1])
        db = sqlite3.connect(tmp_path / "run" / "teacher_cache.sqlite")
        old_value = json.dumps(first[0].value.model_dump(mode="json"))  # what older versions stored
        assert '"f0"' in old_value
        db.execute("UPDATE responses SET value_json = ?", (old_value,))
        db.commit()
        from_raw, _ = _run(server, tmp_path, _kinds()[:1])
        db.execute("UPDATE responses SET raw = NULL")
        db.commit()
        db.close()
        from_value, _ = _run(server, tmp_path, _kinds()[:1])
    assert len(server.requests) == 1
    assert _dump(from_raw[0]) == _dump(first[0])
    assert from_value[0].ok
    assert from_value[0].value.model_dump(by_alias=True) == first[0].value.model_dump(by_alias=True)


@pytest.mark.parametrize("fault", [Fault.status(500), Fault.status(429), Fault.garbage(), Fault.drop(),
                                   '{"a00": 1}', json.dumps({"dimensions": [{"name": "x", "reason": "why not",
                                                                             "score": 11}]})],
                         ids=["500", "429", "garbage", "drop", "schema-invalid", "out-of-range"])
def test_failures_are_never_cached_and_a_recovered_server_gets_only_them(tmp_path, fault):
    broken = {"on": True}

    def handler(body):
        last = body["messages"][-1]["content"]
        failing = "judge a document" in last or "free text" in last
        return fault if broken["on"] and failing else _answer(body)

    with ScriptedServer(handler) as server:
        first, _ = _run(server, tmp_path, _kinds(), max_retries=1, max_parse_retries=1)
        failed = [r.tag for r in first if not r.ok]
        assert "judge a document" in failed
        ok_bodies = {json.dumps(b, sort_keys=True) for b in server.requests
                     if not any(t in json.dumps(b) for t in failed)}
        sent = len(server.requests)
        broken["on"] = False
        again, _ = _run(server, tmp_path, _kinds(), max_retries=1, max_parse_retries=1)
    assert all(r.ok for r in again)
    rerun = [b for b in server.requests[sent:]]
    assert len(rerun) == len(failed)  # exactly the failed requests, once each
    assert not ok_bodies & {json.dumps(b, sort_keys=True) for b in rerun}


def test_deadline_bounds_a_hanging_server_and_nothing_is_cached(tmp_path):
    with ScriptedServer(script(Fault.delay(30, then='{"reason": "late", "score": 5}'))) as server:
        started = time.monotonic()
        results, teacher = _run(server, tmp_path, _kinds()[2:4], timeout_s=20, max_retries=3, deadline_s=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 10  # not attempts x timeout_s
    assert all(not r.ok and r.error.startswith("teacher deadline passed") for r in results)
    assert teacher.cache.path.exists()
    db = sqlite3.connect(teacher.cache.path)
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0


def test_echoed_key_and_url_credentials_are_redacted_everywhere(tmp_path, monkeypatch, caplog):
    key, password, token = "sk-live-ABCDEF0123456789", "pa55w0rd!x", "qs-token-98765"
    monkeypatch.setenv("MIRA_TEST_KEY", key)
    caplog.set_level("DEBUG")

    def handler(body):
        if "annotate" in json.dumps(body["messages"]):
            return Fault.echo(400)  # a 4xx is not retried: its body becomes the recorded error
        return _answer(body)

    with ScriptedServer(handler) as server:
        url = server.url.replace("http://", f"http://user:{password.replace('!', '%21')}@") + f"?api-key={token}"
        config = server.teacher_config(base_url=url, api_key_env="MIRA_TEST_KEY", max_retries=0)
        with open_teacher(config, RunDir(tmp_path / "run"), stage="test") as teacher:
            results = teacher.run(_kinds())
    assert server.headers[0]["Authorization"] == f"Bearer {key}"  # the key is sent, and echoed back
    errors = [r.error for r in results if not r.ok]
    assert errors and all("[redacted]" in e for e in errors)
    assert sum(r.ok for r in results) == 4  # the query string did not break the request URL
    for secret in (key, password, token, "pa55w0rd%21x"):
        assert all(secret not in (r.error or "") and secret not in (r.raw or "") for r in results)
        assert secret not in caplog.text and secret not in repr(teacher.client) and secret not in teacher.url
        for path in (tmp_path / "run").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert teacher.url.startswith("http://[redacted]@127.0.0.1:") and teacher.url.endswith("/v1?api-key=[redacted]")


def test_a_server_that_keeps_failing_is_taken_as_down_and_the_rest_is_not_sent(tmp_path):
    from mira.teacher.outcome import tally

    many = [TeacherRequest(messages=[{"role": "user", "content": f"r{i}"}], schema=None, tag=f"r{i}")
            for i in range(20)]
    with ScriptedServer(script(Fault.status(502))) as server:
        results, teacher = _run(server, tmp_path, many, concurrency=1, max_retries=0, max_consecutive_failures=3)
    assert len(server.requests) == 3 and not any(r.ok for r in results)
    assert tally(results).line(teacher.url) == (f"teacher at {teacher.url} answered 502 on 3 of 3 requests; 17 more "
                                                "not sent after teacher.max_consecutive_failures in a row")
