"""A run directory that shares another run's upstream artifacts: the home of a re-run of part of the chain.

`mira compare --replicates N` re-runs annotate, distill, score and select on other annotation draws
without redoing ingest, group or discover and without touching the run's own labels, students,
scores or selections. Each draw lives in a folder of its own inside the run
(``compare/replicates/r<k>/``), which is a run directory in every respect the stages rely on: it
has its own ``_done/`` markers, ``config.yaml``, lock, ``labels/``, ``students/``, ``scores/``,
``selection/`` and ``usage/``. What it shares it reads through relative symbolic links to the run's
files (:data:`SHARED` and the done markers of :data:`SHARED_STAGES`), so every path helper and every
scoring worker (which reopens the folder by its path) finds them where a run keeps them, and a
rerun of an upstream stage of the run shows through at once (a stale link target makes the
replicate's stages stale by fingerprint, as in the run itself). The teacher cache is the run's own
file (:attr:`LinkedRun.teacher_cache_path`), not a link: an answer paid for by any draw, or by the
run, is never paid again, and SQLite never has to follow a link to find its journal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mira.core.config import ConfigError
from mira.run.rundir import RunDir

# The run's files a downstream re-run reads and never writes: ingest's inventory, sample index,
# token counts and quarantine, group's groups, discover's judgments and rubrics.
SHARED = ("inventory.json", "inventory", "quarantine", "groups.json", "judgments", "rubrics")
SHARED_STAGES = ("ingest", "group", "discover")


@dataclass
class LinkedRun(RunDir):
    """A run directory at `root` that reads `parent`'s upstream artifacts and teacher cache."""

    parent: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parent = Path(self.parent)

    @property
    def teacher_cache_path(self) -> Path:
        return self.parent / "teacher_cache.sqlite"

    def link(self) -> None:
        """Create the folder (a marked run directory) and its links to the parent's shared files;
        idempotent, and a link that went missing or points elsewhere is made again."""
        self.claim()
        for name in SHARED:
            _link(self.root / name, self.parent / name)
        for stage in SHARED_STAGES:
            _link(self.marker_path(stage), self.parent / "_done" / f"{stage}.json")


def _link(path: Path, target: Path) -> None:
    """A relative symbolic link `path` -> `target` (relative: the run directory may be moved)."""
    relative = os.path.relpath(target, path.parent)
    if path.is_symlink() and os.readlink(path) == relative:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise ConfigError(f"{path} is a folder of its own, not a link to the run's {target.name}; move it away")
    try:
        os.symlink(relative, path)
    except OSError as exc:
        raise ConfigError(f"cannot link {path} to the run's {target.name}: {exc.strerror or exc} (the run "
                          "directory must be on a filesystem with symbolic links)") from None
