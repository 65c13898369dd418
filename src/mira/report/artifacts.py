"""Every artifact of a run directory as the report reads it: through the catalogue
(:mod:`mira.artifacts`), tolerating whatever is missing.

The report must render for a partial run, so a missing artifact is ``None`` (or an empty
mapping) and the section that needs it shows its "not run yet" box (:func:`need`). A file that is
there but does not match its schema is not guessed at: it is logged, and the sections that need it
say it could not be read. Large artifacts (score shards) are streamed once by
:mod:`mira.report.score_stream`.
"""

from __future__ import annotations

import logging
import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mira.artifacts import CATALOGUE, Artifact, ArtifactInvalid, ArtifactMissing
from mira.artifacts.selection import SelectionCounts, SelectionSummary
from mira.core.stages import STAGES
from mira.report.score_stream import SCORE_BINS, SourceScores, aggregate_warnings, rows_with_ids, stream_scores
from mira.run.artifact import dump
from mira.run.bookkeeping import DoneMarker, SavedConfig, Usage
from mira.run.rundir import RunDir

if TYPE_CHECKING:
    from mira.core.config import ReliabilityConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["SCORE_BINS", "Artifacts", "NotRun", "SourceScores", "aggregate_warnings", "need", "selection_counts",
           "selection_entries", "usage_totals"]


