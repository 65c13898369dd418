"""The Ray engine: the same shard function, run by a pool of Ray actors spread over the cluster.

Ray is optional (``pip install mira[ray]``) and imported only here. Without ``engine.address`` a
local Ray is started with ``engine.workers`` CPUs (default: all) and shut down afterwards; with an
address the existing cluster is joined (and left running).

One actor per CPU of the cluster (at most ``engine.workers``, at most one per task), placed with
the SPREAD strategy so that every node gets actors. Each actor is a long-lived process, so the shard
function's per-process model cache loads each model once per actor. Every actor is up before the
first shard goes out, and each holds at most two shards (one running, one queued), so a node whose
actor started late still gets work and a million-shard list is never pickled up front.

Actors that score with a GPU model ask for ``gpus`` GPUs each. Ray leaves an actor whose request no
node can meet pending forever, so a request the cluster cannot meet is a one-line ConfigError before
anything is submitted, and the number of actors is capped by the GPUs there are.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mira.core.config import ConfigError, EngineConfig
from mira.engines.tasks import Task

log = logging.getLogger(__name__)
TASKS_PER_ACTOR = 2  # in flight: one running, one queued behind it


class ShardActor:
    """Ray actor: runs `fn(*task)`; results go back as JSON, as the engine's contract says."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def node(self) -> str:
        """The id of the Ray node this actor runs on (the engine reports where shards ran)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(self, task: Task) -> str:
        return json.dumps(self.fn(*task), sort_keys=True, default=str)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("engine.kind is 'ray' but Ray is not installed: pip install mira[ray]") from None
    return ray


def _connect(ray: Any, engine: EngineConfig) -> bool:
    """Join or start Ray unless this process already did; True if this call did (and must shut down)."""
    if ray.is_initialized():
        return False
    if engine.address:
        try:
            ray.init(address=engine.address, log_to_driver=False)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at engine.address={engine.address!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    else:
        ray.init(num_cpus=engine.workers or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    return True


def actor_count(engine: EngineConfig, resources: dict[str, float], n_tasks: int, gpus: float) -> int:
    """How many actors the cluster's `resources` hold (one CPU each, `gpus` GPUs each); a
    ConfigError if it holds none, since Ray would wait forever for room to place one."""
    cpus = int(resources.get("CPU", 0))
    if cpus < 1:
        raise ConfigError(f"the Ray cluster has no CPU to run a worker on (resources: {_describe(resources)})")
    limit = min(n_tasks, engine.workers or cpus, cpus)
    if gpus > 0:
        have = float(resources.get("GPU", 0.0))
        if have < gpus:
            raise ConfigError(f"engine.gpus_per_worker is {gpus:g} but the Ray cluster has {have:g} GPUs "
                              f"(resources: {_describe(resources)}); set engine.gpus_per_worker=0 to score "
                              "on CPUs, or add GPU nodes")
        limit = min(limit, math.floor(have / gpus + 1e-9))
    return max(1, limit)


def _describe(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in sorted(resources.items()) if k in ("CPU", "GPU") or not k.startswith(("node:", "memory",
                                                                                                   "object_store"))}
    return ", ".join(f"{k} {v:g}" for k, v in shown.items()) or "none"


def map_ray(engine: EngineConfig, fn: Callable[..., Any], tasks: Sequence[Task],
            gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
    """Yield (task index, result) for every task; results must be JSON-serializable dicts."""
    ray = _import_ray()
    started_here = _connect(ray, engine)
    actors: list[Any] = []
    try:
        n = actor_count(engine, ray.cluster_resources(), len(tasks), gpus)
        remote = ray.remote(ShardActor).options(num_cpus=1, num_gpus=gpus, scheduling_strategy="SPREAD",
                                                max_restarts=0)
        actors = [remote.remote(fn) for _ in range(n)]
        nodes = ray.get([actor.node.remote() for actor in actors])  # all up before the first shard
        log.info("ray engine: %d shards on %d actors (%g GPUs each) on %d nodes", len(tasks), n, gpus,
                 len(set(nodes)))
        yield from _run(ray, actors, nodes, tasks)
    finally:
        for actor in actors:  # a driver that outlives this call (ray.init by the caller) must not keep them
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _run(ray: Any, actors: list[Any], nodes: list[str], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
    pending: dict[Any, tuple[int, int]] = {}  # result ref -> (task index, actor index)
    next_task = 0
    per_node: Counter[str] = Counter()

    def submit(actor: int) -> None:
        nonlocal next_task
        if next_task < len(tasks):
            pending[actors[actor].run.remote(tasks[next_task])] = (next_task, actor)
            next_task += 1

    for actor in range(len(actors)):
        for _ in range(TASKS_PER_ACTOR):
            submit(actor)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            index, actor = pending.pop(ref)
            result = json.loads(ray.get(ref))  # a task's exception is raised here
            per_node[nodes[actor]] += 1
            submit(actor)
            yield index, result
    log.info("ray engine: shards per node: %s",
             ", ".join(f"{node[:12]} {count}" for node, count in sorted(per_node.items())))
