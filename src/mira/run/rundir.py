"""The run directory: checkpoint and documentation of a run.

Artifacts are written atomically (:mod:`mira.io.files`). A stage writes its
done marker (``_done/<stage>.json``: fingerprint + counts) last; a rerun skips a stage whose
marker holds the same fingerprint and redoes it otherwise.

A run directory is mira's: it is created (or adopted, when empty) with a ``.mira-run`` marker,
and mira refuses to write into a non-empty folder that is not a run, so a mistyped ``run_dir``
never overwrites the user's own files. Writers hold ``.mira.lock`` (see :mod:`mira.run.lock`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, RunConfig
from mira.core.errors import StageNotReady
from mira.io.files import atomic_write_json, atomic_write_text, is_atomic_temp, read_json
from mira.run.artifact import dump
from mira.run.bookkeeping import CONFIG_HEADER, DONE, DoneMarker
from mira.run.config_file import dump_config

log = logging.getLogger(__name__)

RUN_MARKER = ".mira-run"
LOCK_FILE = ".mira.lock"
# What a run directory holds before any stage has written anything: removed again when the
# first stage of a freshly created run fails (a bad config leaves no empty run behind).
BOOKKEEPING = frozenset({RUN_MARKER, LOCK_FILE, "config.yaml"})


@dataclass
class RunDir:
    """Paths and bookkeeping of one run directory."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # --- well-known paths -------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def inventory_path(self) -> Path:
        return self.root / "inventory.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def groups_path(self) -> Path:
        return self.root / "groups.json"

    @property
    def teacher_cache_path(self) -> Path:
        return self.root / "teacher_cache.sqlite"

    @property
    def usage_dir(self) -> Path:
        return self.root / "usage"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # --- config -----------------------------------------------------------------------------
    def save_config(self, config: RunConfig) -> None:
        header = f"{CONFIG_HEADER}{config.fingerprint()}\n"
        atomic_write_text(self.config_path, header + dump_config(config))

    # --- ownership ---------------------------------------------------------------------------
    @property
    def run_marker_path(self) -> Path:
        return self.root / RUN_MARKER

    def is_mira_run(self) -> bool:
        """Marked by mira, or written by a mira older than the marker (done markers, resolved config)."""
        if self.run_marker_path.is_file() or (self.root / "_done").is_dir():
            return True
        try:
            with open(self.config_path, encoding="utf-8") as handle:
                return handle.readline().startswith(CONFIG_HEADER)
        except (OSError, UnicodeDecodeError):
            return False

    def claim(self) -> Path | None:
        """Make sure mira may write here: create and mark the folder, or adopt an empty one or an
        older run; refuse a file or a folder of someone else's files. Returns the topmost folder
        created now (the run directory or a parent of it), None when it existed."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"run_dir {self.root} is a file, not a folder; point run_dir at a new or empty folder")
        created = None
        if not self.root.exists():
            top = self.root.absolute()
            while not top.parent.exists() and top.parent != top:
                top = top.parent
            try:
                self.root.mkdir(parents=True)
                created = top
            except FileExistsError:
                pass  # another mira created it at the same moment; checked below like any folder
            except OSError as exc:
                raise ConfigError(f"cannot create run_dir {self.root}: {exc.strerror or exc}") from None
        if self.run_marker_path.is_file():
            return created
        try:
            # The lock file, and the marker another mira is writing at this very moment, are ours.
            entries = sorted(p.name for p in self.root.iterdir()
                             if p.name != LOCK_FILE and not is_atomic_temp(p.name, re.escape(RUN_MARKER)))
        except OSError as exc:
            raise ConfigError(f"cannot read run_dir {self.root}: {exc.strerror or exc}") from None
        if entries and not self.is_mira_run():
            shown = ", ".join(repr(name) for name in entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ConfigError(f"run_dir {self.root} is a folder of other files ({shown}), not a mira run; "
                              "mira writes only into a new or empty folder, so choose another run_dir")
        atomic_write_json(self.run_marker_path, {"created_by": "mira", "adopted": bool(entries),
                                                 "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return created

    def remove_if_unused(self, created: Path) -> bool:
        """Remove a run directory that holds only mira's bookkeeping (its first stage failed), and
        the empty parents up to `created`, the topmost folder :meth:`claim` made for it."""
        try:
            names = {p.name for p in self.root.iterdir()}
        except OSError:
            return False
        if not names <= BOOKKEEPING:
            return False
        for name in names:
            with contextlib.suppress(OSError):
                (self.root / name).unlink()
        folder = self.root.absolute()
        with contextlib.suppress(OSError):
            while True:
                folder.rmdir()  # stops (OSError) at the first folder that is not empty
                if folder == created or folder.parent == folder:
                    break
                folder = folder.parent
        return not self.root.exists()

    # --- done markers -----------------------------------------------------------------------
    def marker_path(self, stage: str) -> Path:
        return self.root / "_done" / f"{stage}.json"

    def done(self, stage: str) -> dict[str, Any] | None:
        """The stage's done marker; None when missing, damaged, or when an output it vouches for
        (its ``outputs``, paths relative to the run directory) is gone: a deleted output is redone."""
        path = self.marker_path(stage)
        if not path.exists():
            return None
        try:
            marker = read_json(path)
        except (OSError, ValueError):
            return None  # a damaged marker means "not done": redo rather than trust it
        if not isinstance(marker, dict):
            return None
        missing = [out for out in marker.get("outputs") or [] if not self.path(str(out)).exists()]
        if missing:
            log.debug("%s: not done, its outputs are missing: %s", stage, ", ".join(map(str, missing)))
            return None
        return marker

    def is_done(self, stage: str, stage_fingerprint: str) -> bool:
        marker = self.done(stage)
        return marker is not None and marker.get("fingerprint") == stage_fingerprint

    def mark_done(self, stage: str, stage_fingerprint: str, counts: dict[str, Any] | None = None,
                  started: float | None = None, **extra: Any) -> dict[str, Any]:
        """Write the done marker (through its catalogue owner); `extra` fields are kept in it."""
        marker = DoneMarker(stage=stage, fingerprint=stage_fingerprint,
                            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            seconds=round(time.time() - started, 3) if started else None, counts=counts or {},
                            **extra)
        DONE.save(self, marker, stage=stage)
        return dump(marker)

    def clear_done(self, stage: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.marker_path(stage).unlink()

    def stage_fingerprint(self, stage: str) -> str | None:
        marker = self.done(stage)
        return marker.get("fingerprint") if marker else None

    def require(self, stage: str) -> str:
        """Fingerprint of a finished upstream stage, or a one-line error saying what to run."""
        fp = self.stage_fingerprint(stage)
        if fp is None:
            raise StageNotReady(f"stage {stage!r} has not finished in {self.root}; run `mira {stage}` first")
        return fp
