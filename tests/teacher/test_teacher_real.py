"""End to end against the real bundled SmolLM2-135M server (valid JSON, meaningless judgement)."""

import pytest

from mira.core.config import TeacherConfig
from mira.core.processes import pid_alive
from mira.run.rundir import RunDir
from mira.teacher import TeacherRequest, load_prompt, open_teacher, wrap_record
from mira.teacher.local import local_server

from .teacher_helpers import Verdict

pytestmark = [pytest.mark.real_teacher, pytest.mark.timeout(240)]

TEXTS = ["The cat sat on the mat.", "def add(a, b):\n    return a + b\n", "asdf qwer zxcv uiop"]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return TeacherConfig(model="smollm2-135m", model_cache_dir=str(tmp_path_factory.mktemp("models")),
                         concurrency=2, ctx_size=1024, max_parse_retries=2, timeout_s=60)


@pytest.fixture(scope="module")
def server(config):
    # Held for the whole module: every open_teacher below reuses this process.
    with local_server(config) as handle:
        yield handle
    assert not pid_alive(handle.pid)  # the last lease holder stopped it


def ping_requests():
    prompt = load_prompt("ping")
    return [TeacherRequest(prompt.render(record=wrap_record(text)), schema=Verdict, prompt_version=prompt.id,
                           max_tokens=96, tag=f"t{i}") for i, text in enumerate(TEXTS)]


def test_structured_output_then_replay_from_cache(server, config, tmp_path):
    run = RunDir(tmp_path / "run")
    with open_teacher(config, run, stage="ping") as teacher:
        results = teacher.run(ping_requests())
        assert teacher.model_name == "smollm2-135m"
        assert teacher.usage["sent"] >= 3 and teacher.usage["completion_tokens"] > 0
    assert sum(r.ok for r in results) >= 2, [r.error for r in results]
    for result in results:
        if result.ok:
            assert isinstance(result.value, Verdict) and 0 <= result.value.score <= 10
            assert result.expected_scores is not None and len(result.expected_scores) == 1
            value = result.expected_scores[0]
            assert value is None or 0.0 <= value <= 10.0
        else:
            assert result.error
    with open_teacher(config, run, stage="ping") as teacher:
        again = teacher.run(ping_requests())
        assert teacher.usage["sent"] == 0 and teacher.usage["cache_hits"] == 3
    assert [(r.ok, r.value, r.error) for r in again] == [(r.ok, r.value, r.error) for r in results]


def test_budget_stop_and_resume(server, config, tmp_path):
    run = RunDir(tmp_path / "run")
    limited = config.model_copy(update={"max_requests": 1})
    with open_teacher(limited, run, stage="ping") as teacher:
        first = teacher.run(ping_requests())
        assert teacher.budget_exhausted
    assert [r.error == "budget" for r in first].count(True) == 2
    with open_teacher(config, run, stage="ping") as teacher:
        second = teacher.run(ping_requests())
        assert not teacher.budget_exhausted
        assert teacher.usage["cache_hits"] == 1 and teacher.usage["budget_skipped"] == 0
    assert all(r.error != "budget" for r in second)


def test_second_user_reuses_the_running_server(server, config):
    with local_server(config) as other:
        assert other.pid == server.pid and other.url == server.url
    assert pid_alive(server.pid)  # the module fixture still holds its lease


def test_serve_command_runs_in_the_foreground_and_stops(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from mira.teacher.local import healthy

    code = "from mira.teacher.cli import teacher_group; teacher_group()"
    # SIGINT back to its default in the child (a test run started in the background hands it ignored).
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--model", "smollm2-135m"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert "serving at http://127.0.0.1:" in line, line
        url = line.split("serving at ")[1].split()[0]
        assert healthy(url)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Never leave a serving process behind: its lease would keep the shared server up and
            # every later `serve` in this cache would reuse it instead of starting its own.
            proc.kill()
            proc.wait()
            raise
    assert not healthy(url, timeout=0.5)
