"""The Python API: every CLI command is one call here, usable from a notebook."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, RunConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.core.stages import STAGES
from mira.pipeline.runner import StageOutcome, done_already, run_stage
from mira.run.config_file import load_config
from mira.run.context import StageContext
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)
__all__ = ["STAGES", "RunConfig", "build_demo_data", "compare", "compare_plan", "load_config", "open_run", "run_one",
           "run_pipeline", "status"]


def open_run(config: RunConfig) -> RunDir:
    return RunDir(config.resolved_run_dir())


def run_one(stage: str, config: RunConfig, force: bool = False,
            progress: ProgressFactory = null_progress, *, wait: bool = False) -> StageOutcome:
    """Run a single stage (skipped if already done with the same fingerprint, unless `force`).

    A stage that writes holds the run directory's lock; if another process holds it, this raises
    :class:`mira.run.lock.RunLocked` naming that process, or waits for it when `wait` is true.
    """
    return run_stage(stage, StageContext(config, open_run(config), force, progress, wait_for_lock=wait))


def run_pipeline(config: RunConfig, force: bool = False, until: str | None = None,
                 progress: ProgressFactory = null_progress,
                 on_stage: Callable[[StageOutcome], object] | None = None, *,
                 wait: bool = False) -> list[StageOutcome]:
    """Run every stage in order up to `until` (inclusive); finished stages are skipped.

    The run directory stays locked from the first stage to the last, so no other writer can
    change an artifact between two stages; a pipeline that is done already takes no lock.
    """
    from mira.run.lock import writing

    if until is not None and until not in STAGES:
        raise ConfigError(f"unknown stage {until!r}; stages are: {', '.join(STAGES)}")
    stages = STAGES[: STAGES.index(until) + 1] if until else STAGES
    outcomes: list[StageOutcome] = []
    if not force:
        for stage in stages:
            outcome = done_already(stage, StageContext(config, open_run(config)))
            if outcome is None:
                break
            outcomes.append(outcome)
        if len(outcomes) < len(stages):
            outcomes = []
    if outcomes:
        for outcome in outcomes:
            if on_stage:
                on_stage(outcome)
        return outcomes
    with writing(open_run(config), wait=wait):
        for stage in stages:
            outcome = run_one(stage, config, force, progress, wait=wait)
            outcomes.append(outcome)
            if on_stage:
                on_stage(outcome)
    return outcomes


def compare(config: RunConfig, progress: ProgressFactory = null_progress, proxy_api: Any = None,
            wait: bool = False) -> dict[str, Any]:
    """Every method of ``compare.methods`` side by side at one budget (no rescoring); optional proxy
    training. Writes ``compare/summary.json`` and rerenders the report; returns the summary.

    It writes selections, proxy results and the report, so it holds the run directory's lock like
    any stage: a second compare (or a stage) beside it is refused (:class:`mira.run.lock.RunLocked`),
    or waited for with `wait`."""
    from mira.evaluation.compare import compare as run_compare
    from mira.pipeline.replicates import add_replicates
    from mira.report import write_report
    from mira.run.lock import writing

    run = RunDir(config.resolved_run_dir())
    with writing(run, wait=wait):
        result = run_compare(config, progress, proxy_api)
        add_replicates(config, result, progress, proxy_api)  # compare.replicates > 1: MIRA on more label draws
        write_report(run)
        return result


def compare_plan(config: RunConfig) -> list[str]:
    """`mira compare --dry-run`: the selections it would build or reuse, the proxy training, and the
    annotation draws with the teacher requests they need (cached vs new). Runs nothing."""
    from mira.evaluation.compare import plan
    from mira.pipeline.replicates import plan as replicates_plan

    return plan(config) + replicates_plan(config)


def status(run_dir: str | Path, config: RunConfig | None = None) -> dict[str, Any]:
    """Which stages are done, with their counts, teacher usage and the named selections.

    Every file is read through the artifact catalogue (:mod:`mira.artifacts`): a damaged done
    marker is "not done", as for the runner; an unreadable usage file is reported as such. Each
    stage's ``state`` is the dry run's verdict under `config` (default: the run's saved
    ``config.yaml``): "done", "stale" (it would rerun: its inputs or settings changed, or an upstream
    stage reruns; ``reasons`` say why), "may be stale" or "not done". A folder that is not a run
    has ``is_run`` false and nothing else."""
    from mira.artifacts import CATALOGUE, ArtifactInvalid, ArtifactMissing
    from mira.run.artifact import dump
    from mira.selection.named import list_selections

    run = RunDir(Path(run_dir))
    if not (run.root.is_dir() and run.is_mira_run()):
        return {"run_dir": str(run.root), "exists": run.root.exists(), "is_run": False, "stages": {},
                "teacher_usage": {}, "selections": []}
    stages = {}
    for stage in STAGES:
        marker = CATALOGUE["done"].read(run, stage=stage)
        if marker is not None and run.done(stage) is None:  # an output it vouches for is gone: not done
            marker = None
        stages[stage] = dump(marker, as_read=True) if marker else {"stage": stage, "done": False}
    usage: dict[str, Any] = {}
    for keys in CATALOGUE["usage"].instances(run):
        try:
            usage[keys["stage"]] = dump(CATALOGUE["usage"].load(run, **keys), as_read=True)
        except (ArtifactMissing, ArtifactInvalid):
            usage[keys["stage"]] = {"error": "unreadable usage file"}
    selections = [{k: v for k, v in s.items() if k != "mtime"} for s in list_selections(run)]
    verdicts, unknown = _stage_verdicts(run, config)
    for stage, entry in stages.items():
        state, reasons = verdicts.get(stage, ("unknown", []))
        done = bool(entry.get("fingerprint"))
        if not done:
            state, reasons = "not done", []
        entry.update(state={"runs": "stale", "waits": "stale", "may run": "may be stale"}.get(state, state),
                     reasons=reasons)
    return {"run_dir": str(run.root), "exists": True, "is_run": True, "stages": stages, "teacher_usage": usage,
            "selections": selections, **({"states_unknown": unknown} if unknown else {})}


def _stage_verdicts(run: RunDir, config: RunConfig | None) -> tuple[dict[str, tuple[str, list[str]]], str | None]:
    """The dry run's state and reasons per stage for the run at `run` (under `config`, else the run's
    saved config); ({}, why) when they cannot be known."""
    from mira.pipeline.plan import stage_states

    try:
        config = config if config is not None else load_config(run.config_path)
        if config.resolved_run_dir().resolve() != run.root.resolve():  # the run was moved since
            config = config.model_copy(update={"run_dir": str(run.root.resolve())})
        plans = stage_states(config, list(STAGES))
    except Exception as exc:  # noqa: BLE001 - status reports what it can, never fails on a stale check
        log.info("status: cannot tell whether stages are stale: %s", exc)
        return {}, f"cannot tell which stages are stale ({type(exc).__name__}: {exc})"
    return {p.stage: (p.state, p.reasons) for p in plans}, None


def build_demo_data(out_dir: str | Path = "demo-data", seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """Build the real heterogeneous demo corpus from files on this machine."""
    from mira.demo.corpus import build

    return build(Path(out_dir), seed=seed, scale=scale)
