"""Stage bookkeeping shared by every stage: skip-if-done, force, done markers, the write lock, progress.

Each stage module in :mod:`mira.stages` exposes ``fingerprint(ctx) -> str`` (a hash of the config
sections it reads and of the fingerprints of the stages it builds on) and ``run(ctx) -> dict``
(its counts). :func:`run_stage` does the rest, so no stage repeats the bookkeeping.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from mira.core.config import RunConfig
from mira.core.errors import StageNotReady
from mira.core.stages import STAGES
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.teacher.speed import read_usage

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    stage: str
    skipped: bool
    counts: dict[str, Any]
    seconds: float
    notes: list[str]


class StageModule(Protocol):
    """What every module in :mod:`mira.stages` defines. Optional: ``plan(config, run) -> list[str]``
    (dry-run lines), ``reads(ctx)`` (digests of what it reads), ``check(ctx)`` (refuses a setting
    before anything is written) and ``outputs(ctx) -> list[str]`` (paths, relative to the run
    directory, its done marker vouches for: the stage is not done while one is missing)."""

    def fingerprint(self, ctx: StageContext) -> str: ...
    def run(self, ctx: StageContext) -> dict[str, Any]: ...


if TYPE_CHECKING:  # lets mypy check each stage module against StageModule (never imported at run time here)
    from mira.stages import annotate, discover, distill, group, ingest, report, score, select

    _STAGE_MODULES: tuple[StageModule, ...] = (ingest, group, discover, annotate, distill, score, select, report)


def stage_module(stage: str) -> StageModule:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are: {', '.join(STAGES)}")
    # import_module returns a plain ModuleType; _STAGE_MODULES above is where the shape is checked.
    return cast(StageModule, importlib.import_module(f"mira.stages.{stage}"))


def stage_fingerprint(stage: str, ctx: StageContext) -> str:
    """The one fingerprint of a stage: what the runner compares with its done marker, and what the
    dry run (:mod:`mira.pipeline.plan`) predicts, so the two never disagree on whether a stage is done."""
    return stage_module(stage).fingerprint(ctx)


def done_already(stage: str, ctx: StageContext) -> StageOutcome | None:
    """The skipped outcome when the stage is done with the current fingerprint; reads only, so a
    finished stage is answered without waiting for (or taking) the run directory's lock."""
    if ctx.force or not ctx.run.root.is_dir():
        return None
    try:
        stage_fp = stage_fingerprint(stage, ctx)
    except StageNotReady:
        return None
    marker = ctx.run.done(stage)
    if marker and marker.get("fingerprint") == stage_fp:
        log.info("%s: done already (fingerprint %s), skipping", stage, stage_fp)
        return StageOutcome(stage, True, marker.get("counts", {}), 0.0, [])
    return None


def run_stage(stage: str, ctx: StageContext) -> StageOutcome:
    """Run one stage unless its done marker already holds the current fingerprint."""
    from mira.run.lock import writing

    outcome = done_already(stage, ctx)
    if outcome is not None:
        return outcome
    with writing(ctx.run, wait=ctx.wait_for_lock):
        # Everything that can refuse the config comes before the first write: a refused setting
        # leaves config.yaml and the stage's done marker as they were.
        module = stage_module(stage)
        if hasattr(module, "check"):
            module.check(ctx)
        stage_fp = stage_fingerprint(stage, ctx)
        marker = ctx.run.done(stage)
        # Checked again under the lock: a writer we waited for may have finished this stage.
        if not ctx.force and marker and marker.get("fingerprint") == stage_fp:
            return StageOutcome(stage, True, marker.get("counts", {}), 0.0, [])
        ctx.run.save_config(ctx.config)
        ctx.run.clear_done(stage)
        sessions = _teacher_sessions(ctx.run, stage)
        started = time.time()
        counts = stage_module(stage).run(ctx) or {}
        ctx.run.mark_done(stage, stage_fp, counts, started, **marker_record(stage, ctx, sessions))
    return StageOutcome(stage, False, counts, time.time() - started, list(ctx.notes))


def marker_record(stage: str, ctx: StageContext, sessions_before: int) -> dict[str, Any]:
    """What a done marker keeps besides fingerprint, counts and seconds, for the dry run to say
    why a stage would rerun and how long it takes: the config it ran under (secrets masked), the
    fingerprints of the stages before it, the digests of the artifacts it declares it reads
    (``reads(ctx)``, optional), the outputs it vouches for (``outputs(ctx)``, optional; the marker
    counts only while they exist, :meth:`mira.run.rundir.RunDir.done`), and the teacher work of its
    session (new answers, cache hits)."""
    record: dict[str, Any] = {"config": config_record(ctx.config),
                              "upstream": {s: ctx.run.stage_fingerprint(s) for s in STAGES[:STAGES.index(stage)]}}
    module = stage_module(stage)
    if hasattr(module, "reads"):
        record["reads"] = module.reads(ctx)
    if hasattr(module, "outputs"):
        record["outputs"] = module.outputs(ctx)
        missing = [path for path in record["outputs"] if not ctx.run.path(path).exists()]
        if missing:  # a marker that can never hold would rerun the stage forever
            raise RuntimeError(f"stage {stage} finished without its outputs: {', '.join(missing)}")
    usage = read_usage(ctx.run, stage)
    if usage and int(usage.get("sessions", 0)) > sessions_before:
        last = usage.get("last", {})
        record["teacher"] = {k: last.get(k) for k in ("requests", "answered", "cache_hits", "failures",
                                                      "prompt_tokens", "completion_tokens", "latency_s")}
    return record


def config_record(config: RunConfig) -> dict[str, Any]:
    """The resolved config as JSON-safe data, with the secrets of ``teacher.base_url`` masked as in
    the saved ``config.yaml`` (api keys come from the environment and are never in the config)."""
    from mira.core.secrets import redact_url

    data = config.model_dump(mode="json")
    data["teacher"]["base_url"] = redact_url(data["teacher"].get("base_url"))
    return data


def _teacher_sessions(run: RunDir, stage: str) -> int:
    usage = read_usage(run, stage)
    return int(usage.get("sessions", 0)) if usage else 0
