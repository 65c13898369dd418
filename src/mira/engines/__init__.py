"""Engines run one picklable function over many shards: a local process pool or Ray.

Both engines call the *same* top-level function with the same arguments, so their outputs are
identical; an engine only decides where each call runs. Results come back as ``(index, result)``
pairs in completion order; callers that need input order sort by index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mira.core.config import EngineConfig
from mira.engines.tasks import Task, worker_count

__all__ = ["Task", "map_tasks", "start_workers_early", "worker_count"]


def map_tasks(engine: EngineConfig, fn: Callable[..., Any], tasks: Sequence[Task], *,
              gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*task)`` for every task on the configured engine; yield ``(task index, result)``.

    `gpus`: what each Ray worker asks the cluster for (a GPU model's workers); the local engine's
    workers use whatever device the machine has, so it ignores it.
    """
    if not tasks:
        return iter(())
    if engine.kind == "ray":
        from mira.engines.ray import map_ray

        return map_ray(engine, fn, tasks, gpus)
    from mira.engines.local import map_local

    return map_local(engine, fn, tasks)


def start_workers_early(engine: EngineConfig, n_tasks: int) -> None:
    """Let the engine start what its workers come from before the driver's own set-up (the local
    engine's fork server, which imports the worker modules meanwhile), if `n_tasks` will need more
    than one worker; nothing for Ray."""
    if engine.kind == "local":
        from mira.engines.local import start_fork_server

        start_fork_server(engine, n_tasks)
