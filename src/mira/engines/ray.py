"""The Ray engine: the same shard function, run by a pool of Ray Data actors.

Ray is optional (``pip install mira[ray]``) and imported only here. Without
``engine.address`` a local Ray is started with ``engine.workers`` CPUs (default: all) and
shut down afterwards; with an address the existing cluster is used and left running.

The shard list becomes a Ray dataset of task indices; ``map_batches`` with an actor class calls
the shard function one shard at a time. Each actor is a long-lived process, so the function's
per-process model cache loads each model once per actor. On a single machine at most
``num_cpus - 1`` actors are started: Ray Data needs a free CPU for its own tasks, and with every
CPU held by an actor it backpressures forever.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mira.core.config import ConfigError, EngineConfig
from mira.engines.tasks import Task

log = logging.getLogger(__name__)


class _ShardActor:
    """Ray Data actor: runs `fn(*tasks[i])` for each index of its batch."""

    def __init__(self, fn: Callable[..., Any], tasks: Sequence[Task]) -> None:
        self.fn = fn
        self.tasks = tasks

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        indices = [int(i) for i in batch["index"]]
        results = [json.dumps(self.fn(*self.tasks[i]), sort_keys=True, default=str) for i in indices]
        return {"index": indices, "result": results}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("engine.kind is 'ray' but Ray is not installed: pip install mira[ray]") from None
    return ray


def map_ray(engine: EngineConfig, fn: Callable[..., Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
    """Yield (task index, result) for every task; results must be JSON-serializable dicts."""
    ray = _import_ray()
    started_here = False
    if not ray.is_initialized():
        if engine.address:
            ray.init(address=engine.address, log_to_driver=False)
        else:
            ray.init(num_cpus=engine.workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        started_here = True
    try:
        import ray.data

        cpus = int(ray.cluster_resources().get("CPU", 1))
        limit = engine.workers or cpus
        actors = max(1, min(len(tasks), limit, cpus - 1 if cpus > 1 else 1))
        log.info("ray engine: %d shards on %d actors (%d CPUs)", len(tasks), actors, cpus)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items([{"index": i} for i in range(len(tasks))],
                                      override_num_blocks=min(len(tasks), 200))
        results = dataset.map_batches(_ShardActor, fn_constructor_args=(fn, list(tasks)), batch_size=1,
                                      concurrency=actors, num_cpus=1)
        for row in results.iter_rows():
            yield int(row["index"]), json.loads(row["result"])
    finally:
        if started_here:
            ray.shutdown()
