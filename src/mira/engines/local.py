"""The local engine: a process pool over shards.

Workers are started with ``forkserver`` (or ``spawn``), never ``fork``: a forked child would
inherit the parent's threads (tokenizer, BLAS, torch) in whatever state they were, which can
deadlock. So the function and its arguments must be picklable and importable by name. Each
worker keeps its models in a per-process cache, so a model is loaded once per worker, not once
per shard. With one worker the tasks run in this process (no start-up cost, same results).

With ``forkserver`` (the default) the fork server is started once per driver process and imports
:data:`WORKER_MODULES` before it forks any worker, so a worker starts with numpy, pyarrow, scipy
and mira's stage modules already imported (start-up 0.9-1.0 s a worker with ``spawn``, 0.3-0.4 s
from the server, 100k records in benchmarks/scale.py); the server lives
as long as the driver, so inside one ``mira run`` score's workers come from the server ingest
started. It holds no thread and no handle of the driver, which is why it is as safe as spawn.

Workers die with the process that started them: a driver killed with SIGKILL runs no cleanup, and
its workers would otherwise go on writing shards into the run directory (which the driver's lock
no longer protects) and then idle forever. On Linux the kernel kills them (``PR_SET_PDEATHSIG``);
a watchdog thread that notices the parent is gone covers other systems and the forkserver.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from mira.core.config import EngineConfig
from mira.engines.tasks import Task, worker_count

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Imported by the fork server before it forks workers (an import that fails there is skipped by
# multiprocessing, and the worker imports it itself). Only what every scoring or ingest worker
# needs: torch, for one, is not here, since most workers never touch it. pandas is, because
# pyarrow imports it when it first builds a table from Python objects (score's output).
WORKER_MODULES = ("mira.stages.ingest", "mira.stages.score", "mira.students.static", "mira.text.tokens", "pyarrow",
                  "pyarrow.parquet", "pandas", "scipy.sparse", "safetensors.numpy", "tokenizers", "tiktoken")
WATCHDOG_SECONDS = 0.5


def start_worker(driver_pid: int, start_method: str, environ: dict[str, str]) -> None:
    """Worker initializer: the driver's environment as it is now, and end with the driver.

    A fork server's children inherit the environment the server started with; a spawned child,
    the driver's at spawn time. Both get the driver's current one here (credentials or cache
    folders set after the server started would otherwise be missing in the workers).
    """
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    die_with_parent(driver_pid, start_method)


def die_with_parent(driver_pid: int, start_method: str) -> None:
    """Worker initializer: end this process as soon as its parent (or the driver) is gone.

    With ``spawn`` the parent is the driver; with ``forkserver`` it is the fork server, which
    exits when the driver does.
    """
    parent = os.getppid()
    _set_parent_death_signal()
    # The parent may have died before the signal was armed: then we were already re-parented.
    if os.getppid() != parent or (start_method == "spawn" and parent != driver_pid) or not _alive(driver_pid):
        os._exit(1)
    watch_parent(parent, driver_pid)


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program's symbols include libc's
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # no prctl to call: the watchdog alone has to do
        log.debug("no prctl: %s", exc)


def watch_parent(parent: int, driver_pid: int, interval: float = WATCHDOG_SECONDS) -> threading.Thread:
    """Start a daemon thread that ends this process once it is re-parented or the driver is gone.

    A killed driver whose own parent has not reaped it yet (``subprocess.run(capture_output=True)``
    reaps only once the output pipe closes, and the fork server and workers hold that pipe) is a
    zombie: :func:`mira.core.processes.pid_alive` counts it as gone, where ``kill(pid, 0)`` did not."""
    def watch() -> None:
        while os.getppid() == parent and _alive(driver_pid):
            time.sleep(interval)
        os._exit(1)  # no cleanup on purpose: the driver is gone, nothing would read our results

    thread = threading.Thread(target=watch, name="mira-parent-watchdog", daemon=True)
    thread.start()
    return thread


def _alive(pid: int) -> bool:
    from mira.core.processes import pid_alive

    return pid_alive(pid)


def start_fork_server(engine: EngineConfig, n_tasks: int | None = None) -> None:
    """Start the fork server now (if the engine will use one for `n_tasks`), so it imports
    :data:`WORKER_MODULES` while the driver does its own set-up (fingerprints, listing shards)
    instead of after it. One task runs in the driver: then no server is started at all."""
    if engine.kind != "local" or engine.start_method != "forkserver" or worker_count(engine, n_tasks) == 1:
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
    forkserver.ensure_running()  # returns at once; a second call finds it running


def map_local(engine: EngineConfig, fn: Callable[..., Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
    workers = worker_count(engine, len(tasks))
    if workers == 1:
        for index, task in enumerate(tasks):
            yield index, fn(*task)
        return
    start_fork_server(engine, len(tasks))  # with its preload, unless ingest or score started it already
    context = multiprocessing.get_context(engine.start_method)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start_worker,
                               initargs=(os.getpid(), engine.start_method, dict(os.environ)))
    finished = False
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
        finished = True
    finally:
        # On an error (or a consumer that stops early) do not start the shards still queued, and
        # wait until no worker can still be writing. Once every task has returned, nothing is being
        # written: the workers' exit (interpreter teardown, about half a second under load) need not hold up the caller.
        pool.shutdown(wait=not finished, cancel_futures=True)
