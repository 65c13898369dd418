"""The artifact catalogue: one owner per file of the run directory.

Each :class:`~mira.run.artifact.Artifact` names a path pattern, the stage that writes it, its
schema (a pydantic model or an Arrow schema) and the ``load`` / ``save`` every reader and writer
goes through. :data:`CATALOGUE` lists them in the order of the run; docs/architecture.md's table
is generated from it (``python -m mira.artifacts --markdown``) and a test keeps the two equal.
Importing this package reads no file (pyarrow is imported only where a Parquet artifact is read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mira.run.artifact import Artifact, ArtifactInvalid, ArtifactMissing, Catalogue

if TYPE_CHECKING:
    CATALOGUE: Catalogue


def __getattr__(name: str) -> Any:
    # The catalogue imports every artifact module; built on first use, so a scoring worker that
    # reads one artifact (``mira.artifacts.scores``) does not import them all (~0.15 s of its start).
    if name != "CATALOGUE":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from mira.artifacts.compare import (
        COMPARE_SELECTIONS,
        COMPARE_SUMMARY,
        DATAMAN,
        PERPLEXITY,
        PROXY_PLOT,
        PROXY_RESULT,
        REPLICATE,
    )
    from mira.artifacts.inputs import INVENTORY, QUARANTINE, SAMPLE_INDEX, SHARD_TOKENS
    from mira.artifacts.rubrics import GROUPS, JUDGMENTS, RUBRIC, RUBRIC_BACKUP, RUBRIC_GENERATED, RUBRIC_REJECTED
    from mira.artifacts.scores import SCORES, SCORES_DONE, SCORES_SUMMARY
    from mira.artifacts.selection import CURRENT_SELECTION, DECISIONS, SELECTED, SELECTION_CARD, SELECTION_SUMMARY
    from mira.artifacts.students import CONSISTENCY, LABELS, MASK, METRICS, STUDENT, VALIDATION
    from mira.run.bookkeeping import CONFIG, DONE, LOCK, REPORT, RUN_MARKER, TEACHER_BATCHES, TEACHER_CACHE, USAGE

    catalogue = Catalogue([
        CONFIG, INVENTORY, SHARD_TOKENS, SAMPLE_INDEX, QUARANTINE,
        GROUPS, JUDGMENTS, RUBRIC, RUBRIC_REJECTED, RUBRIC_BACKUP, RUBRIC_GENERATED,
        LABELS, CONSISTENCY, STUDENT, METRICS, MASK, VALIDATION,
        SCORES, SCORES_DONE, SCORES_SUMMARY,
        SELECTED, DECISIONS, SELECTION_CARD, SELECTION_SUMMARY, CURRENT_SELECTION,
        COMPARE_SUMMARY, COMPARE_SELECTIONS, PROXY_RESULT, PROXY_PLOT, REPLICATE, PERPLEXITY, DATAMAN,
        REPORT, TEACHER_CACHE, TEACHER_BATCHES, USAGE, DONE, RUN_MARKER, LOCK,
    ])
    globals()["CATALOGUE"] = catalogue
    return catalogue


__all__ = ["CATALOGUE", "Artifact", "ArtifactInvalid", "ArtifactMissing", "Catalogue"]
