"""The local engine: a process pool over shards.

Workers are started with ``spawn`` (or ``forkserver``), never ``fork``: a forked child would
inherit the parent's threads (tokenizer, BLAS, torch) in whatever state they were, which can
deadlock. So the function and its arguments must be picklable and importable by name. Each
worker keeps its models in a per-process cache, so a model is loaded once per worker, not once
per shard. With one worker the tasks run in this process (no start-up cost, same results).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from mira.config import EngineConfig
from mira.engines import Task, worker_count


def map_local(engine: EngineConfig, fn: Callable[..., Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
    workers = worker_count(engine, len(tasks))
    if workers == 1:
        for index, task in enumerate(tasks):
            yield index, fn(*task)
        return
    context = multiprocessing.get_context(engine.start_method)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        # Keep a bounded number of tasks in flight so the parent never pickles the whole list up
        # front (a million-shard corpus would otherwise sit in the pool's queue).
        pending: dict[Any, int] = {}
        next_task = 0
        while next_task < len(tasks) or pending:
            while next_task < len(tasks) and len(pending) < 2 * workers:
                pending[pool.submit(fn, *tasks[next_task])] = next_task
                next_task += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=pending.__getitem__):
                index = pending.pop(future)
                yield index, future.result()
    finally:
        # On an error (or a consumer that stops early) do not start the shards still queued.
        pool.shutdown(wait=True, cancel_futures=True)
