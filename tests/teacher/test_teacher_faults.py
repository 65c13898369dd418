"""The client against injected faults: every request ends as a result, the run always completes."""

import logging

import pytest

from mira.run.rundir import RunDir
from mira.teacher import TeacherRequest, open_teacher
from mira.teacher.testing import Fault, Reply, ScriptedServer, script

from .teacher_helpers import answer, requests


def run_one(server, tmp_path, handler_requests=None, **overrides):
    run = RunDir(tmp_path / "run")
    with open_teacher(server.teacher_config(**overrides), run, stage="test") as teacher:
        results = teacher.run(handler_requests or requests(1))
    return results, teacher


def test_slow_response_times_out_and_is_retried(tmp_path):
    with ScriptedServer(script(Fault.delay(2.0, answer(5)), answer(6))) as server:
        results, teacher = run_one(server, tmp_path, timeout_s=0.5)
    assert results[0].ok and results[0].value.score == 6
    assert teacher.usage["retries"] == 1 and len(server.requests) == 2


def test_429_honours_retry_after(tmp_path):
    with ScriptedServer(script(Fault.status(429, retry_after=0.3), answer(4))) as server:
        results, teacher = run_one(server, tmp_path, backoff_s=0.0)
    assert results[0].ok and results[0].value.score == 4
    assert results[0].usage["latency_s"] >= 0.3  # it waited as told, not the zero backoff


def test_500s_then_success_and_persistent_500_is_a_recorded_failure(tmp_path):
    with ScriptedServer(script(Fault.status(500), Fault.status(503), answer(8))) as server:
        results, _ = run_one(server, tmp_path)
    assert results[0].ok and len(server.requests) == 3
    with ScriptedServer(script(Fault.status(500))) as server:
        results, teacher = run_one(server, tmp_path / "b", max_retries=2)
    assert not results[0].ok and "http 500" in results[0].error
    assert len(server.requests) == 3 and teacher.usage["failures"] == 1


def test_dropped_connection_and_garbage_body_are_retried(tmp_path):
    with ScriptedServer(script(Fault.drop(), Fault.garbage(), answer(3))) as server:
        results, teacher = run_one(server, tmp_path)
    assert results[0].ok and results[0].value.score == 3
    assert teacher.usage["retries"] == 2


def test_no_retry_on_400_and_failure_is_not_cached(tmp_path):
    with ScriptedServer(script(Fault.status(400, "context length exceeded"))) as server:
        results, _ = run_one(server, tmp_path, logprobs=False)
        # A 400 may be a format the server cannot do: one try without json_schema, then give up.
        assert len(server.requests) == 2
        assert not results[0].ok and "http 400" in results[0].error
        again, _ = run_one(server, tmp_path, logprobs=False)
    # A failure is never an answer: the server may be fixed (e.g. a larger context) before the rerun.
    assert len(server.requests) == 4 and not again[0].cached and again[0].error == results[0].error


def test_401_is_not_retried_and_not_cached(tmp_path):
    with ScriptedServer(script(Fault.status(401, "bad key"))) as server:
        results, _ = run_one(server, tmp_path)
        assert len(server.requests) == 1 and "http 401" in results[0].error
        run_one(server, tmp_path)
    assert len(server.requests) == 2  # asked again: a wrong key must not poison the cache


def test_truncated_and_out_of_range_answers_are_reasked_then_recorded(tmp_path):
    with ScriptedServer(script(Fault.truncated(answer(7)), answer(11), answer(9))) as server:
        results, teacher = run_one(server, tmp_path)
    assert results[0].ok and results[0].value.score == 9 and results[0].usage["attempts"] == 3
    seeds = [r["seed"] for r in server.requests]
    assert len(set(seeds)) == 3  # every re-ask varies the seed
    assert server.requests[1]["max_tokens"] > server.requests[0]["max_tokens"]  # cut off: more room
    with ScriptedServer(script(answer(12))) as server:
        results, teacher = run_one(server, tmp_path / "b", max_parse_retries=2)
    assert not results[0].ok and "score" in results[0].error and len(server.requests) == 3
    assert teacher.usage["parse_retries"] == 2 and teacher.usage["failures"] == 1


def test_mixed_faults_run_completes_in_order(tmp_path):
    def handler(body):
        i = int(body["messages"][0]["content"].split()[-1])
        return [answer(i % 11), Fault.status(500), Fault.drop(), answer(99)][i % 4] if i % 4 else answer(i % 11)

    with ScriptedServer(handler) as server:
        results, teacher = run_one(server, tmp_path, handler_requests=requests(12), max_retries=1,
                                   max_parse_retries=1)
    assert [r.tag for r in results] == [f"r{i}" for i in range(12)]
    assert [r.ok for r in results] == [i % 4 == 0 for i in range(12)]
    assert teacher.usage["failures"] == 9


def test_json_schema_rejected_falls_back_to_json_object_and_remembers(tmp_path):
    def handler(body):
        if body.get("response_format", {}).get("type") == "json_schema":
            return Fault.status(400, "response_format type json_schema is not supported")
        return answer(5)

    with ScriptedServer(handler) as server:
        results, teacher = run_one(server, tmp_path, handler_requests=requests(3), concurrency=1, logprobs=False)
    assert all(r.ok for r in results)
    kinds = [r["response_format"]["type"] for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object", "json_object"]
    assert "json_schema->json_object" in teacher.usage["degraded"]
    assert "JSON schema" in server.requests[-1]["messages"][-1]["content"]


def test_logprobs_rejected_are_dropped_once_and_remembered(tmp_path):
    def handler(body):
        return Fault.status(400, "logprobs are not supported") if body.get("logprobs") else answer(5)

    with ScriptedServer(handler) as server:
        results, teacher = run_one(server, tmp_path, handler_requests=requests(3), concurrency=1)
    assert all(r.ok for r in results) and len(server.requests) == 4
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, False, False, False]


def test_expected_scores_reach_the_result(tmp_path):
    with ScriptedServer(script(Reply(answer(7), score_probs=[{7: 0.5, 9: 0.5}]))) as server:
        results, _ = run_one(server, tmp_path)
    assert results[0].expected_scores == pytest.approx([8.0])
    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 10
    schema = server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["score"]["enum"] == list(range(11))


def test_free_text_request_without_schema(tmp_path):
    with ScriptedServer(script("hello there")) as server:
        results, _ = run_one(server, tmp_path, handler_requests=[
            TeacherRequest(messages=[{"role": "user", "content": "hi"}], prompt_version="chat_v1")])
    assert results[0].ok and results[0].value == "hello there" and "response_format" not in server.requests[0]


def test_api_key_is_sent_but_never_stored_or_logged(tmp_path, monkeypatch, caplog):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("MIRA_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(script(Fault.status(500), answer(2), Fault.status(400, "nope"))) as server:
        results, teacher = run_one(server, tmp_path, handler_requests=requests(3), api_key_env="MIRA_TEST_KEY",
                                   concurrency=1)
    assert server.headers[0]["Authorization"] == f"Bearer {secret}"
    run = RunDir(tmp_path / "run")
    for path in run.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text
    assert secret not in repr(teacher.client) and secret not in str(teacher.usage)
    assert all(secret not in repr(r) for r in results)
