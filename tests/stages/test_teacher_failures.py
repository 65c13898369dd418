"""Issue 10 at stage level: nothing paid for is lost, nothing unfinished is marked done.

A scripted teacher drives annotate (and distill / score after it) through budget stops, failing
servers, records of two sources with the same ids, SIGTERM and the CLI's exit codes.
"""

import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import mira
from mira import api
from mira.artifacts.anchors import Anchor, save_rubric
from mira.core.config import AnnotationConfig, RunConfig
from mira.core.errors import StageIncomplete, StageNotReady, TeacherFailed
from mira.io.files import atomic_write_json
from mira.pipeline.runner import run_stage
from mira.rubrics import annotation
from mira.run.config_file import dump_config
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.teacher.testing import Fault, Reply, ScriptedServer

SRC = Path(mira.__file__).resolve().parents[1]  # the subprocess runs the same sources as this test
ANCHORS = ["a00", "a01"]


def teacher(body: dict) -> Reply:
    """Scores from the record text: "alpha" records get 2, "beta" records 8, anything else 5."""
    prompt = json.dumps(body["messages"])
    score = 2 if "alpha record" in prompt else 8 if "beta record" in prompt else 5
    props = body["response_format"]["json_schema"]["schema"]["properties"]
    return Reply(json.dumps({a: {"why": "because", "score": score} for a in props}))


