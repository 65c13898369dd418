"""The run directory: checkpoint and documentation of a run.

Every artifact is written to a temporary name in the same folder and renamed into place, so a
killed process leaves either the old file or the new one, never half of one. A stage writes its
done marker (``_done/<stage>.json``: fingerprint + counts) last; a rerun skips a stage whose
marker holds the same fingerprint and redoes it otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mira.config import RunConfig, dump_config

STAGES = ("ingest", "group", "discover", "annotate", "distill", "score", "select", "report")


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
        header = f"# resolved config; fingerprint {config.fingerprint()}\n"
        atomic_write_text(self.config_path, header + dump_config(config))

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
        return bool(marker) and marker.get("fingerprint") == stage_fingerprint

    def mark_done(self, stage: str, stage_fingerprint: str, counts: dict[str, Any] | None = None,
                  started: float | None = None) -> dict[str, Any]:
        marker = {
            "stage": stage,
            "fingerprint": stage_fingerprint,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - started, 3) if started else None,
            "counts": counts or {},
        }
        atomic_write_json(self.marker_path(stage), marker)
        return marker

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
