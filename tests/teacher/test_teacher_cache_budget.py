"""Request cache (replay, concurrent writers), budget stop + resume, usage files, estimates."""

import json
import subprocess
import sys
import threading

import pytest

from mira.run.rundir import RunDir
from mira.teacher import estimate, open_teacher
from mira.teacher.cache import TeacherCache
from mira.teacher.testing import ScriptedServer, script

from .teacher_helpers import answer, requests


def test_rerun_sends_zero_requests_and_replays_everything(tmp_path):
    run = RunDir(tmp_path / "run")
    with ScriptedServer(lambda body: answer(len(body["messages"][0]["content"]) % 11)) as server:
        config = server.teacher_config()
        with open_teacher(config, run, stage="annotate") as teacher:
            first = teacher.run(requests(6))
        assert len(server.requests) == 6
        with open_teacher(config, run, stage="annotate") as teacher:
            second = teacher.run(requests(6))
            assert teacher.usage["cache_hits"] == 6 and teacher.usage["sent"] == 0
        assert len(server.requests) == 6
        # A new prompt version is a different request: asked again.
        with open_teacher(config, run, stage="annotate") as teacher:
            teacher.run(requests(2, version="ping_v2"))
        assert len(server.requests) == 8
    assert all(s.cached and not f.cached for f, s in zip(first, second))
    assert [s.value for s in second] == [f.value for f in first]
    assert [s.expected_scores for s in second] == [f.expected_scores for f in first]
    usage = json.loads((run.usage_dir / "annotate.json").read_text())
    assert usage["sessions"] == 3 and usage["total"]["cache_hits"] == 6 and usage["total"]["sent"] == 8


def test_duplicate_requests_in_one_batch_are_asked_once(tmp_path):
    with ScriptedServer(script(answer(3))) as server:
        with open_teacher(server.teacher_config(), RunDir(tmp_path), stage="s") as teacher:
            results = teacher.run(requests(1) * 4)
    assert len(server.requests) == 1 and len(results) == 4 and all(r.ok for r in results)


def test_budget_stops_cleanly_and_a_rerun_resumes(tmp_path):
    run = RunDir(tmp_path / "run")
    with ScriptedServer(script(answer(5))) as server:
        config = server.teacher_config(max_requests=3, concurrency=2)
        with open_teacher(config, run, stage="discover") as teacher:
            results = teacher.run(requests(5))
            assert teacher.budget_exhausted
        assert [r.ok for r in results].count(True) == 3
        assert [r.error for r in results if not r.ok] == ["budget", "budget"]
        assert len(server.requests) == 3
        assert json.loads((run.usage_dir / "discover.json").read_text())["budget_exhausted"] is True
        with open_teacher(config, run, stage="discover") as teacher:
            results = teacher.run(requests(5))
            assert not teacher.budget_exhausted and teacher.usage["cache_hits"] == 3
        assert all(r.ok for r in results) and len(server.requests) == 5


def test_token_budget(tmp_path):
    with ScriptedServer(script(answer(5))) as server:
        config = server.teacher_config(max_tokens=1, concurrency=1)
        with open_teacher(config, RunDir(tmp_path), stage="s") as teacher:
            results = teacher.run(requests(3))
            assert teacher.budget_exhausted
    assert [r.error for r in results] == [None, "budget", "budget"]


def test_estimate_counts_cached_and_uses_measured_completions(tmp_path):
    run = RunDir(tmp_path / "run")
    with ScriptedServer(script(answer(5))) as server:
        config = server.teacher_config(model="qwen2.5-coder-1.5b")
        before = estimate(config, run, requests(4, max_tokens=400))
        assert not run.teacher_cache_path.exists()  # a dry run writes nothing
        assert before["requests"] == 4 and before["cached"] == 0 and before["completion_tokens_est"] == 800
        assert before["seconds_est"] > 800 / 34
        with open_teacher(config, run, stage="s") as teacher:
            teacher.run(requests(2, max_tokens=400))
            after = teacher.estimate(requests(4, max_tokens=400))
    assert after["cached"] == 2 and after["completion_tokens_est"] < 400


WRITER = """
import sys
from mira.teacher.cache import TeacherCache
cache = TeacherCache(sys.argv[1], busy_timeout_s=60)
for i in range(200):
    cache.put(f"{sys.argv[2]}-{i}", prompt_version="v1", model="m", tag="", ok=True, raw="{}", value={"i": i},
              error=None, expected_scores=[1.0], prompt_tokens=1, completion_tokens=1, attempts=1, latency_s=0.1)
"""


def test_concurrent_writers_do_not_corrupt_the_cache(tmp_path):
    path = tmp_path / "teacher_cache.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}"]) for n in range(3)]

    def thread_writer(name):
        cache = TeacherCache(path)
        for i in range(200):
            cache.put(f"{name}-{i}", prompt_version="v1", model="m", tag="", ok=True, raw="{}", value=None,
                      error=None, expected_scores=None, prompt_tokens=0, completion_tokens=0, attempts=1,
                      latency_s=None)
        cache.close()

    threads = [threading.Thread(target=thread_writer, args=(f"t{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = TeacherCache(path)
    assert cache.count() == 1000
    assert cache._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert cache.get("p1-199").value_json == '{"i": 199}'


def _in_threads(fn, n: int = 2) -> list[BaseException]:
    """Run `fn` in `n` threads at once; the exceptions they raised (a thread's exception would
    otherwise reach the test only as a warning)."""
    errors: list[BaseException] = []

    def work():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_teachers_share_a_run_dir_concurrently(tmp_path):
    run = RunDir(tmp_path / "run")
    with ScriptedServer(script(answer(6))) as server:
        def work():
            with open_teacher(server.teacher_config(), run, stage="s") as teacher:
                assert all(r.ok for r in teacher.run(requests(20)))

        errors = _in_threads(work)
        assert errors == []
        assert TeacherCache(run.teacher_cache_path).count() == 20


@pytest.mark.slow
def test_two_connections_creating_the_same_cache_file_at_once_both_open(tmp_path):
    # Found as a warning in the suite: a second Teacher opening a fresh run's cache failed with
    # "database is locked" on the switch to WAL (9 of 300 two-thread opens before the fix).
    failures: list[str] = []
    for trial in range(200):
        path = tmp_path / f"{trial}" / "teacher.sqlite"
        barrier = threading.Barrier(2)

        def open_close(path=path, barrier=barrier):
            barrier.wait()
            TeacherCache(path).close()

        failures += [f"{type(exc).__name__}: {exc}" for exc in _in_threads(open_close)]
    assert failures == []


def test_usage_log_counts_each_session_once_however_often_it_writes(tmp_path):
    from mira.teacher.usage import Usage, UsageLog

    path = tmp_path / "usage" / "annotate.json"
    first, second = Usage(), Usage()
    log_a, log_b = UsageLog(path, "annotate", "m"), UsageLog(path, "annotate", "m", interval=3600)
    first.answered, first.prompt_tokens = 2, 100
    log_a.write(first, False)
    assert log_b.write(second, False, force=False) is not None  # a session's first write is never held back
    second.answered = 5
    assert log_b.write(second, False, force=False) is None  # within its interval: not written
    first.answered, first.prompt_tokens = 3, 150
    log_a.write(first, False)
    log_b.write(second, False)
    data = json.loads(path.read_text())
    assert data["sessions"] == 2 and data["total"]["answered"] == 8 and data["total"]["prompt_tokens"] == 150
    assert data["last"]["answered"] == 5
