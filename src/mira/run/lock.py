"""One writer per run directory: an exclusive lock that the operating system holds.

Every stage that writes (``mira <stage>``, ``mira run``, :func:`mira.api.run_one`,
:func:`mira.api.run_pipeline`) holds ``<run_dir>/.mira.lock`` with ``fcntl.flock`` while it works.
The kernel drops the lock when the holder exits, however it exits (SIGKILL, OOM, a crash), so a
dead writer never leaves a stale lock to clean up. A second writer fails at once with
:class:`RunLocked`, one line naming the holder's pid and command, or waits when asked to.
Readers (``mira status``, a stage that is done already) take no lock and never block.

``flock`` locks are per open file, so a thread or a process opening the file again is refused
even inside the same process; nesting in one thread (the pipeline holding the lock while each
stage asks for it again) is counted instead. The lock file is never deleted while a run
directory exists: deleting it would let two writers lock two different files of the same name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mira.core.config import ConfigError
from mira.run.rundir import LOCK_FILE, RunDir

log = logging.getLogger(__name__)

_local = threading.local()


class RunLocked(RuntimeError):
    """Another process is writing to this run directory (the message names it)."""


def _held() -> dict[str, int]:
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held


@contextlib.contextmanager
def writing(run: RunDir, wait: bool = False) -> Iterator[None]:
    """Hold the run directory for writing: claim it (see :meth:`RunDir.claim`) and lock it.

    Raises :class:`RunLocked` when another writer holds it and `wait` is false. A run directory
    created here is removed again if the body fails before writing anything but bookkeeping.
    """
    held = _held()
    key = os.path.realpath(run.root)
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    fd, created = _acquire(run, wait)
    held[key] = 1
    try:
        yield
    except BaseException:
        if created is not None:
            run.remove_if_unused(created)
        raise
    finally:
        del held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no holder any more (a crash leaves the line; the lock is gone anyway)
        os.close(fd)  # releases the lock


def _acquire(run: RunDir, wait: bool) -> tuple[int, Path | None]:
    import fcntl

    for _ in range(10):
        created = run.claim()
        path = run.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # less the umask, like open()
        except FileNotFoundError:
            continue  # the folder was removed under us (a first stage failed): claim it again
        except OSError as exc:
            raise ConfigError(f"cannot write to run_dir {run.root}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                message = _describe_holder(fd, run.root)
                if not wait:
                    raise RunLocked(f"{message}; wait for it to finish, or rerun with --wait") from None
                log.warning("%s; waiting for it to finish", message)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _is_current(fd, path):
                _record_holder(fd)
                return fd, created
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise
            # e.g. ENOLCK: a network filesystem without locks; two writers could then corrupt a run.
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}; put run_dir on a local disk") from None
        except BaseException:
            os.close(fd)
            raise
        # The holder removed the run directory it had just created (its first stage failed):
        # this file is gone from the folder, so lock whatever is there now.
        os.close(fd)
    raise RunLocked(f"could not lock {run.root / LOCK_FILE}: it keeps being replaced")


def _is_current(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _command() -> str:
    """This process's command line, with the values of `--set` left out (they may hold secrets)."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    shown = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--set":
            arg = arg.split("=", 1)[0] + "=..."
        elif arg.startswith("--set="):
            arg = "--set=" + arg.removeprefix("--set=").split("=", 1)[0] + "=..."
        shown.append(arg)
    return shlex.join(shown)[:300]


def _record_holder(fd: int) -> None:
    # Informational only (the lock is the flock, not this text): who to wait for, or to stop.
    info = {"pid": os.getpid(), "command": _command(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)


def _describe_holder(fd: int, root: Path) -> str:
    info: dict = {}
    for _ in range(5):  # the holder may be between truncating and writing its line
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            break
        except (ValueError, UnicodeDecodeError):
            time.sleep(0.05)
    if not isinstance(info, dict) or "pid" not in info:
        return f"run directory {root} is in use by another mira process"
    command = " ".join(str(info.get("command", "?")).split())  # one line, whatever the argv held
    return f"run directory {root} is in use by pid {info['pid']} ({command}) since {info.get('since', '?')}"
