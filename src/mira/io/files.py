"""Files written whole or not at all: atomic writes, folder swaps, JSON reads, content hashes.

Every artifact is written to a temporary name in the same folder and renamed into place, so a
killed process leaves either the old file or the new one, never half of one.
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
from pathlib import Path, PurePosixPath
from typing import Any

from mira.core.hashing import json_default

log = logging.getLogger(__name__)


def umask() -> int:
    """The process's file-creation mask, read without changing it where the system says it
    (Linux: /proc/self/status); elsewhere set and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(target: int | Path, directory: bool = False) -> None:
    """Give a file (an open descriptor or a path) the mode a plain ``open()`` / ``mkdir()`` would:
    ``tempfile`` creates 0600 files and 0700 folders, which other users of a shared folder, Ray
    workers under another account and a web server could not read."""
    mode = (0o777 if directory else 0o666) & ~umask()
    if isinstance(target, int):
        os.fchmod(target, mode)
    else:
        os.chmod(target, mode)


def _temp_file(path: Path) -> tuple[int, str]:
    """A temporary file beside `path` (same file system, so the rename is atomic), umask-honouring."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        honour_umask(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
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
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=json_default) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write (e.g. with pyarrow); it is renamed to `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def hash_files(paths: list[Path]) -> str:
    """Content hash of files (e.g. user-editable rubric cards) for downstream fingerprints."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()[:16]


