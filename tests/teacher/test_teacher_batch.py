"""Batch mode (teacher.mode: batch) against the fake Batch API server: same bodies, same cache, resumable."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from mira.core.config import ConfigError, TeacherConfig
from mira.run.rundir import RunDir
from mira.teacher import open_teacher
from mira.teacher.batch import BatchPending
from mira.teacher.outcome import error_kind
from mira.teacher.testing import Fault, Reply, ScriptedServer, completion
from mira.teacher.testing_batch import BatchServer
from tests.teacher.teacher_helpers import answer, requests

FAST = {"poll_interval_s": 0.01, "max_poll_interval_s": 0.05}


def _reply(body: dict) -> Reply:
    """A valid answer that depends on the request, with logprobs (the expectations must match too)."""
    n = int(body["messages"][-1]["content"].split()[-1])
    return Reply(answer(n % 10, f"record {n}"), score_probs=[{n % 10: 0.6, (n + 1) % 10: 0.4}])


def _batch(server, **overrides):
    batch = {**FAST, **overrides.pop("batch", {})}
    return server.teacher_config(mode="batch", batch=batch, **overrides)


def _rows(run: Path) -> dict:
    with sqlite3.connect(run / "teacher_cache.sqlite") as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT key, raw, value_json, expected_scores, prompt_tokens, completion_tokens, ok FROM responses")}


def _state(run: Path, stage: str = "annotate") -> dict:
    return json.loads((run / "teacher_batches" / f"{stage}.json").read_text())


def test_lines_carry_the_direct_body_and_land_the_same_cache_rows(tmp_path):
    with ScriptedServer(_reply) as direct:
        with open_teacher(direct.teacher_config(), RunDir(tmp_path / "direct"), "annotate") as teacher:
            expected = teacher.run(requests(6))
    with BatchServer(_reply) as server:
        with open_teacher(_batch(server), RunDir(tmp_path / "batch"), "annotate") as teacher:
            got = teacher.run(requests(6))
        lines = [json.loads(x) for x in server.files[server.uploads[0]].decode().splitlines()]
        assert not server.requests[len(server.lines):]  # no chat request: every answer came in the batch
    # Byte for byte what the direct path sends (which sends them concurrently, in any order).
    assert sorted(json.dumps(line["body"]) for line in lines) == sorted(json.dumps(b) for b in direct.requests)
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    assert [line["custom_id"] for line in lines] == [f"{r.key}.0" for r in expected]
    assert [(r.ok, r.value, r.expected_scores, r.key) for r in got] == \
        [(r.ok, r.value, r.expected_scores, r.key) for r in expected]
    assert _rows(tmp_path / "batch") == _rows(tmp_path / "direct")
    state = _state(tmp_path / "batch")
    assert [b["landed"] for b in state["batches"]] == [True] and state["batches"][0]["batch_id"] == server.created[0]
    assert not list((tmp_path / "batch" / "teacher_batches" / "annotate").iterdir())  # landed files removed
    usage = json.loads((tmp_path / "batch" / "usage" / "annotate.json").read_text())["last"]
    assert usage["answered"] == 6 and usage["sent"] == 6 and usage["completion_tokens"] > 0
    # A second run replays from the cache: no batch at all.
    with BatchServer(_reply) as server:
        with open_teacher(_batch(server), RunDir(tmp_path / "batch"), "annotate") as teacher:
            assert all(r.cached for r in teacher.run(requests(6)))
        assert not server.created and not server.files


KILLED = """
import sys
from mira.run.rundir import RunDir
from mira.teacher import open_teacher
from mira.core.config import TeacherConfig
from tests.teacher.teacher_helpers import requests
config = TeacherConfig.model_validate_json(sys.argv[2])
with open_teacher(config, RunDir(sys.argv[1]), "annotate") as teacher:
    teacher.run(requests(5))