def _corpus(tmp_path: Path, n: int = 6) -> RunConfig:
    """Two sources whose records are both numbered 0..n-1, in one group."""
    for name in ("alpha", "beta"):
        lines = [json.dumps({"id": i, "text": f"{name} record number {i}: " + "words of text " * 5}) for i in range(n)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return RunConfig.model_validate({
        "name": "t", "run_dir": str(tmp_path / "run"), "tokenizer": {"name": "bytes4"},
        "sources": [{"name": s, "path": str(tmp_path / f"{s}.jsonl")} for s in ("alpha", "beta")],
        # One request per label, so the counts below are labels (annotate_v3's own budget, failure
        # and rerun tests are in test_annotate_v3.py).
        "annotation": AnnotationConfig(allocation="even", protocol="annotate_v2", records_per_group=2 * n,
                                       self_consistency_records=4).model_dump()})


def _prepare(config: RunConfig) -> RunDir:
    api.run_one("ingest", config)
    run = RunDir(config.resolved_run_dir())
    atomic_write_json(run.groups_path, {
        "k": 1, "chosen_by": "config", "k_scores": {},
        "groups": [{"id": "g0", "label": "g0", "sources": ["alpha", "beta"], "within_similarity": 1.0,
                    "pinned": False}],
        "source_to_group": {"alpha": "g0", "beta": "g0"},
        "similarity": {"sources": ["alpha", "beta"], "matrix": [[1.0, 1.0], [1.0, 1.0]]}})
    run.mark_done("group", "group-fp")
    save_rubric(run, "g0", [Anchor(id=a, name=f"Quality {a}", definition=f"How good the record is at {a}.",
                                   low="poor", mid="ordinary", high="exemplary") for a in ANCHORS])
    run.mark_done("discover", "discover-fp")
    return run


def _labels(run: RunDir, consistency: bool = False) -> list[dict]:
    return pq.read_table(annotation.labels_path(run, "g0", consistency)).to_pylist()


def test_same_ids_in_two_sources_keep_their_own_text_and_labels(tmp_path):
    config = _corpus(tmp_path)
    with ScriptedServer(teacher) as server:
        config.teacher = server.teacher_config()
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
    rows = _labels(run)
    assert {(r["source"], r["record_id"]) for r in rows} == {(s, str(i)) for s in ("alpha", "beta") for i in range(6)}
    for row in rows + _labels(run, consistency=True):
        assert row["ok"] and row["text"].startswith(f"{row['source']} record number {row['record_id']}:")
        assert row["a00"] == (2.0 if row["source"] == "alpha" else 8.0)
    shown = [json.dumps(b["messages"]) for b in server.requests]
    assert sum("beta record" in s for s in shown) >= 6  # the second source was shown to the teacher


def test_teacher_consistency_joins_rows_by_source_and_id(tmp_path):
    import pyarrow as pa

    from mira.scoring.distillation import teacher_consistency

    labels = pa.table({"record_id": ["0", "0"], "source": ["alpha", "beta"], "a00": [2.0, 8.0]})
    again = tmp_path / "again.parquet"
    pq.write_table(pa.table({"record_id": ["0"], "source": ["alpha"], "ok": [True], "a00": [2.0],
                             "a00__sampled": [2]}), again)
    result = teacher_consistency(labels, again, ["a00"])
    assert result["n"] == 1 and result["mae"] == 0.0  # alpha's second scoring against alpha's first


def test_budget_stop_then_resume_loses_no_label(tmp_path):
    config = _corpus(tmp_path)
    with ScriptedServer(teacher) as server:
        config.teacher = server.teacher_config(max_requests=5)
        run = _prepare(config)
        with pytest.raises(StageIncomplete, match="budget"):
            run_stage("annotate", StageContext(config, run))
        first = len(server.requests)
        config.teacher = server.teacher_config()
        outcome = run_stage("annotate", StageContext(config, run))
    rows, again = _labels(run), _labels(run, consistency=True)
    assert all(r["ok"] for r in rows + again), [r["error"] for r in rows + again if not r["ok"]]
    assert outcome.counts["labels"] == 12 and outcome.counts["failed"] == 0
    assert outcome.counts["cache_hits"] == 5 and len(server.requests) == first + 16 - 5


def test_failing_teacher_stops_annotate_and_a_recovered_one_gets_only_the_failed_requests(tmp_path):
    config = _corpus(tmp_path)
    broken = {"on": True}

    def handler(body):  # the server fails every request about a beta record, then recovers
        return Fault.status(500) if broken["on"] and "beta record" in json.dumps(body["messages"]) else teacher(body)

    with ScriptedServer(handler) as server:
        config.teacher = server.teacher_config(max_retries=0, max_failed_share=0.25)
        run = _prepare(config)
        with pytest.raises(TeacherFailed) as failed:
            run_stage("annotate", StageContext(config, run))
        message = str(failed.value)
        assert re.match(r"teacher at http://127\.0\.0\.1:\d+/v1 answered 500 on 8 of 16 requests", message)
        assert "\n" not in message and run.done("annotate") is None
        rows = _labels(run)  # written for audit, with the error of each failed row
        assert sum(not r["ok"] for r in rows) == 6 and all("http 500" in r["error"] for r in rows if not r["ok"])
        answered = {json.dumps(b["messages"]) for b in server.requests
                    if "beta record" not in json.dumps(b["messages"])}
        sent = len(server.requests)

        broken["on"] = False
        outcome = run_stage("annotate", StageContext(config, run))
        rerun = [json.dumps(b["messages"]) for b in server.requests[sent:]]
    assert len(rerun) == 8 and all("beta record" in r for r in rerun) and not answered & set(rerun)
    assert outcome.counts["labels"] == 12 and run.done("annotate") is not None


def test_default_policy_stops_when_a_group_cannot_train_and_distill_and_score_refuse(tmp_path):
    config = _corpus(tmp_path, n=2)
    with ScriptedServer(lambda body: Fault.status(500)) as server:
        config.teacher = server.teacher_config(max_retries=0)
        run = _prepare(config)
        with pytest.raises(TeacherFailed, match=r"answered 500 on 8 of 8 requests; groups g0 are left without "
                                                r"enough labels"):
            run_stage("annotate", StageContext(config, run))
    assert run.done("annotate") is None
    # Even if a user marks annotate done by hand, distill does not finish without a student...
    run.mark_done("annotate", "annotate-fp")
    with pytest.raises(TeacherFailed, match=r"no student for groups g0 \(0 usable of 4 label rows"):
        run_stage("distill", StageContext(config, run))
    assert run.done("distill") is None
    # ... and score says so in one line instead of a FileNotFoundError.
    run.mark_done("distill", "distill-fp")
    with pytest.raises(StageNotReady, match=r"^no trained student for groups g0 .*`mira distill --force`"):
        run_stage("score", StageContext(config, run))


def _write_config(config: RunConfig, tmp_path: Path) -> Path:
    path = tmp_path / "mira.yaml"
    path.write_text(dump_config(config))
    return path


def test_cli_exit_code_4_and_one_line_naming_the_teacher(tmp_path):
    from mira.cli import main

    config = _corpus(tmp_path, n=2)
    with ScriptedServer(lambda body: Fault.status(503)) as server:
        config.teacher = server.teacher_config(max_retries=0)
        _prepare(config)
        result = CliRunner().invoke(main, ["annotate", str(_write_config(config, tmp_path))])
        url = server.url
    assert result.exit_code == 4
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"teacher at {url} answered 503 on 8 of 8 requests" in lines[0]


def test_credentials_and_query_of_base_url_never_reach_config_yaml(tmp_path):
    config = _corpus(tmp_path, n=2)
    with ScriptedServer(teacher) as server:
        url = server.url.replace("http://", "http://me:hunter2secret@") + "?key=querysecret42"
        config.teacher = server.teacher_config(base_url=url)
        run = _prepare(config)
        run_stage("annotate", StageContext(config, run))
        assert server.headers[0]["Authorization"].startswith("Basic ")  # the credentials were used
    saved = run.config_path.read_text()
    assert "teacher" in saved and "hunter2secret" not in saved and "querysecret42" not in saved
    assert "[redacted]@127.0.0.1" in saved and "key=[redacted]" in saved
    for path in run.root.rglob("*"):
        if path.is_file():
            assert b"hunter2secret" not in path.read_bytes() and b"querysecret42" not in path.read_bytes(), path


@contextlib.contextmanager
def _annotate_hanging_after_three_answers(tmp_path: Path, **popen: Any) -> Iterator[tuple[RunConfig, RunDir, Any]]:
    """`mira annotate` in a child process, once its fourth request waits on a server that hangs."""
    config = _corpus(tmp_path)
    lock = {"answered": 0}

    def handler(body):  # three answers, then the server hangs
        lock["answered"] += 1
        return teacher(body) if lock["answered"] <= 3 else Fault.delay(60, then=teacher(body))

    with ScriptedServer(handler) as server:
        config.teacher = server.teacher_config(concurrency=1, timeout_s=120)
        run = _prepare(config)
        proc = subprocess.Popen([sys.executable, "-m", "mira", "annotate", str(_write_config(config, tmp_path))],
                                env={**os.environ, "PYTHONPATH": str(SRC)}, **popen)
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield config, run, proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.slow
def test_a_signal_during_annotate_flushes_usage_and_says_what_was_kept(tmp_path, signum):
    # SIGINT back to its default in the child: a test run started in the background (`cmd &`,
    # nohup) hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
    with _annotate_hanging_after_three_answers(
            tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as (_, run, proc):
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted during annotate: 3 new teacher answers" in lines[0]
    assert "teacher_cache.sqlite" in lines[0]
    usage = json.loads((run.usage_dir / "annotate.json").read_text())
    assert usage["last"]["answered"] == 3 and usage["last"]["sent"] == 4
    assert run.done("annotate") is None


@pytest.mark.slow
def test_a_sigkilled_session_keeps_its_usage_and_the_next_one_adds_to_it(tmp_path):
    # SIGKILL runs no cleanup: usage/<stage>.json used to be written at close only, so the counts of
    # everything a killed session paid for were lost (its answers were in the cache).
    with _annotate_hanging_after_three_answers(
            tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as (config, run, proc):
        time.sleep(1.5)  # past the write interval after the third answer
        proc.kill()
        proc.wait(timeout=30)
    usage = json.loads((run.usage_dir / "annotate.json").read_text())
    assert usage["sessions"] == 1 and usage["last"]["answered"] == 3 and usage["total"]["answered"] == 3
    with ScriptedServer(teacher) as server:  # the rerun pays for the rest only, and adds its counts
        config.teacher = server.teacher_config()
        run_stage("annotate", StageContext(config, run))
        asked = len(server.requests)
    usage = json.loads((run.usage_dir / "annotate.json").read_text())
    assert usage["sessions"] == 2 and usage["last"]["answered"] == asked and usage["last"]["cache_hits"] == 3
    assert usage["total"]["answered"] == 3 + asked


def test_report_read_tests_keep_records_of_two_sources_with_the_same_id_apart():
    import pyarrow as pa

    from mira.corpus.records import record_key
    from mira.report import readtests

    class Stub:
        def validation(self, group):
            return pa.table({"record_id": ["0", "0"], "source": ["alpha", "beta"],
                             "a00__teacher": [2.0, 8.0], "a00__student": [3.0, 7.0]})

    labels = {record_key(s, "0"): {"record_id": "0", "source": s, "a00": v} for s, v in (("alpha", 2.0), ("beta", 8.0))}
    preds, _ = readtests._predictions(Stub(), "g0", labels, ["a00"])
    assert preds == {"alpha/0": {"a00": (2.0, 3.0)}, "beta/0": {"a00": (8.0, 7.0)}}


# --- issue 27: no bad answer becomes a label -----------------------------------------------------

def _spoiled(how: str):
    """A server that answers like `teacher` but spoils its logprobs (teacher.testing.spoiled_logprobs)."""
    from mira.teacher.testing import spoiled_logprobs

    def handler(body):
        reply = teacher(body)
        return Reply(reply.content, logprobs=spoiled_logprobs(reply, how))

    return handler


def test_nan_logprobs_fail_annotate_and_a_healthy_rerun_replays_none_of_them(tmp_path):
    """Before: every target was NaN, every row ok, failed=0, the stage done, the NaN answers cached."""
    config = _corpus(tmp_path)
    with ScriptedServer(_spoiled("nan")) as server:
        config.teacher = server.teacher_config(max_consecutive_failures=None)
        run = _prepare(config)
        stopped = r"failed 16 of 16 requests: malformed logprobs \(.*\); groups g0"
        with pytest.raises(TeacherFailed, match=stopped) as stop:
            run_stage("annotate", StageContext(config, run))
    assert "teacher.logprobs: false" in str(stop.value) and run.done("annotate") is None
    assert not any(r["ok"] for r in _labels(run) + _labels(run, consistency=True))
    with ScriptedServer(teacher) as server:
        config.teacher = server.teacher_config()
        outcome = run_stage("annotate", StageContext(config, run))
        assert len(server.requests) == 16  # nothing of the broken session was replayed
    rows = _labels(run) + _labels(run, consistency=True)
    assert outcome.counts["failed"] == 0 and all(r["ok"] for r in rows)
    assert all(r[a] in (2.0, 8.0) for r in rows for a in ANCHORS)


@pytest.mark.parametrize("how", ["big", "string", "object", "list", "inf"])
def test_malformed_logprobs_end_annotate_with_exit_4_and_one_line(tmp_path, caplog, how):
    """Before: OverflowError / TypeError / AttributeError out of every request task: exit 1 and a
    "Task exception was never retrieved" traceback per request in flight."""
    from mira.cli import main

    config = _corpus(tmp_path, n=2)
    with ScriptedServer(_spoiled(how)) as server:
        config.teacher = server.teacher_config(max_retries=0)
        _prepare(config)
        result = CliRunner().invoke(main, ["annotate", str(_write_config(config, tmp_path))])
    assert result.exit_code == 4, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "failed 8 of 8 requests: malformed logprobs" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_full_disk_during_annotate_is_one_line_and_keeps_the_answers_stored(tmp_path, monkeypatch, caplog):
    """Before: sqlite3.OperationalError out of a request task, exit 1, a traceback per request in flight."""
    from mira.cli import main
    from mira.teacher.cache import TeacherCache

    original = TeacherCache._set_up

    def full_soon(self, busy_timeout_s):  # SQLite answers SQLITE_FULL, as on a full file system
        original(self, busy_timeout_s)
        self._conn.execute(f"PRAGMA max_page_count = {self._conn.execute('PRAGMA page_count').fetchone()[0] + 1}")

    config = _corpus(tmp_path, n=40)
    with ScriptedServer(teacher) as server:
        config.teacher = server.teacher_config(concurrency=2)
        run = _prepare(config)
        path = _write_config(config, tmp_path)
        monkeypatch.setattr(TeacherCache, "_set_up", full_soon)
        result = CliRunner().invoke(main, ["annotate", str(path)])
        monkeypatch.undo()
        paid = len(server.requests)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in result.output
        assert "database or disk is full" in lines[0] and "free some space" in lines[0]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        kept = int(re.search(r"(\d+) new answers of this session are kept", lines[0]).group(1))
        assert 0 < kept < paid < 84 and run.done("annotate") is None
        outcome = run_stage("annotate", StageContext(config, run))
        assert len(server.requests) == paid + 84 - kept  # what was stored is not paid again
    assert outcome.counts["cache_hits"] == kept and outcome.counts["failed"] == 0


def _ok_result(value, expected):
    from mira.teacher import TeacherResult

    return TeacherResult(True, value, None, False, expected, {}, None, "t", "k")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 11.5, -0.5])
def test_a_label_row_never_holds_a_target_outside_0_10_as_ok(tmp_path, bad):
    from mira.corpus.records import Record, Rendering
    from mira.rubrics import annotation_v3

    record = Record(id="0", source="alpha", format="text", data={"text": "t"}, locator="alpha.jsonl:1")
    rendering = Rendering(text="t", tokens=1, truncated=False)
    schema = annotation.answer_schema(ANCHORS, rationales=False, rationale_chars=100, flat=True)
    value = schema.model_validate({"a00": 7, "a01": 5})
    row = annotation.label_row(record, rendering, ANCHORS, ANCHORS, _ok_result(value, [bad, 5.0]))
    assert not row["ok"] and "a00" in row["error"] and row["a00"] is None and row["a01"] is None
    v3 = annotation_v3.answer_schema()
    row = annotation_v3.label_row(record, rendering, ANCHORS, [_ok_result(v3.model_validate(6), [4.0]),
                                                              _ok_result(v3.model_validate(6), [bad])])
    assert not row["ok"] and "a01" in row["error"] and row["a00"] is None
    good = annotation.label_row(record, rendering, ANCHORS, ANCHORS, _ok_result(value, [6.5, 5.0]))
    assert good["ok"] and good["a00"] == 6.5
    good["a01"] = bad  # a row built elsewhere: the writer refuses it
    with pytest.raises(ValueError, match="outside 0-10"):
        annotation.write_labels(tmp_path / "labels.parquet", [good], ANCHORS)
