"""The run directory: checkpoint and documentation of a run.

Every artifact is written to a temporary name in the same folder and renamed into place, so a
killed process leaves either the old file or the new one, never half of one. A stage writes its
done marker (``_done/<stage>.json``: fingerprint + counts) last; a rerun skips a stage whose
marker holds the same fingerprint and redoes it otherwise.

A run directory is mira's: it is created (or adopted, when empty) with a ``.mira-run`` marker,
and mira refuses to write into a non-empty folder that is not a run, so a mistyped ``run_dir``
never overwrites the user's own files. Writers hold ``.mira.lock`` (see :mod:`mira.runlock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mira.config import ConfigError, RunConfig
from mira.config_files import dump_config

log = logging.getLogger(__name__)

STAGES = ("ingest", "group", "discover", "annotate", "distill", "score", "select", "report")
RUN_MARKER = ".mira-run"
LOCK_FILE = ".mira.lock"
CONFIG_HEADER = "# resolved config; fingerprint "
# What a run directory holds before any stage has written anything: removed again when the
# first stage of a freshly created run fails (a bad config leaves no empty run behind).
BOOKKEEPING = frozenset({RUN_MARKER, LOCK_FILE, "config.yaml"})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_json_default) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write (e.g. with pyarrow); it is renamed to `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def is_atomic_temp(name: str, of: str = r".+") -> bool:
    """True for a leftover of `atomic_write_bytes` / `atomic_path` (".<name>.<8 mkstemp chars>.tmp")
    writing a file whose name matches the regex `of`."""
    return re.fullmatch(rf"\.(?:{of})\.[a-z0-9_]{{8}}\.tmp", name) is not None


def _files_under(folder: Path, empty_dirs: bool = False) -> list[PurePosixPath]:
    """Files (and, when asked, empty folders) under `folder`, as relative paths."""
    return sorted(PurePosixPath(p.relative_to(folder).as_posix()) for p in folder.rglob("*")
                  if p.is_file() or p.is_symlink() or (empty_dirs and p.is_dir() and not any(p.iterdir())))


def remove_own_files(folder: Path, is_ours: Callable[[PurePosixPath], bool]) -> list[PurePosixPath]:
    """Delete the files under `folder` that mira wrote (``is_ours(path relative to folder)``) and
    the folders that leaves empty; every other file stays where it is. Returns the files kept."""
    if not folder.is_dir():
        return []
    kept = []
    emptied: set[Path] = set()
    for relative in _files_under(folder):
        if is_ours(relative):
            (folder / relative).unlink(missing_ok=True)
            emptied.update((folder / relative).parents)
        else:
            kept.append(relative)
    for directory in sorted((d for d in emptied if d == folder or folder in d.parents), key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()  # succeeds only when nothing else is left inside
    return kept


def move_foreign_files(source: Path, target: Path, is_ours: Callable[[PurePosixPath], bool]) -> list[PurePosixPath]:
    """Move the files under `source` that mira did not write to the same place under `target`
    (when that place is free), so replacing a folder of mira's outputs keeps the user's files."""
    moved = []
    for relative in _files_under(source, empty_dirs=True) if source.is_dir() else []:
        if is_ours(relative) or (target / relative).exists():
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source / relative), str(target / relative))
        moved.append(relative)
    return moved


def swap_in(new: Path, final: Path, is_ours: Callable[[PurePosixPath], bool]) -> None:
    """Replace the folder `final` by the finished folder `new`, so that a kill at any moment leaves
    one whole version. Files in `final` that mira did not write (``is_ours`` false) move over to
    the new folder; only mira's own old files are deleted."""
    # Hidden, so a kill mid-swap never leaves a second visible copy (e.g. a named selection) behind.
    previous = final.with_name(f".{final.name}.previous")
    if previous.exists() and not final.exists():
        previous.rename(final)  # killed in the middle of the last swap: its old version is whole
    _retire(previous, final, is_ours)
    if final.exists():
        final.rename(previous)
    new.rename(final)
    _retire(previous, final, is_ours)


def _retire(old: Path, final: Path, is_ours: Callable[[PurePosixPath], bool]) -> None:
    if not old.exists():
        return
    move_foreign_files(old, final, is_ours)
    kept = remove_own_files(old, is_ours)
    for directory in sorted(old.rglob("*"), key=lambda d: -len(d.parts)) + [old]:
        with contextlib.suppress(OSError):
            directory.rmdir()  # empty folders only: whatever was the user's has moved
    if kept and old.exists():
        # A file of the user's with the same name on both sides: keep both, out of the way.
        aside = old.with_name(f"{old.name}.kept-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        old.rename(aside)
        log.warning("kept %d file(s) mira did not write in %s", len(kept), aside)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def hash_files(paths: list[Path]) -> str:
    """Content hash of files (e.g. user-editable rubric cards) for downstream fingerprints."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()[:16]


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        path = self.marker_path(stage)
        if not path.exists():
            return None
        try:
            return read_json(path)
        except (OSError, ValueError):
            return None  # a damaged marker means "not done": redo rather than trust it

    def is_done(self, stage: str, stage_fingerprint: str) -> bool:
        marker = self.done(stage)
        return marker is not None and marker.get("fingerprint") == stage_fingerprint

    def mark_done(self, stage: str, stage_fingerprint: str, counts: dict[str, Any] | None = None,
                  started: float | None = None, **extra: Any) -> dict[str, Any]:
        """Write the done marker (through its catalogue owner); `extra` fields are kept in it."""
        from mira.artifacts.core import dump
        from mira.artifacts.run import DONE, DoneMarker  # the marker's owner (imports this module)

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


class StageNotReady(RuntimeError):
    """An upstream stage is missing; the message says which command to run."""
