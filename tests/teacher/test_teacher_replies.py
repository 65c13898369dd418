"""Issue 27: what a teacher reply may carry into mira, and what it may not.

Non-finite or malformed logprobs, a bare ``true`` as a score, a reply padded with megabytes,
control and bidi characters in teacher text, a full disk under the cache: each ends as a recorded
failure (never cached, asked again by a rerun) or as one clean stop, never as a label or a crash.
"""

import errno
import json
import math

import pytest
from pydantic import BaseModel, ConfigDict

from mira.run.rundir import RunDir
from mira.teacher import Digit, Score, open_teacher
from mira.teacher.cache import TeacherCache, TeacherStorageFailed
from mira.teacher.outcome import error_kind
from mira.teacher.teacher import parse_answer
from mira.teacher.testing import SPOILS, Fault, Reply, ScriptedServer, script, spoiled_logprobs

from .teacher_helpers import Verdict, answer, requests

BAD_TEXT = ["\x00", "\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u2066", "\u200f", "\u061c", "\u200b", "\ufeff"]


def _ask(server, path, reqs=None, **overrides):
    with open_teacher(server.teacher_config(**overrides), RunDir(path), stage="annotate") as teacher:
        return teacher.run(reqs or requests(1))


def _cached_ok(path) -> int:
    cache = TeacherCache(RunDir(path).teacher_cache_path)
    try:
        return cache._conn.execute("SELECT COUNT(*) FROM responses WHERE ok = 1").fetchone()[0]
    finally:
        cache.close()


@pytest.mark.parametrize("how", SPOILS)
def test_spoiled_logprobs_are_a_failed_answer_never_cached_and_asked_again(tmp_path, how, caplog):
    """Before: NaN/Infinity gave a NaN expectation cached as a valid answer (a healthy rerun replayed
    it); 1000, "x", an object or a list raised out of the event loop with a traceback per request."""
    content = answer(7)
    broken = Reply(content, logprobs=spoiled_logprobs(Reply(content), how))
    with ScriptedServer(script(broken)) as server:
        results = _ask(server, tmp_path, requests(3))
    assert [r.ok for r in results] == [False] * 3
    assert all(error_kind(r.error) == "malformed logprobs" for r in results), [r.error for r in results]
    assert not any(r.levelname == "ERROR" for r in caplog.records)  # no "Task exception was never retrieved"
    assert _cached_ok(tmp_path) == 0
    with ScriptedServer(script(Reply(content, score_probs=[{7: 0.5, 8: 0.5}]))) as server:
        again = _ask(server, tmp_path, requests(3))
        assert len(server.requests) == 3  # nothing replayed from the broken session
    assert all(r.ok and not r.cached and r.expected_scores == pytest.approx([7.5]) for r in again)


def test_one_malformed_reply_fails_alone_and_the_answers_around_it_are_kept(tmp_path):
    def handler(body):
        text = answer(4)
        if "record 1" in body["messages"][0]["content"]:
            return Reply(text, logprobs=spoiled_logprobs(Reply(text), "big"))
        return text

    with ScriptedServer(handler) as server:
        results = _ask(server, tmp_path, requests(5), concurrency=2)
    assert [r.ok for r in results] == [True, False, True, True, True]
    assert _cached_ok(tmp_path) == 4


def test_a_cached_nan_expectation_from_an_older_version_is_asked_again(tmp_path):
    run = RunDir(tmp_path)
    with ScriptedServer(script(Reply(answer(6), score_probs=[{6: 1.0}]))) as server:
        with open_teacher(server.teacher_config(), run, stage="annotate") as teacher:
            key = teacher.key(requests(1)[0])
        cache = TeacherCache(run.teacher_cache_path)  # what the old code stored: NaN in the cache
        cache._conn.execute("INSERT INTO responses (key, prompt_version, model, tag, ok, raw, value_json,"
                            " expected_scores, created_at) VALUES (?, 'ping_v1', 'scripted', 'r0', 1, ?, ?, ?, 0)",
                            (key, answer(6), answer(6), json.dumps([math.nan])))
        assert cache.has([key]) == set() and not cache.get(key).ok
        cache.close()
        results = _ask(server, tmp_path)
        assert len(server.requests) == 1
    assert results[0].ok and not results[0].cached and results[0].expected_scores == [6.0]


def test_the_cache_refuses_to_store_a_non_finite_expectation(tmp_path):
    cache = TeacherCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError):
        cache.put("k", prompt_version="v", model="m", tag="", ok=True, raw="7", value=7, error=None,
                  expected_scores=[math.inf], prompt_tokens=0, completion_tokens=0, attempts=1, latency_s=0.0)
    cache.close()


class Flag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: Score


def test_a_boolean_is_not_a_score():
    from pydantic import RootModel

    class Bare(RootModel[Digit]):
        pass

    assert parse_answer("true", Bare, "stop")[1] is not None
    assert parse_answer('{"score": true}', Flag, "stop")[1] is not None
    assert parse_answer('{"score": false}', Flag, "stop")[1] is not None
    assert parse_answer("7", Bare, "stop")[0].root == 7 and parse_answer('{"score": 1}', Flag, "stop")[0].score == 1
    # The JSON schema (part of every request's cache key) is unchanged by the check.
    assert Flag.model_json_schema()["properties"]["score"] == {
        "enum": list(range(11)), "maximum": 10, "minimum": 0, "title": "Score", "type": "integer"}


