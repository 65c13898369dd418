"""Anchor rubrics: the per-group quality dimensions the teacher scores in phase 2.

``rubrics/<group>.jsonl`` holds one :class:`Anchor` per line. Discover writes it, a user may edit
it, and later stages read it only through :func:`load_rubric`, which validates every line and
explains a bad edit in one line. Downstream fingerprints use :func:`rubric_fingerprint`, so an
edited card makes the stages that depend on it run again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mira.core.config import ConfigError
from mira.io.files import atomic_write_text, hash_files
from mira.run.rundir import RunDir

# Which part of a record an anchor concerns. "whole" for plain documents and code; Q&A records
# have question / trace (reasoning) / answer / both (trace and answer together); agent and chat
# records have calls (tool calls and their arguments) / results (tool outputs) / answer.
Part = Literal["whole", "question", "trace", "answer", "both", "calls", "results"]
PARTS: tuple[str, ...] = ("whole", "question", "trace", "answer", "both", "calls", "results")
REJECTED_SUFFIX = ".rejected.jsonl"


class RubricError(ConfigError):
    """A rubric file is missing or does not validate; the message is one line naming file and line."""


class Anchor(BaseModel):
    """One anchor dimension of a group's rubric (a line of ``rubrics/<group>.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    # Used as a column name downstream (`<id>`, `<id>__why`), hence the narrow alphabet.
    id: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    name: str = Field(min_length=1, max_length=80)
    definition: str = Field(min_length=1)
    part: Part = "whole"
    low: str = ""
    mid: str = ""
    high: str = ""
    # The (name: reason) judgment point nearest the cluster centre, and how much stood behind it.
    exemplar: str = ""
    support: int = Field(0, ge=0)
    records: int = Field(0, ge=0)
    sources: dict[str, int] = Field(default_factory=dict)


def rubric_path(run: RunDir, group: str) -> Path:
    return run.path("rubrics", f"{group}.jsonl")


def rubric_is_empty(run: RunDir, group: str) -> bool:
    """True when discover wrote the group's rubric without anchors (every candidate rejected, see
    ``<group>.rejected.jsonl``): its sources are then unscored (``selection.unscored``) rather than
    a reason to stop the run. A missing file is not "empty": that stage simply has not run."""
    path = rubric_path(run, group)
    return path.exists() and not path.read_text(encoding="utf-8").strip()


def rubric_files(run: RunDir) -> list[Path]:
    """The rubric files of a run (the audit files of rejected clusters are not rubrics)."""
    folder = run.path("rubrics")
    if not folder.exists():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if not p.name.endswith(REJECTED_SUFFIX))


def rubric_fingerprint(run: RunDir) -> str:
    """Content hash of every rubric file: downstream stages rerun when a card is edited."""
    return hash_files(rubric_files(run))


def dumps_rubric(anchors: list[Anchor]) -> str:
    return "".join(json.dumps(a.model_dump(mode="json"), ensure_ascii=False) + "\n" for a in anchors)


def save_rubric(run: RunDir, group: str, anchors: list[Anchor]) -> str:
    """Write the rubric atomically; returns the sha256 of what was written."""
    text = dumps_rubric(anchors)
    atomic_write_text(rubric_path(run, group), text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def parse_rubric(text: str, where: str) -> list[Anchor]:
    anchors: list[Anchor] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchor = Anchor.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            detail = f"field {field!r}: {err['msg']}" if field else err["msg"]
            raise RubricError(f"{where} line {number}: {detail}") from None
        if anchor.id in seen:
            raise RubricError(f"{where} line {number}: duplicate anchor id {anchor.id!r}")
        seen.add(anchor.id)
        anchors.append(anchor)
    if not anchors:
        raise RubricError(f"{where} has no anchors; add at least one or rerun `mira discover --force`")
    return anchors


def load_rubric(run: RunDir, group: str) -> list[Anchor]:
    """The anchors of `group`, validated (including any hand edits)."""
    path = rubric_path(run, group)
    if not path.exists():
        raise RubricError(f"no rubric for group {group!r} ({path}); run `mira discover` first")
    return parse_rubric(path.read_text(encoding="utf-8"), str(path))
