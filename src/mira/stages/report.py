"""Report: write ``report/index.html``, a self-contained page explaining the run.

The report reads whatever the run holds and never requires an upstream stage: a partial run gets
a partial report, with a "stage not run yet" box where a stage is missing. Rendering is cheap, so
the fingerprint follows every upstream done marker (and the teacher usage files, which change
when a stage stops early without a marker): any upstream change re-renders it.
"""

from __future__ import annotations

from typing import Any

from mira.core.config import RunConfig
from mira.core.hashing import fingerprint as make_fingerprint
from mira.core.stages import STAGES
from mira.io.files import hash_files
from mira.run.context import StageContext
from mira.run.rundir import RunDir

VERSION = "report-v1"


def fingerprint(ctx: StageContext) -> str:
    upstream = {stage: ctx.run.stage_fingerprint(stage) for stage in STAGES if stage != "report"}
    usage = hash_files(sorted(ctx.run.usage_dir.glob("*.json"))) if ctx.run.usage_dir.exists() else None
    return make_fingerprint(VERSION, ctx.config.fingerprint(), upstream, usage)


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.report import write_report

    path, states = write_report(ctx.run)
    empty = [name for name, state in states.items() if state == "empty"]
    failed = [name for name, state in states.items() if state == "error"]
    if empty:
        ctx.notes.append(f"sections waiting for their stage: {', '.join(empty)}")
    if failed:
        ctx.notes.append(f"sections that could not be rendered (see the page): {', '.join(failed)}")
    ctx.notes.append(f"report written to {path}")
    return {"sections": len(states), "filled": len(states) - len(empty) - len(failed), "not_run": len(empty),
            "errors": len(failed)}


def plan(config: RunConfig, run: RunDir) -> list[str]:
    done = [stage for stage in STAGES if stage != "report" and run.done(stage)]
    return [f"render {run.path('report', 'index.html')} from {len(done)} finished stage(s); no teacher calls"]
