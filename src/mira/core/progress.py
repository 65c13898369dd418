"""Progress reporting without a user interface: library code advances tasks, the CLI draws them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ProgressTask(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def set_total(self, total: int | None) -> None: ...
    def close(self) -> None: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[[str, "int | None"], ProgressTask]


def null_progress(description: str, total: int | None = None) -> ProgressTask:
    return _NullTask()
