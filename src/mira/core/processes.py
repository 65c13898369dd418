"""Is a process still there? One answer for the teacher's server leases and the engines' workers."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (exited, not yet reaped by its parent) counts as dead:
    a driver killed with SIGKILL stays a zombie while its parent still reads its output, and
    its workers must not wait for it for good."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or a race with the process's exit: kill(0) said it is there
    # The state follows the command name in parentheses, which may itself hold spaces or ')'.
    state = stat[stat.rfind(")") + 2:stat.rfind(")") + 3]
    return state not in ("Z", "X")
