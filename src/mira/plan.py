"""Dry-run plans: what each stage would do and cost, without doing it.

A stage module may define ``plan(config, run) -> list[str]``; stages without one get a line
saying whether they are done already.
"""

from __future__ import annotations

from mira.config import RunConfig
from mira.rundir import RunDir
from mira.stage import stage_module


def plan(config: RunConfig, stages: list[str]) -> list[str]:
    run = RunDir(config.resolved_run_dir())
    lines = [f"run directory: {run.root}", f"sources: {len(config.sources)}"]
    for stage in stages:
        module = stage_module(stage)
        done = run.done(stage)
        state = "done" if done else "to do"
        if hasattr(module, "plan"):
            details = module.plan(config, run)
            lines.append(f"{stage} ({state}):")
            lines.extend(f"  {line}" for line in details)
        else:
            lines.append(f"{stage} ({state})")
    return lines
