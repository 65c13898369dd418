"""Dry-run plans: which stages will run and why, what they cost, without doing anything.

Whether a stage runs is decided by the runner's own function, :func:`mira.pipeline.runner.stage_fingerprint`,
evaluated against a view of the run directory in which the stages this plan will run already
carry their new fingerprint (or, where it cannot be known before they run, a placeholder):

- *done*: the fingerprint equals the done marker's and nothing it reads is rewritten first;
- *runs*: the fingerprint differs. The reason is named: a setting (each changed setting is put
  back alone and kept as a reason only if that changes the fingerprint), an upstream stage that
  reruns, an artifact it declares it reads (``reads(ctx)``), or "not run yet";
- *may run*: its fingerprint holds, but it reads what an upstream stage that reruns writes (annotate
  reads the rubrics discover rewrites; score the students' train keys): it reruns only if that
  output changes. The estimate counts it, so the time is an upper bound.

Time comes from one estimator, :func:`estimate`, fed by measurements of this run: a teacher stage
costs its new (uncached) requests times the seconds per new answer its last run took (done marker
``seconds`` and ``teacher.answered``, else ``usage/<stage>.json``); any other stage what its last
run took. Only where nothing was measured does it fall back to the model's speed constants, and it
says so. A stage may define ``plan(config, run) -> list[str]`` (detail lines) and
``teacher_work(config, run, assume_new) -> dict`` (requests, cached, token estimates), in its
module or, to keep that module small, in ``mira.stages.<stage>_plan`` (looked up first).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

from mira.core.config import RunConfig
from mira.core.errors import StageNotReady
from mira.core.stages import STAGES
from mira.pipeline.runner import config_record, stage_fingerprint, stage_module
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.teacher.speed import Estimate, teacher_estimate

log = logging.getLogger(__name__)

DONE, RUNS, MAY_RUN, WAITS = "done", "runs", "may run", "waits"


@dataclass
class StagePlan:
    stage: str
    state: str
    reasons: list[str]
    estimate: Estimate | None = None
    details: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # upstream stages it reads that this plan reruns first

    @property
    def will_run(self) -> bool:
        return self.state in (RUNS, MAY_RUN)


class _PlannedRun(RunDir):
    """The run directory as a stage of the plan will see it: stages that run before it carry
    their predicted fingerprint (a placeholder where unknown); every marker asked for is noted."""

    def __init__(self, root: Any, pending: dict[str, str], queried: set[str]) -> None:
        super().__init__(root)
        self.pending, self.queried = pending, queried

    def done(self, stage: str) -> dict[str, Any] | None:
        self.queried.add(stage)
        if stage in self.pending:
            return {"stage": stage, "fingerprint": self.pending[stage]}
        return super().done(stage)


def explain(config: RunConfig, stages: list[str], force: bool = False) -> list[StagePlan]:
    """Per stage, whether it will run and why, with a time estimate for the ones that will."""
    plans = stage_states(config, stages, force, details=True)
    run = RunDir(config.resolved_run_dir())
    for item in plans:
        if item.will_run:
            # What a rerun upstream rewrites first (rubrics, groups) is not in the cache yet.
            item.estimate = estimate(item.stage, config, run, assume_new=bool(item.moved))
    return plans


def stage_states(config: RunConfig, stages: list[str], force: bool = False, *,
                 details: bool = False) -> list[StagePlan]:
    """Per stage, whether it will run and why (the dry run's verdict, which `mira status` shows),
    without time estimates and, unless `details`, without the stages' detail lines."""
    run = RunDir(config.resolved_run_dir())
    pending: dict[str, str] = {}  # stage -> its fingerprint after this plan runs it (or a placeholder)
    states: dict[str, str] = {}
    plans = []
    for stage in stages:
        item = _explain_stage(stage, config, run, pending, states, force, details)
        states[stage] = item.state
        plans.append(item)
    return plans


def _explain_stage(stage: str, config: RunConfig, run: RunDir, pending: dict[str, str],
                   states: dict[str, str], force: bool, with_details: bool) -> StagePlan:
    marker = run.done(stage)
    queried: set[str] = set()
    try:
        planned = stage_fingerprint(stage, StageContext(config, _PlannedRun(run.root, pending, queried)))
    except StageNotReady as exc:
        return StagePlan(stage, WAITS, [str(exc)])
    moved = sorted(queried & set(pending), key=STAGES.index)
    if force:
        state, reasons = RUNS, ["--force"]
    elif marker is None:
        state, reasons = RUNS, ["not run yet"]
    elif planned == marker.get("fingerprint"):
        if moved:
            state = MAY_RUN
            reasons = [f"reads what {', '.join(moved)} rewrites: reruns only if that output changes"]
        else:
            state, reasons = DONE, []
    else:
        own = _own_changes(stage, config, run, marker, pending, planned)
        certain = [u for u in moved if states.get(u) == RUNS]
        # An upstream stage rerun since and rerunning again now is named once, as rerunning.
        own = [r for r in own if r not in {f"upstream stage {u} was rerun since" for u in certain}]
        reasons = own + [f"upstream stage {u} reruns" for u in certain]
        if own or certain or not moved:
            state = RUNS
            reasons = reasons or ["its inputs changed since it ran (input files, an artifact, or a newer mira)"]
        else:
            state = MAY_RUN
            reasons = [f"reads what {', '.join(moved)} rewrites: reruns only if that output changes"]
    if state in (RUNS, MAY_RUN):
        # Exact when nothing it reads is rewritten first; otherwise known only after it runs.
        pending[stage] = planned if state == RUNS and not moved and not force else f"<{stage} reruns>"
    details = []
    module = dry_run_module(stage)
    if with_details and state != DONE and hasattr(module, "plan"):
        details = module.plan(config, run)
    return StagePlan(stage, state, reasons, details=details, moved=moved)


def dry_run_module(stage: str) -> ModuleType:
    """The module holding `stage`'s dry-run helpers: ``mira.stages.<stage>_plan`` if the stage keeps
    them apart, else the stage module itself."""
    module = stage_module(stage)  # also rejects an unknown stage name
    name = f"mira.stages.{stage}_plan"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the helpers module exists but something it imports is missing
            raise
    return cast(ModuleType, module)


def _own_changes(stage: str, config: RunConfig, run: RunDir, marker: dict[str, Any],
                 pending: dict[str, str], planned: str) -> list[str]:
    """Why the stage's own inputs differ from its done marker's: settings, artifacts, upstream reruns."""
    reads: set[str] = set()
    try:
        current = stage_fingerprint(stage, StageContext(config, _PlannedRun(run.root, {}, reads)))
    except StageNotReady:
        return []
    if current == marker.get("fingerprint"):
        return []  # the difference comes from stages this plan reruns first
    reasons = _changed_settings(stage, config, run, marker, pending, planned)
    recorded = marker.get("reads") or {}
    module = stage_module(stage)
    if recorded and hasattr(module, "reads"):
        now = module.reads(StageContext(config, run))
        kind = "input" if stage == STAGES[0] else "upstream artifact"  # the first stage reads the sources
        reasons += [f"{kind} changed: {name}" for name in sorted(now) if now[name] != recorded.get(name)]
    for name, fp in (marker.get("upstream") or {}).items():
        if name in reads and fp is not None and run.stage_fingerprint(name) not in (fp, None):
            reasons.append(f"upstream stage {name} was rerun since")
    return reasons


def _changed_settings(stage: str, config: RunConfig, run: RunDir, marker: dict[str, Any],
                      pending: dict[str, str], planned: str) -> list[str]:
    """The settings that changed since the stage ran and that change its fingerprint, each tested
    alone: put back to its old value, does the fingerprint move?"""
    old = marker.get("config") or _saved_config(run)
    if not old:
        return []
    # Compared as shown (secrets masked, as the marker keeps them); tested on the real settings.
    shown, plain = config_record(config), config.model_dump(mode="json")
    reasons = []
    for path, before, after in _differences(old, shown):
        changed = _with(plain, path, before)
        try:
            reverted = RunConfig.model_validate(changed)
            fp = stage_fingerprint(stage, StageContext(reverted, _PlannedRun(run.root, dict(pending), set())))
        except Exception as exc:  # a setting an older mira had, or that no longer validates alone
            log.debug("dry run: cannot test %s alone: %s", ".".join(path), exc)
            continue
        if fp != planned:
            reasons.append(f"config changed: {'.'.join(path)} ({_short(before)} -> {_short(after)})")
    return reasons


def _saved_config(run: RunDir) -> dict[str, Any] | None:
    """The config the run's last stage ran under (``config.yaml``), for markers of an older mira."""
    import yaml

    try:
        data = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _differences(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(new) + [k for k in old if k not in new]:
            if key in new and key in old:
                out += _differences(old[key], new[key], (*path, key))
        return out
    return [] if old == new else [(path, old, new)]


def _with(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- time -----------------------------------------------------------------------------------------

def estimate(stage: str, config: RunConfig, run: RunDir, assume_new: bool) -> Estimate:
    """The one time estimator: measured speeds of this run first, labelled constants otherwise."""
    module = dry_run_module(stage)
    marker = run.done(stage) or {}
    if hasattr(module, "teacher_work"):
        return teacher_estimate(config, run, stage, module.teacher_work(config, run, assume_new))
    if marker.get("seconds") is not None:
        return Estimate(float(marker["seconds"]), "measured: as its last run")
    return Estimate(None, "not measured yet")


# --- lines ----------------------------------------------------------------------------------------

def plan(config: RunConfig, stages: list[str], force: bool = False) -> list[str]:
    """The dry run as text: per stage its state, why, what it will do and how long it takes."""
    run = RunDir(config.resolved_run_dir())
    lines = [f"run directory: {run.root}", f"sources: {len(config.sources)}"]
    plans = explain(config, stages, force)
    for item in plans:
        why = f": {'; '.join(item.reasons)}" if item.reasons else ""
        lines.append(f"{item.stage} ({item.state}){why}")
        lines.extend(f"  {line}" for line in item.details)
        if item.estimate is not None:
            lines.append(f"  time: {_minutes(item.estimate.seconds)} ({item.estimate.basis})")
            if item.estimate.tokens is not None:
                lines.append(f"  {_tokens(item.estimate)}")
    lines.append(_total(plans))
    return lines


def _total(plans: list[StagePlan]) -> str:
    running = [p for p in plans if p.will_run]
    if not running:
        return "nothing to run: every stage is done"
    known = [p.estimate.seconds for p in running if p.estimate and p.estimate.seconds is not None]
    unknown = [p.stage for p in running if not p.estimate or p.estimate.seconds is None]
    text = f"will run: {', '.join(p.stage for p in running)}; time: "
    text += f"about {_minutes(sum(known))}" if known else "unknown"
    if unknown:
        text += f"{' plus' if known else ''} {', '.join(unknown)} (not measured yet)"
    costs = [p.estimate.cost for p in running if p.estimate and p.estimate.cost is not None]
    if costs:
        text += f"; teacher cost about {_money(sum(costs))}"
    if any(p.state == MAY_RUN for p in running):
        text += "; counts the stages that may run"
    return text


def _tokens(estimate: Estimate) -> str:
    """The new requests' teacher tokens and, with teacher.price_per_mtok set, their price."""
    prompt, output = estimate.tokens or (0, 0)
    text = f"teacher tokens: ~{prompt:,} prompt + ~{output:,} output (new requests only)"
    if estimate.cost is not None:
        text += f"; cost about {_money(estimate.cost)} at teacher.price_per_mtok"
    return text


def _money(value: float) -> str:
    return f"{value:,.2f}" if value >= 0.01 or value == 0 else f"{value:.4f}"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