"""


@pytest.mark.slow
def test_a_stage_killed_after_submit_resumes_the_same_batch_without_a_second_create(tmp_path):
    with BatchServer(_reply, polls=10_000) as server:  # the batch stays in progress until the kill
        config = _batch(server)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                           str(Path(__file__).parents[2])])}
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED), str(tmp_path),
                                  config.model_dump_json()], env=env)
        try:
            assert server.created_event.wait(30), "the child never created its batch"
            while server.retrieves < 2:  # it polls: the batch id is recorded by now
                assert child.poll() is None
                server.created_event.wait(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        state = _state(tmp_path)["batches"]
        assert [b["batch_id"] for b in state] == server.created and not state[0]["landed"]
        assert state[0]["input_sha256"] and (tmp_path / "teacher_batches" / "annotate").is_dir()
        server.polls = 0
        with open_teacher(config, RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(5))
        assert all(r.ok for r in results) and len(server.created) == 1 and len(server.files) == 2  # in + out
        assert len(server.lines) == 5  # every request answered once


def test_a_create_whose_answer_a_kill_lost_is_found_by_its_input_file(tmp_path, monkeypatch):
    from mira.teacher.batch_api import BatchApi

    create = BatchApi.create

    async def create_then_die(self, *args, **kwargs):
        await create(self, *args, **kwargs)
        raise KeyboardInterrupt  # killed after the server made the batch, before mira recorded it

    with BatchServer(_reply) as server:
        monkeypatch.setattr(BatchApi, "create", create_then_die)
        with pytest.raises(KeyboardInterrupt), open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            teacher.run(requests(4))
        entry = _state(tmp_path)["batches"][0]
        assert entry["file_id"] and entry["batch_id"] is None
        monkeypatch.setattr(BatchApi, "create", create)
        with open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            assert all(r.ok for r in teacher.run(requests(4)))
        assert len(server.created) == 1 and _state(tmp_path)["batches"][0]["batch_id"] == server.created[0]
        assert len(server.lines) == 4


def test_an_expired_batch_resubmits_only_the_requests_without_answers(tmp_path):
    with BatchServer(_reply, outcomes=["expired", "completed"], expire_after=2) as server:
        with open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(5))
        assert all(r.ok for r in results) and len(server.created) == 2
        first, second = (server.files[f].decode().splitlines() for f in server.uploads)
        ids = [json.loads(x)["custom_id"] for x in first]
        assert [json.loads(x)["custom_id"] for x in second] == ids[2:]  # only the three without an answer
        assert len(server.lines) == 5
    assert [b["status"] for b in _state(tmp_path)["batches"]] == ["expired", "completed"]


def _faulty(body: dict):
    n = int(body["messages"][-1]["content"].split()[-1])
    if n == 1:
        return Fault.status(500, "overloaded")
    if n == 2:
        return Fault.status(400, "bad request")
    if n == 3 and body["temperature"] == 0:
        return "not json at all"  # invalid: asked again, in the next batch
    return _reply(body)


def test_partial_failure_fails_those_requests_like_direct_ones_and_lands_the_rest(tmp_path):
    with BatchServer(_faulty) as server:
        with open_teacher(_batch(server, max_failed_share=1.0), RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(5))
            usage = teacher.usage
        assert [r.ok for r in results] == [True, False, False, True, True]
        assert results[1].error.startswith("http 500") and error_kind(results[1].error) == "http 500"
        assert results[2].error.startswith("http 400") and "bad request" in results[2].error
        # The invalid answer was asked again in a second batch, as the direct path asks again.
        assert len(server.created) == 2
        again = [json.loads(x) for x in server.files[server.uploads[1]].decode().splitlines()]
        assert [a["custom_id"] for a in again] == [f"{results[3].key}.1"]
        assert again[0]["body"]["temperature"] == 0.7 and again[0]["body"]["seed"] == 1009
        assert usage["failures"] == 2 and usage["parse_retries"] == 1 and usage["answered"] == 3
    rows = _rows(tmp_path)
    assert set(rows) == {results[i].key for i in (0, 3, 4)}  # failures are never cached
    with BatchServer(_reply) as server:  # the server is fixed: a rerun sends only the two failures
        with open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            assert all(r.ok for r in teacher.run(requests(5)))
        sent = [json.loads(x)["custom_id"] for x in server.files[server.uploads[0]].decode().splitlines()]
        assert sent == [f"{results[1].key}.0", f"{results[2].key}.0"]


def test_a_failed_batch_is_resubmitted_then_its_requests_fail_until_a_rerun(tmp_path):
    with BatchServer(_reply, outcomes=["failed"]) as server:
        config = _batch(server, batch={"max_resubmits": 1}, max_failed_share=1.0)
        with open_teacher(config, RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(3))
        assert len(server.created) == 2 and not any(r.ok for r in results)
        assert results[0].error == "batch gave no answer after 2 submissions (scripted failure)"
    with BatchServer(_reply) as server:
        with open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            assert all(r.ok for r in teacher.run(requests(3)))


def test_the_deadline_keeps_the_batch_and_a_rerun_resumes_it(tmp_path):
    with BatchServer(_reply, polls=10_000) as server:
        with open_teacher(_batch(server, deadline_s=0.3), RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(3))
        assert not any(r.ok for r in results) and error_kind(results[0].error) == "deadline passed"
        assert "a rerun resumes polling it" in results[0].error
        server.polls = 0
        with open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            assert all(r.ok for r in teacher.run(requests(3)))
        assert len(server.created) == 1


def test_the_budget_bounds_what_a_batch_holds(tmp_path):
    with BatchServer(_reply) as server:
        with open_teacher(_batch(server, max_requests=3), RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(5))
            assert teacher.budget_exhausted
        assert [r.error for r in results].count("budget") == 2 and len(server.lines) == 3


def _run_batch_offline(lines_in: Path, lines_out: Path, handler) -> None:
    """What `vllm run_batch` does: every input line answered in an output line."""
    out = []
    for text in lines_in.read_text().splitlines():
        line = json.loads(text)
        reply = handler(line["body"])
        reply = reply if isinstance(reply, Reply) else Reply(reply)
        out.append({"id": "x", "custom_id": line["custom_id"], "error": None,
                    "response": {"status_code": 200, "body": completion(line["body"], reply, "m")}})
    lines_out.write_text("".join(json.dumps(x) + "\n" for x in out))


def test_offline_mode_writes_the_file_stops_with_the_command_and_a_rerun_imports_the_output(tmp_path):
    config = TeacherConfig(provider="openai", base_url="http://127.0.0.1:9/v1", model="Qwen/Qwen2.5-7B-Instruct",
                           mode="batch", batch={"offline": True}, max_failed_share=1.0)
    with pytest.raises(BatchPending) as stop, open_teacher(config, RunDir(tmp_path), "discover") as teacher:
        teacher.run(requests(4))
    folder = tmp_path / "teacher_batches" / "discover"
    [lines_in] = folder.glob("*.input.jsonl")
    lines_out = lines_in.with_name(lines_in.name.replace(".input.", ".output."))
    message = str(stop.value)
    assert "\n" not in message and message.startswith("4 teacher requests of discover")
    assert (f"python -m vllm.entrypoints.openai.run_batch -i {lines_in} -o {lines_out} "
            "--model Qwen/Qwen2.5-7B-Instruct") in message
    # Not run yet: a rerun stops the same way and writes nothing new.
    with pytest.raises(BatchPending), open_teacher(config, RunDir(tmp_path), "discover") as teacher:
        teacher.run(requests(4))
    assert len(_state(tmp_path, "discover")["batches"]) == 1

    def invalid_for_3(body):
        return "garbage" if body["messages"][-1]["content"].endswith(" 3") else _reply(body)

    _run_batch_offline(lines_in, lines_out, invalid_for_3)
    with pytest.raises(BatchPending), open_teacher(config, RunDir(tmp_path), "discover") as teacher:
        teacher.run(requests(4))  # three land; the invalid one goes into a second round
    [again] = folder.glob("*.input.jsonl")
    assert again != lines_in and len(again.read_text().splitlines()) == 1
    assert json.loads(again.read_text())["custom_id"].endswith(".1")
    assert len(_rows(tmp_path)) == 3
    _run_batch_offline(again, again.with_name(again.name.replace(".input.", ".output.")), _reply)
    with open_teacher(config, RunDir(tmp_path), "discover") as teacher:
        results = teacher.run(requests(4))
    assert all(r.ok for r in results) and all(r.cached for r in results[:3])
    assert _state(tmp_path, "discover")["reasks"] == {} and not list(folder.iterdir())


def test_config_and_state_errors_are_one_line(tmp_path):
    with pytest.raises(ValidationError, match="teacher.mode: batch needs provider: openai"):
        TeacherConfig(mode="batch")
    with pytest.raises(ValidationError):
        TeacherConfig(provider="openai", price_per_mtok={"input": -1, "output": 2})
    (tmp_path / "teacher_batches").mkdir()
    (tmp_path / "teacher_batches" / "annotate.json").write_text("{not json")
    with BatchServer(_reply) as server:
        with pytest.raises(ConfigError, match="annotate.json is damaged") as error, \
                open_teacher(_batch(server), RunDir(tmp_path), "annotate") as teacher:
            teacher.run(requests(2))
        assert "\n" not in str(error.value) and not server.created


def test_a_server_without_batch_endpoints_fails_the_requests_in_one_line(tmp_path):
    with ScriptedServer(_reply) as server:  # chat only: /v1/files answers 404
        with open_teacher(_batch(server, max_failed_share=1.0), RunDir(tmp_path), "annotate") as teacher:
            results = teacher.run(requests(2))
    assert not any(r.ok for r in results)
    assert results[0].error.startswith("http 400: upload the batch input file")
    assert "teacher.batch.offline: true" in results[0].error
