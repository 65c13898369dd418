"""What an engine runs: a task is a tuple of picklable arguments; how many workers run them."""

from __future__ import annotations

import os
from typing import Any

from mira.core.config import EngineConfig

Task = tuple[Any, ...]


def worker_count(engine: EngineConfig, n_tasks: int | None = None) -> int:
    """How many workers the engine will use (never more than there are tasks)."""
    workers = engine.workers or os.cpu_count() or 1
    return max(1, min(workers, n_tasks)) if n_tasks is not None else workers
