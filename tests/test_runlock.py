"""One writer per run directory, checked with real processes (issue 10 item 4).

A "holder" is a real `mira <stage>` process (the CLI's own entry point) whose stage pauses after
it has taken the lock, until the test lets it go; so the overlap with a second writer is certain,
not a matter of timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mira.core.config import EngineConfig
from mira.run.config_file import dump_config
from mira.run.lock import RunLocked, writing
from mira.run.rundir import RunDir
from mira.selection.named import current_selection
from tests.engines.doubles import build_corpus, make_config, score_with_doubles

ROOT = Path(__file__).resolve().parents[1]
EXIT_LOCKED = 75

# Runs `mira <argv...>` in this process, with the stage's work paused until the file `go` exists.
HOLDER = """
import importlib, pathlib, sys, time
holding, go, stage = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
module = importlib.import_module(f"mira.stages.{stage}")
real_run = module.run
def paused_run(ctx):
    holding.touch()
    while not go.exists():
        time.sleep(0.02)
    return real_run(ctx)
module.run = paused_run
sys.argv = ["mira", *sys.argv[3:]]
from mira.cli import main
main()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}


MIRA = [sys.executable, "-c", "import sys; from mira.cli import main; sys.argv[0] = 'mira'; main()"]


def _mira(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*MIRA, *args], env=_env(), capture_output=True, text=True, timeout=timeout)


class Holder:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.holding, self.go = tmp_path / "holding", tmp_path / "go"
        self.holding.unlink(missing_ok=True)
        self.go.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(self.holding), str(self.go), *args],
                                     env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not self.holding.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"holder did not start: {self.proc.communicate()}")
            time.sleep(0.05)

    def release(self) -> tuple[int, str, str]:
        self.go.touch()
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A scored run (stand-in students) and its config file, for real `mira select` processes."""
    root = tmp_path_factory.mktemp("locked")
    corpus = build_corpus(root / "corpus")
    config = make_config(corpus, root / "run", engine=EngineConfig(workers=1))
    score_with_doubles(config)
    path = root / "config.yaml"
    path.write_text(dump_config(config))
    return path, RunDir(root / "run")


def _consistent_selection(run: RunDir, budget: float) -> int:
    """The select marker, summary.json and the files agree; returns the records kept."""
    marker = run.done("select")
    selection = current_selection(run)
    summary = json.loads((selection / "summary.json").read_text())
    rows = sum(len(p.read_text().splitlines()) for p in selection.glob("*/*.jsonl"))
    assert marker is not None and summary["budget"] == budget
    assert marker["counts"]["kept"] == summary["totals"]["kept"] == rows
    assert not [p for p in run.path("selection").iterdir() if p.name.startswith(".")]  # no half-built or old copy
    return rows


@pytest.mark.slow
def test_a_second_writer_refuses_at_once_naming_the_holder_and_the_run_stays_consistent(tmp_path, scored):
    config, run = scored
    holder = Holder(tmp_path, "select", str(config), "--set", "selection.budget=0.3")
    try:
        second = _mira("select", str(config), "--set", "selection.budget=0.6")
    finally:
        code, _, err = holder.release()
    assert second.returncode == EXIT_LOCKED, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {holder.proc.pid} (mira select" in lines[0] and "--wait" in lines[0]
    assert "--set selection.budget=..." in lines[0]  # values of --set (keys, URLs) are never recorded
    assert code == 0, err
    kept_small = _consistent_selection(run, 0.3)
    # Once the holder is done the other budget runs, and the run is again consistent.
    again = _mira("select", str(config), "--set", "selection.budget=0.6")
    assert again.returncode == 0, again.stderr
    assert _consistent_selection(run, 0.6) > kept_small


@pytest.mark.slow
def test_the_lock_of_a_sigkilled_writer_is_released(tmp_path, scored):
    config, run = scored
    holder = Holder(tmp_path, "select", str(config), "--set", "selection.budget=0.2")
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait(timeout=30)
    result = _mira("select", str(config), "--set", "selection.budget=0.25")
    assert result.returncode == 0, result.stderr
    _consistent_selection(run, 0.25)


@pytest.mark.slow
def test_wait_runs_after_the_holder_and_readers_never_block(tmp_path, scored):
    config, run = scored
    assert _mira("select", str(config), "--set", "selection.budget=0.4").returncode == 0
    holder = Holder(tmp_path, "report", str(config), "--set", "selection.budget=0.4")
    try:
        status = _mira("status", str(run.root), "--json")
        # select is done with this config: answered from its marker, without the lock.
        done = _mira("select", str(config), "--set", "selection.budget=0.4")
        waiter = subprocess.Popen([*MIRA, "select", str(config), "--wait", "--set", "selection.budget=0.5"],
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = ""
        while "in use" not in waiting and waiter.poll() is None:
            waiting = waiter.stderr.readline()  # the line it logs before it blocks
        assert waiter.poll() is None
    finally:
        holder.proc.kill()  # the report of this stand-in run is not the point; let the waiter go
        holder.proc.wait(timeout=30)
    out, err = waiter.communicate(timeout=120)
    assert status.returncode == 0 and json.loads(status.stdout)["stages"]["select"]["fingerprint"]
    assert done.returncode == 0 and "select: skipped (done)" in done.stdout
    assert "is in use by pid" in waiting and "waiting" in waiting
    assert waiter.returncode == 0, err
    _consistent_selection(run, 0.5)


def test_another_thread_of_the_same_process_is_refused_but_nesting_is_not(tmp_path):
    run = RunDir(tmp_path / "run")
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with writing(run):
                pass
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    with writing(run), writing(run):  # the pipeline holds it while each stage asks again
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RunLocked) and f"pid {os.getpid()}" in str(errors[0])
    with writing(run):  # released on the way out
        pass


@pytest.mark.slow
def test_compare_is_a_writer_too(tmp_path, scored):
    # Two comparisons on one run directory trained the same proxy runs twice and raced on the
    # selections, results and report they both write (seen on the demo-full run).
    config, run = scored
    holder = Holder(tmp_path, "select", str(config), "--set", "selection.budget=0.3")
    try:
        second = _mira("compare", str(config), "--set", "compare.methods=[{method: random, mode: source}]")
    finally:
        code, _, err = holder.release()
    assert second.returncode == EXIT_LOCKED, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and f"pid {holder.proc.pid} (mira select" in second.stderr
    assert code == 0, err
    assert not run.path("compare", "summary.json").exists()
    again = _mira("compare", str(config), "--set", "compare.methods=[{method: random, mode: source}]")
    assert again.returncode == 0, again.stderr
    assert run.path("compare", "summary.json").exists()
