"""Worker functions that import nothing: what a worker had imported (and its environment)."""

import os
import sys


def loaded(names: tuple[str, ...]) -> tuple[int, dict[str, bool]]:
    return os.getpid(), {name: name in sys.modules for name in names}


def environ(name: str) -> str | None:
    return os.environ.get(name)