class Artifacts:
    """Lazy access to a run directory's artifacts; every property is computed once."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        # artifact key -> "path: why" of files that are there but do not match their schema
        self.invalid: dict[str, str] = {}
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def _get(self, key: str, **keys: str) -> Any:
        """The validated artifact, or None when it is missing or invalid (recorded in `invalid`)."""
        cache_key = (key, tuple(sorted(keys.items())))
        if cache_key not in self._cache:
            self._cache[cache_key] = self._load(CATALOGUE[key], **keys)
        return self._cache[cache_key]

    def _load(self, artifact: Artifact, **keys: str) -> Any:
        try:
            return artifact.load(self.run, **keys)
        except ArtifactMissing:
            return None
        except ArtifactInvalid as exc:
            log.warning("report: cannot read %s", exc)
            self.invalid.setdefault(artifact.key, str(exc))
            return None

    def invalid_of(self, stage: str) -> str | None:
        """Why an artifact `stage` writes could not be read (None if none failed)."""
        return next((why for key, why in self.invalid.items() if CATALOGUE[key].writer == stage), None)

    def _document(self, key: str, **keys: str) -> dict[str, Any] | None:
        model = self._get(key, **keys)
        return None if model is None else dump(model, as_read=True)

    # --- bookkeeping ------------------------------------------------------------------------
    @cached_property
    def markers(self) -> dict[str, DoneMarker]:
        return {stage: marker for stage in STAGES if (marker := self._get("done", stage=stage))}

    def done(self, stage: str) -> bool:
        return stage in self.markers

    @cached_property
    def config(self) -> SavedConfig:
        """The resolved config and its fingerprint, as ``mira.run.rundir.RunDir.save_config`` wrote them."""
        return self._get("config") or SavedConfig()

    @property
    def run_name(self) -> str:
        return str(self.config.values.get("name") or self.run.root.name)

    @cached_property
    def usage(self) -> dict[str, Usage]:
        return {keys["stage"]: usage for keys in CATALOGUE["usage"].instances(self.run)
                if (usage := self._get("usage", **keys))}

    # --- stage documents (validated by their schema, read as the stored JSON) ---------------
    @cached_property
    def inventory(self) -> dict[str, Any] | None:
        return self._document("inventory")

    @cached_property
    def groups(self) -> dict[str, Any] | None:
        return self._document("groups")

    @cached_property
    def comparison(self) -> dict[str, Any] | None:
        return self._document("compare_summary")

    def metrics(self, group: str) -> dict[str, Any] | None:
        return self._document("metrics", group=group)

    def mask(self, group: str) -> dict[str, Any] | None:
        return self._document("mask", group=group)

    def rubric(self, group: str) -> list[dict[str, Any]]:
        return [dump(a, as_read=True) for a in self._get("rubric", group=group) or []]

    def rubric_rejected(self, group: str) -> list[dict[str, Any]]:
        """Candidate anchors discover dropped, each with its `reason` (rubrics/<group>.rejected.jsonl)."""
        return [dump(r, as_read=True) for r in self._get("rubric_rejected", group=group) or []]

    def judgments(self, group: str) -> list[dict[str, Any]]:
        return [dump(j, as_read=True) for j in self._get("judgments", group=group) or []]

    def labels(self, group: str) -> Any:
        """The group's teacher labels as a pyarrow Table (labelled samples are small), or None."""
        return self._get("labels", group=group)

    def validation(self, group: str) -> Any:
        return self._get("validation", group=group)

    # --- selections -------------------------------------------------------------------------
    @cached_property
    def selection_path(self) -> Path | None:
        """The selection the report's sections explain (see :func:`mira.selection.named.current_selection`)."""
        from mira.selection.named import current_selection

        return current_selection(self.run)

    @cached_property
    def summary(self) -> SelectionSummary | None:
        if self.selection_path is None:
            return None
        from mira.artifacts.selection import read_selection_summary

        return read_selection_summary(self.selection_path)

    @cached_property
    def selections(self) -> list[dict[str, Any]]:
        from mira.selection.named import list_selections

        return list_selections(self.run)

    # --- groups and sources -----------------------------------------------------------------
    @cached_property
    def group_ids(self) -> list[str]:
        if self.groups and self.groups.get("groups"):
            return [g["id"] for g in self.groups["groups"]]
        found = {keys["group"] for key in ("rubric", "labels", "metrics", "mask")
                 for keys in CATALOGUE[key].instances(self.run)}
        return sorted(found)

    @cached_property
    def source_to_group(self) -> dict[str, str]:
        return dict((self.groups or {}).get("source_to_group") or {})

    @cached_property
    def sources(self) -> list[str]:
        """Every source name, ordered by group then name, so plots and tables agree."""
        names = set((self.inventory or {}).get("sources", {})) | set(self.source_to_group)
        names |= {keys["source"] for keys in CATALOGUE["scores"].instances(self.run)}
        order = {g: i for i, g in enumerate(self.group_ids)}
        return sorted(names, key=lambda s: (order.get(self.source_to_group.get(s, ""), len(order)), s))

    def group_label(self, group: str) -> str:
        for g in (self.groups or {}).get("groups", []):
            if g.get("id") == group:
                return str(g.get("label") or group)
        return group

    def anchor_names(self, group: str) -> dict[str, str]:
        # An entry without an id could never be looked up by anchor id, so it is left out.
        return {a["id"]: a.get("name") or a["id"] for a in self.rubric(group) if a.get("id")}

    # --- scores -----------------------------------------------------------------------------
    @cached_property
    def reliability(self) -> ReliabilityConfig:
        """The run's reliability config (from config.yaml): what the last selection aggregated with."""
        from pydantic import ValidationError

        from mira.core.config import ReliabilityConfig

        try:
            return ReliabilityConfig.model_validate(self.config.values.get("reliability") or {})
        except ValidationError:
            return ReliabilityConfig()

    @cached_property
    def _current_masks(self) -> dict[str, Any]:
        return {}

    def current_mask(self, group: str) -> dict[str, Any] | None:
        """The group's mask under the run's reliability config, as select uses it (None if unknown),
        with its anchors' statistics under ``anchor_scale: group`` (:mod:`mira.scoring.anchor_scale`)."""
        from mira.scoring.reliability import current_mask

        if group not in self._current_masks:
            try:
                from mira.scoring.anchor_scale import for_config

                paths = [p for s, g in self.source_to_group.items() if g == group for p in self.score_files(s)]
                self._current_masks[group] = for_config(current_mask(self.run, group, self.reliability),
                                                        self.reliability, paths)
            except (OSError, ValueError, KeyError, RuntimeError):  # RuntimeError: StageNotReady
                self._current_masks[group] = None
        return self._current_masks[group]

    def aggregates(self, table: Any) -> np.ndarray:
        """Each row's aggregate score, computed as select computes it (mira.scoring.table.aggregate_scores).

        Score files written before the aggregate moved to select (score-v1) carry it as `score`.
        """
        from mira.scoring.table import aggregate_scores

        if "score" in table.column_names:
            return np.array([math.nan if v is None else v for v in table.column("score").to_pylist()], float)
        groups = [g for g in table.column("group").to_pylist() if g] if "group" in table.column_names else []
        mask = self.current_mask(groups[0]) if groups else None
        if mask is None or any(a not in table.column_names for a in mask["anchors"]):
            return np.full(table.num_rows, math.nan)
        return aggregate_scores(table, mask, self.reliability)

    def score_files(self, source: str) -> list[Path]:
        scores = CATALOGUE["scores"]
        return [scores.path(self.run, **keys) for keys in scores.instances(self.run, source=source)]

    @cached_property
    def scores(self) -> dict[str, SourceScores]:
        """One streaming pass over every score shard: histogram + seeded sample per source."""
        return stream_scores(self)

    def student_scores_for(self, source: str, ids: set[str], columns: list[str] | None) -> dict[str, dict[str, Any]]:
        return rows_with_ids(self, source, ids, columns)


