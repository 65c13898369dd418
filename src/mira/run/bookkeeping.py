"""Bookkeeping artifacts of the run directory: the resolved config, done markers, teacher usage,
the folder's ownership marker and lock, the teacher cache and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mira.run.artifact import Artifact

# The first line of config.yaml; the fingerprint follows it.
CONFIG_HEADER = "# resolved config; fingerprint "


class Document(BaseModel):
    """Base of the JSON artifacts: known fields typed, extra fields kept (a writer may record more
    than its readers need; a newer writer's file still loads)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class SavedConfig(BaseModel):
    """``config.yaml``: the resolved config (secrets redacted) and its fingerprint."""

    fingerprint: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)


def parse_config(path: Path) -> SavedConfig:
    import yaml

    text = path.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    # The header is written by mira.run.rundir.RunDir.save_config with the same constant.
    fp = first.removeprefix(CONFIG_HEADER).strip() if first.startswith(CONFIG_HEADER) else None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError("not a mapping")
    return SavedConfig(fingerprint=fp or None, values=values)


class DoneMarker(Document):
    """``_done/<stage>.json``: written last by a finished stage (``mira.run.rundir.RunDir.mark_done``)."""

    stage: str = ""
    fingerprint: str
    finished_at: str | None = None
    seconds: float | None = None
    counts: dict[str, Any] = Field(default_factory=dict)
    # Paths (relative to the run directory) the marker vouches for: while one is missing the stage
    # is not done (mira.run.rundir.RunDir.done).
    outputs: list[str] = Field(default_factory=list)


class Usage(Document):
    """``usage/<stage>.json`` (``mira.teacher.usage.UsageLog``)."""

    stage: str
    model: str = ""
    updated_at: str | None = None
    budget_exhausted: bool = False
    sessions: int = 0
    last: dict[str, Any] = Field(default_factory=dict)  # this session's counters
    total: dict[str, float] = Field(default_factory=dict)  # numeric counters over every session


class RunMarker(Document):
    created_by: str = "mira"
    adopted: bool = False
    created_at: str | None = None


CONFIG = Artifact(
    "config", "config.yaml", "every stage", "the resolved config (secrets redacted) under a header line "
    "`# resolved config; fingerprint <hash>`", kind="yaml", model=SavedConfig, parser=parse_config,
    owner="mira.run.rundir.RunDir.save_config", requires="run")
DONE = Artifact(
    "done", "_done/{stage}.json", "every stage (last)", "`{stage, fingerprint, finished_at, seconds, counts, "
    "config, upstream, reads, outputs, teacher}` (see Stages): "
    "the stage finished with that fingerprint; a damaged marker, or one whose `outputs` are missing, means "
    "not done", model=DoneMarker,
    requires="run")
USAGE = Artifact(
    "usage", "usage/{stage}.json", "teacher", "requests, cache hits, tokens, failures, latency: `last` "
    "session and `total` over all sessions", model=Usage, requires="discover")
TEACHER_CACHE = Artifact(
    "teacher_cache", "teacher_cache.sqlite", "teacher", "request/response cache", kind="opaque",
    owner="mira.teacher.cache")
TEACHER_BATCHES = Artifact(
    "teacher_batches", "teacher_batches/{stage}.json", "teacher (`mode: batch`)", "the stage's Batch API batches "
    "(input hash, file and batch ids, status, landed) and re-ask attempts, written before polling so a rerun "
    "resumes them; unlanded input files (and offline output files) in `teacher_batches/{stage}/`", kind="opaque",
    owner="mira.teacher.batch")
RUN_MARKER = Artifact(
    "run_marker", ".mira-run", "first writer", "marks the folder as a mira run: `{created_by, adopted, created_at}`",
    model=RunMarker, requires="run")
LOCK = Artifact(
    "lock", ".mira.lock", "every writer", "`flock`ed while a stage writes; holds `{pid, command, since}` of the "
    "holder (informational)", kind="opaque", owner="mira.run.lock")
REPORT = Artifact(
    "report", "report/index.html", "report", "self-contained HTML", kind="opaque", owner="mira.report")
