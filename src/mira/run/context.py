"""What a stage is handed: the config, the run directory, force, progress and notes for the user."""

from __future__ import annotations

from dataclasses import dataclass, field

from mira.core.config import RunConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.run.rundir import RunDir


@dataclass
class StageContext:
    config: RunConfig
    run: RunDir
    force: bool = False
    progress: ProgressFactory = null_progress
    # Free-form notes a stage wants shown to the user after it finishes (one line each).
    notes: list[str] = field(default_factory=list)
    # Another writer holds the run directory: wait for it (True) or stop at once (mira.run.lock).
    wait_for_lock: bool = False