class NotRun(Exception):
    """Raised by a section whose artifacts are missing; the page shows a "not run yet" box."""

    def __init__(self, stage: str, detail: str = "", finished: bool = False) -> None:
        super().__init__(stage)
        self.stage = stage
        self.detail = detail
        self.finished = finished  # the stage ran, but what this section reads is missing


def need(artifacts: Artifacts, stage: str, value: T | None, artifact: str = "") -> T:
    """A section's guard: its stage has finished and the artifact it reads is there and valid
    (returned, not None). A file that does not match its schema raises ArtifactInvalid: the
    section shows the error."""
    if not artifacts.done(stage):
        raise NotRun(stage)
    if value is None or value is False:
        invalid = artifacts.invalid_of(stage)
        if invalid:
            raise ArtifactInvalid(invalid)
        raise NotRun(stage, f"`mira {stage}` is marked done, but {artifact or 'its artifacts'} could not be found "
                            f"or read; rerun `mira {stage} --force`.", finished=True)
    return value


def usage_totals(entry: Usage) -> dict[str, Any]:
    """Counters over every session of a stage (``total``), else the last session's."""
    totals = dict(entry.last)
    totals.update(entry.total)
    return totals


def selection_counts(counts: SelectionCounts, group: str | None = None,
                     threshold: float | None = None) -> dict[str, Any]:
    """One summary entry (source, group or totals) as the counts the report shows. Select counts
    unscored records inside `rejected` (or `kept`: their random share), so the books are
    ``records_in = kept + rejected + quarantined``."""
    return {"records_in": counts.records_in, "kept": counts.kept, "rejected": counts.rejected,
            "quarantined": counts.quarantined, "unscored": counts.unscored, "tokens_in": counts.tokens_in,
            "unscored_tokens": counts.unscored_tokens, "unscored_kept_tokens": counts.unscored_kept_tokens,
            "tokens_kept": counts.kept_tokens, "tokens_rejected": counts.rejected_tokens,
            "group": group, "threshold": threshold, "adds_up": counts.adds_up}


def selection_entries(summary: SelectionSummary, level: str) -> dict[str, dict[str, Any]]:
    """``level`` is "sources" or "groups"; values as :func:`selection_counts` shows them, with each
    unit's cutoff (the key of the last record kept) where the selection's mode is that level."""
    block = summary.sources if level == "sources" else summary.groups
    out = {}
    for name, counts in block.items():
        unit = summary.units.get(name) if summary.mode == level.rstrip("s") else None
        group = summary.source_groups.get(name) if level == "sources" else None
        out[name] = selection_counts(counts, group, unit.cutoff if unit else None)
    return out
