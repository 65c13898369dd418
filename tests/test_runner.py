"""The runner's bookkeeping around one stage: what it writes before and after the stage runs."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from mira.core.config import ConfigError, RunConfig
from mira.pipeline import runner
from mira.run.context import StageContext
from mira.run.rundir import RunDir


def _stage(calls: list[str], refuse_in: str, outputs: list[str] | None = None) -> types.SimpleNamespace:
    """A stand-in stage module that refuses its config in `check` or in `run` (as stages did before
    they had a check), recording what the runner called."""

    def check(ctx: StageContext) -> None:
        calls.append("check")
        if refuse_in == "check":
            raise ConfigError("refused")

    def run(ctx: StageContext) -> dict:
        calls.append("run")
        if refuse_in == "run":
            raise ConfigError("refused")
        for path in outputs or []:
            ctx.run.path(path).parent.mkdir(parents=True, exist_ok=True)
            ctx.run.path(path).write_text("out")
        return {"n": 1}

    module = types.SimpleNamespace(check=check, run=run, fingerprint=lambda ctx: ctx.config.selection.method)
    if outputs is not None:
        module.outputs = lambda ctx: list(outputs)
    return module


def test_a_refused_config_leaves_config_yaml_and_the_done_marker_as_they_were(tmp_path: Path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "stage_module", lambda stage: _stage(calls, refuse_in=""))
    run = RunDir(tmp_path / "run")
    done = RunConfig(run_dir=str(run.root))
    assert not runner.run_stage("select", StageContext(done, run)).skipped
    before = {p: run.path(p).read_bytes() for p in ("_done/select.json", "config.yaml")}
    monkeypatch.setattr(runner, "stage_module", lambda stage: _stage(calls, refuse_in="check"))
    calls.clear()
    refused = done.model_copy(update={"selection": done.selection.model_copy(update={"method": "length"})})
    with pytest.raises(ConfigError, match="refused"):
        runner.run_stage("select", StageContext(refused, run))
    assert calls == ["check"]  # refused before the stage ran or anything was written
    assert {p: run.path(p).read_bytes() for p in before} == before
    assert runner.run_stage("select", StageContext(done, run)).skipped


def test_a_stage_is_done_only_while_the_outputs_its_marker_vouches_for_exist(tmp_path: Path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(runner, "stage_module", lambda stage: _stage(calls, "", outputs=["out/a.json"]))
    run = RunDir(tmp_path / "run")
    ctx = StageContext(RunConfig(run_dir=str(run.root)), run)
    runner.run_stage("select", ctx)
    assert run.done("select")["outputs"] == ["out/a.json"]
    assert runner.run_stage("select", ctx).skipped
    run.path("out/a.json").unlink()
    assert run.done("select") is None and runner.done_already("select", ctx) is None
    calls.clear()
    assert not runner.run_stage("select", ctx).skipped and calls == ["check", "run"]


def test_a_stage_that_does_not_write_the_outputs_it_declares_is_an_error(tmp_path: Path, monkeypatch):
    # Its marker could never hold: the stage would rerun forever without saying why.
    module = _stage([], "", outputs=[])
    module.outputs = lambda ctx: ["never/written.json"]
    monkeypatch.setattr(runner, "stage_module", lambda stage: module)
    run = RunDir(tmp_path / "run")
    with pytest.raises(RuntimeError, match="finished without its outputs: never/written.json"):
        runner.run_stage("select", StageContext(RunConfig(run_dir=str(run.root)), run))
    assert run.done("select") is None