def test_a_reply_padded_with_megabytes_is_not_cached_whole(tmp_path):
    inner = '{"reason": "fine",' + " " * 3_000_000 + '"score": 7}'
    outer = answer(7) + " \n" * 2_000_000
    with ScriptedServer(script(inner, outer)) as server:
        results = _ask(server, tmp_path, requests(2), concurrency=1, max_parse_retries=0)
    assert not results[0].ok and "characters" in results[0].error
    assert error_kind(results[0].error) == "reply too long"
    assert results[1].ok and results[1].value.score == 7  # padding around the answer is trimmed
    cache = TeacherCache(RunDir(tmp_path).teacher_cache_path)
    rows = cache._conn.execute("SELECT ok, LENGTH(raw) FROM responses").fetchall()
    cache.close()
    assert rows == [(1, len(answer(7)))]


@pytest.mark.parametrize("char", BAD_TEXT, ids=[f"U+{ord(c):04X}" for c in BAD_TEXT])
def test_control_and_bidi_characters_never_reach_an_accepted_answer(tmp_path, char):
    escaped = json.dumps({"reason": f"fi{char}ne", "score": 5})  # as \\uXXXX escapes
    literal = '{"reason": "go' + char + 'od", "score": 5}' if ord(char) >= 0x20 else escaped
    with ScriptedServer(script(escaped, literal)) as server:
        results = _ask(server, tmp_path, requests(2), concurrency=1)
    assert [r.value.reason for r in results] == ["fine", "good" if literal != escaped else "fine"]
    assert all(char not in (r.raw or "") for r in results)
    cache = TeacherCache(RunDir(tmp_path).teacher_cache_path)
    stored = cache._conn.execute("SELECT raw, value_json FROM responses").fetchall()
    cache.close()
    for raw, value in stored:
        assert char not in raw and char not in json.loads(value)["reason"]
    # Replayed from the cache: the same clean text.
    with ScriptedServer(script(answer(1))) as server:
        replay = _ask(server, tmp_path, requests(2))
    assert [r.value.reason for r in replay] == [r.value.reason for r in results] and all(r.cached for r in replay)


def test_teacher_text_keeps_newlines_tabs_and_ordinary_unicode():
    text = "line one\n\tline two: naïve café, 日本語, emoji 🙂, «quotes»"
    value, error = parse_answer(json.dumps({"reason": text, "score": 3}), Verdict, "stop")
    assert error is None and value.reason == text


def test_a_server_error_message_loses_its_control_characters(tmp_path):
    with ScriptedServer(script(Fault.status(400, "bad \x1b[2J request \u202eevil\x00"))) as server:
        results = _ask(server, tmp_path, logprobs=False)
    assert not results[0].ok and "bad [2J request evil" in results[0].error
    assert not any(c in results[0].error for c in "\x1b\u202e\x00")


def _full_after(monkeypatch, answers: int) -> None:
    """The cache's disk fills after `answers` rows: SQLite itself answers SQLITE_FULL ("database or
    disk is full") once the file reaches its page limit, as it does on a full file system."""
    original = TeacherCache._set_up

    def set_up(self, busy_timeout_s):
        original(self, busy_timeout_s)
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count = {pages + answers}")

    monkeypatch.setattr(TeacherCache, "_set_up", set_up)


def test_a_full_disk_stops_the_session_in_one_line_and_keeps_what_was_stored(tmp_path, monkeypatch, caplog):
    """Before: sqlite3.OperationalError raised out of one request task, the others died with
    "Task exception was never retrieved" tracebacks and the CLI exited 1."""
    long_reason = "r" * 3000  # about one page of the database per answer
    with ScriptedServer(lambda body: answer(5, reason=long_reason + body["messages"][0]["content"])) as server:
        _full_after(monkeypatch, 4)
        with pytest.raises(TeacherStorageFailed) as stop:
            _ask(server, tmp_path, requests(30), concurrency=2)
        paid = len(server.requests)
        monkeypatch.undo()
        message = str(stop.value)
        assert "\n" not in message and "database or disk is full" in message
        assert "teacher_cache.sqlite" in message and "rerun of `mira annotate` sends only" in message
        assert stop.value.errno == errno.ENOSPC
        assert not any(r.levelname == "ERROR" for r in caplog.records)
        assert paid < 30  # it stopped sending once nothing could be stored
        kept = _cached_ok(tmp_path)
        assert kept >= 1 and f"{kept} new answers" in message
        results = _ask(server, tmp_path, requests(30))
    assert all(r.ok for r in results) and sum(r.cached for r in results) == kept
    assert len(server.requests) == paid + 30 - kept


def test_a_bug_in_one_request_stops_sending_and_keeps_the_answers_in_flight(tmp_path, monkeypatch, caplog):
    """Before: the exception left the gather at once, the requests in flight were cancelled (paid,
    never cached) and the client closed under the others."""
    from mira.teacher import teacher as teacher_module

    real = teacher_module.expected_scores

    def buggy(content, *args, **kwargs):
        if '"score": 9' in content:
            raise RuntimeError("a bug in mira")
        return real(content, *args, **kwargs)

    def handler(body):
        first = "record 0" in body["messages"][0]["content"]
        return Fault.delay(0.5, then=answer(4)) if first else answer(9)

    monkeypatch.setattr(teacher_module, "expected_scores", buggy)
    with ScriptedServer(handler) as server:
        with pytest.raises(RuntimeError, match="a bug in mira"):
            _ask(server, tmp_path, requests(6), concurrency=2)
        assert len(server.requests) == 2  # nothing sent after the bug
    assert _cached_ok(tmp_path) == 1  # the answer in flight when it happened
    assert not any(r.levelname == "ERROR" for r in caplog.records)
