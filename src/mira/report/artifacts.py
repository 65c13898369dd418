"""Read every artifact of a run directory for the report, tolerating whatever is missing.

The report must render for a partial run, so each reader returns ``None`` (or an empty mapping)
instead of raising when a stage has not run. Large artifacts (score shards) are streamed once,
column-pruned, into bounded summaries: histograms and a seeded sample per source, never the
whole table in memory.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mira.rundir import STAGES, RunDir, read_json

if TYPE_CHECKING:
    from mira.config import ReliabilityConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

SCORE_BINS = np.linspace(0.0, 10.0, 41)
SAMPLE_PER_SOURCE = 1_500
# A group's aggregate is flagged (near-)constant when the spread between its 10th and 90th
# percentile is below one histogram bin, or it takes fewer than MIN_DISTINCT values: selection
# inside the group is then decided by the tie-break, not by the score.
CONSTANT_SPREAD = 0.25
MIN_DISTINCT = 5
# ... and flagged as mostly explained by length from this |Spearman(score, tokens)| ("strong").
LENGTH_RHO = 0.6


def _json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                log.warning("report: skipping a malformed line in %s", path)
    return rows


@dataclass
class SourceScores:
    """Streaming summary of one source's score shards."""

    rows: int = 0
    scored: int = 0
    unscored: int = 0
    quarantined: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BINS) - 1, dtype=np.int64))
    sample_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.scored if self.scored else math.nan

    def quantile(self, q: float) -> float:
        """Approximate quantile from the histogram (bin resolution 0.25)."""
        if not self.scored:
            return math.nan
        cum = np.cumsum(self.hist)
        idx = int(np.searchsorted(cum, q * cum[-1]))
        return float((SCORE_BINS[idx] + SCORE_BINS[idx + 1]) / 2)


class Artifacts:
    """Lazy access to a run directory's artifacts; every property is computed once."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    # --- small JSON artifacts ---------------------------------------------------------------
    @cached_property
    def markers(self) -> dict[str, dict[str, Any]]:
        return {stage: marker for stage in STAGES if (marker := self.run.done(stage))}

    def done(self, stage: str) -> bool:
        return stage in self.markers

    @cached_property
    def config(self) -> dict[str, Any]:
        import yaml

        path = self.run.config_path
        if not path.exists():
            return {}
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            data = {}
        match = re.search(r"fingerprint\s+([0-9a-f]+)", text.splitlines()[0] if text else "")
        data["_fingerprint"] = match.group(1) if match else None
        return data

    @cached_property
    def inventory(self) -> dict[str, Any] | None:
        return _json(self.run.inventory_path)

    @cached_property
    def groups(self) -> dict[str, Any] | None:
        return _json(self.run.groups_path)

    @cached_property
    def selection_path(self) -> Path | None:
        """The selection the report's sections explain (see :func:`mira.selections.current_selection`)."""
        from mira.selections import current_selection

        return current_selection(self.run)

    @cached_property
    def summary(self) -> dict[str, Any] | None:
        return _json(self.selection_path / "summary.json") if self.selection_path else None

    @cached_property
    def selections(self) -> list[dict[str, Any]]:
        from mira.selections import list_selections

        return list_selections(self.run)

    @cached_property
    def comparison(self) -> dict[str, Any] | None:
        return _json(self.run.path("compare", "summary.json"))

    @cached_property
    def usage(self) -> dict[str, dict[str, Any]]:
        if not self.run.usage_dir.exists():
            return {}
        return {p.stem: data for p in sorted(self.run.usage_dir.glob("*.json")) if (data := _json(p))}

    @cached_property
    def group_ids(self) -> list[str]:
        if self.groups and self.groups.get("groups"):
            return [g["id"] for g in self.groups["groups"]]
        found: set[str] = set()
        for folder in ("rubrics", "labels", "students"):
            base = self.run.path(folder)
            if base.exists():
                found.update(p.stem.split(".")[0] if p.is_file() else p.name for p in base.iterdir()
                             if not p.name.startswith("."))
        return sorted(found)

    @cached_property
    def source_to_group(self) -> dict[str, str]:
        return dict((self.groups or {}).get("source_to_group") or {})

    @cached_property
    def sources(self) -> list[str]:
        """Every source name, ordered by group then name, so plots and tables agree."""
        names = set((self.inventory or {}).get("sources", {})) | set(self.source_to_group)
        names |= {p.name for p in self.run.path("scores").glob("*") if p.is_dir()}
        order = {g: i for i, g in enumerate(self.group_ids)}
        return sorted(names, key=lambda s: (order.get(self.source_to_group.get(s, ""), len(order)), s))

    def group_label(self, group: str) -> str:
        for g in (self.groups or {}).get("groups", []):
            if g.get("id") == group:
                return str(g.get("label") or group)
        return group

    def rubric(self, group: str) -> list[dict[str, Any]]:
        path = self.run.path("rubrics", f"{group}.jsonl")
        return _jsonl(path) if path.exists() else []

    def rubric_rejected(self, group: str) -> list[dict[str, Any]]:
        """Candidate anchors discover dropped, each with its `reason` (rubrics/<group>.rejected.jsonl)."""
        path = self.run.path("rubrics", f"{group}.rejected.jsonl")
        return _jsonl(path) if path.exists() else []

    def anchor_names(self, group: str) -> dict[str, str]:
        # An entry without an id could never be looked up by anchor id, so it is left out.
        return {a["id"]: a.get("name") or a["id"] for a in self.rubric(group) if a.get("id")}

    def metrics(self, group: str) -> dict[str, Any] | None:
        return _json(self.run.path("students", group, "metrics.json"))

    def mask(self, group: str) -> dict[str, Any] | None:
        return _json(self.run.path("students", group, "mask.json"))

    @cached_property
    def reliability(self) -> ReliabilityConfig:
        """The run's reliability config (from config.yaml): what the last selection aggregated with."""
        from pydantic import ValidationError

        from mira.config import ReliabilityConfig

        try:
            return ReliabilityConfig.model_validate(self.config.get("reliability") or {})
        except ValidationError:
            return ReliabilityConfig()

    @cached_property
    def _current_masks(self) -> dict[str, Any]:
        return {}

    def current_mask(self, group: str) -> dict[str, Any] | None:
        """The group's mask under the run's reliability config, as select uses it (None if unknown)."""
        from mira.reliability import current_mask

        if group not in self._current_masks:
            try:
                self._current_masks[group] = current_mask(self.run, group, self.reliability)
            except (OSError, ValueError, KeyError, RuntimeError):  # RuntimeError: StageNotReady
                self._current_masks[group] = None
        return self._current_masks[group]

    def aggregates(self, table: Any) -> np.ndarray:
        """Each row's aggregate score, computed as select computes it (mira.score_table.aggregate_scores).

        Score files written before the aggregate moved to select (score-v1) carry it as `score`.
        """
        from mira.score_table import aggregate_scores

        if "score" in table.column_names:
            return np.array([math.nan if v is None else v for v in table.column("score").to_pylist()], float)
        groups = [g for g in table.column("group").to_pylist() if g] if "group" in table.column_names else []
        mask = self.current_mask(groups[0]) if groups else None
        if mask is None or any(a not in table.column_names for a in mask["anchors"]):
            return np.full(table.num_rows, math.nan)
        return aggregate_scores(table, mask, self.reliability)

    def judgments(self, group: str) -> list[dict[str, Any]]:
        path = self.run.path("judgments", f"{group}.jsonl")
        return _jsonl(path) if path.exists() else []

    # --- parquet artifacts ------------------------------------------------------------------
    def labels(self, group: str) -> Any:
        """The group's teacher labels as a pyarrow Table (labelled samples are small), or None."""
        return _parquet(self.run.path("labels", f"{group}.parquet"))

    def validation(self, group: str) -> Any:
        return _parquet(self.run.path("students", group, "validation.parquet"))

    def score_files(self, source: str) -> list[Path]:
        return sorted(self.run.path("scores", source).glob("*.parquet"))

    @cached_property
    def scores(self) -> dict[str, SourceScores]:
        """One streaming pass over every score shard: histogram + seeded sample per source."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        result: dict[str, SourceScores] = {}
        for source in self.sources:
            files = self.score_files(source)
            if not files:
                continue
            stats = SourceScores()
            kept_tokens: list[np.ndarray] = []
            kept_scores: list[np.ndarray] = []
            rng = np.random.default_rng(_seed(source))
            # Bernoulli sample sized so that about SAMPLE_PER_SOURCE rows survive overall.
            rate = min(1.0, SAMPLE_PER_SOURCE / max(1, _expected_rows(self, source)))
            for path in files:
                handle = pq.ParquetFile(path)
                columns = [c for c in handle.schema_arrow.names if c not in ("id", "locator")]
                for batch in handle.iter_batches(columns=columns, batch_size=65_536):
                    data = batch.to_pydict()
                    n = batch.num_rows
                    score = self.aggregates(pa.Table.from_batches([batch]))
                    tokens = np.array([0 if v is None else v for v in data.get("tokens", [0] * n)], float)
                    quarantined = np.array([q is not None for q in data.get("quarantine", [None] * n)])
                    ok = ~np.isnan(score)
                    stats.rows += n
                    stats.quarantined += int(quarantined.sum())
                    stats.unscored += int((~ok & ~quarantined).sum())
                    stats.scored += int(ok.sum())
                    stats.total += float(score[ok].sum())
                    stats.hist += np.histogram(np.clip(score[ok], 0, 10), SCORE_BINS)[0]
                    pick = ok & (rng.random(n) < rate)
                    kept_tokens.append(tokens[pick])
                    kept_scores.append(score[pick])
            stats.sample_tokens = np.concatenate(kept_tokens) if kept_tokens else np.zeros(0)
            stats.sample_scores = np.concatenate(kept_scores) if kept_scores else np.zeros(0)
            result[source] = stats
        return result

    def student_scores_for(self, source: str, ids: set[str], columns: list[str] | None) -> dict[str, dict[str, Any]]:
        """Rows of this source's score shards whose id is in `ids` (a small set: labelled records);
        `columns` None: every column."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        found: dict[str, dict[str, Any]] = {}
        wanted = pa.array(sorted(ids), pa.string())
        for path in self.score_files(source):
            handle = pq.ParquetFile(path)
            names = set(handle.schema_arrow.names)
            if "id" not in names:
                continue
            cols = ["id"] + [c for c in (columns if columns is not None else sorted(names)) if c in names and c != "id"]
            for batch in handle.iter_batches(columns=cols, batch_size=65_536):
                table = pa.Table.from_batches([batch])
                hits = table.filter(pc.is_in(table["id"], value_set=wanted))
                for row in hits.to_pylist():
                    found[str(row["id"])] = row
        return found


def aggregate_warnings(scores: np.ndarray, tokens: np.ndarray) -> list[str]:
    """Plain-text warnings about one group's aggregate scores (a sample of scored records).

    (Near-)constant: p90 - p10 < CONSTANT_SPREAD or fewer than MIN_DISTINCT distinct values.
    Length-driven: |Spearman(score, tokens)| >= LENGTH_RHO.
    """
    from mira.report.html import spearman

    scores, tokens = np.asarray(scores, float), np.asarray(tokens, float)
    keep = ~np.isnan(scores)
    scores, tokens = scores[keep], tokens[keep]
    if len(scores) < 2:
        return []
    warnings = []
    p10, p90 = np.percentile(scores, [10, 90])
    distinct = len(np.unique(np.round(scores, 6)))
    if p90 - p10 < CONSTANT_SPREAD or distinct < MIN_DISTINCT:
        warnings.append(f"the aggregate is (near-)constant: p10 {p10:.2f}, p90 {p90:.2f}, {distinct} distinct "
                        f"value(s) in {len(scores)} sampled records; selection inside this group is decided by "
                        "the tie-break, not by quality")
    rho = spearman(tokens, scores)
    if rho == rho and abs(rho) >= LENGTH_RHO:
        warnings.append(f"the aggregate is mostly explained by length: Spearman(score, tokens) = {rho:.2f} "
                        f"(|ρ| >= {LENGTH_RHO}); selection here is close to a length filter")
    return warnings


def _seed(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _expected_rows(artifacts: Artifacts, source: str) -> int:
    info = (artifacts.inventory or {}).get("sources", {}).get(source)
    if info and info.get("records"):
        return int(info["records"])
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in artifacts.score_files(source))


def _parquet(path: Path) -> Any:
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None


class NotRun(Exception):
    """Raised by a section whose artifacts are missing; the page shows a "not run yet" box."""

    def __init__(self, stage: str, detail: str = "", finished: bool = False) -> None:
        super().__init__(stage)
        self.stage = stage
        self.detail = detail
        self.finished = finished  # the stage ran, but what this section reads is missing


def need(artifacts: Artifacts, stage: str, value: T | None, artifact: str = "") -> T:
    """A section's guard: its stage has finished and the artifact it reads is there (returned, not None)."""
    if not artifacts.done(stage):
        raise NotRun(stage)
    if value is None or value is False:
        raise NotRun(stage, f"`mira {stage}` is marked done, but {artifact or 'its artifacts'} could not be found "
                            f"or read; rerun `mira {stage} --force`.", finished=True)
    return value


def usage_totals(entry: dict[str, Any]) -> dict[str, Any]:
    """Counters over every session of a stage (``total``), else the last session's."""
    totals = dict(entry.get("last") or {})
    totals.update(entry.get("total") or {})
    return totals


# selection/summary.json is read tolerantly: flat keys ("records_in", "tokens_kept") or nested
# ({"records": {"in": ..}, "tokens": {"kept": ..}}), with the common spellings of each count.
_ALIASES = {
    "records_in": ("records_in", "records", "in", "n_in", "records.in"),
    "kept": ("kept", "records_kept", "kept_records", "records.kept"),
    "rejected": ("rejected", "records_rejected", "rejected_records", "records.rejected"),
    "quarantined": ("quarantined", "records_quarantined", "records.quarantined"),
    "unscored": ("unscored", "records_unscored", "nan", "records.unscored"),
    "tokens_in": ("tokens_in", "tokens", "tokens.in", "in_tokens"),
    "tokens_kept": ("kept_tokens", "tokens_kept", "tokens.kept"),
    "tokens_rejected": ("tokens_rejected", "rejected_tokens", "tokens.rejected"),
}


def _lookup(entry: dict[str, Any], key: str) -> Any:
    value: Any = entry
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def selection_counts(entry: dict[str, Any]) -> dict[str, Any]:
    """One summary entry (source, group or totals) as the counts the report shows."""
    out: dict[str, Any] = {}
    for name, keys in _ALIASES.items():
        out[name] = next((v for k in keys if (v := _lookup(entry, k)) is not None), None)
    out["group"] = entry.get("group")
    out["threshold"] = entry.get("threshold")
    parts = [out[k] or 0 for k in ("kept", "rejected", "quarantined")]
    total_in = out["records_in"]
    if total_in is None:
        out["adds_up"] = None
    elif sum(parts) + (out["unscored"] or 0) == total_in:
        out["adds_up"], out["unscored_separate"] = True, True
    else:
        # Some writers count unscored records inside `rejected`.
        out["adds_up"], out["unscored_separate"] = sum(parts) == total_in, False
    return out


def selection_entries(summary: dict[str, Any], level: str) -> dict[str, dict[str, Any]]:
    """``level`` is "sources" or "groups"; values are normalised by :func:`selection_counts`."""
    block = summary.get(level) or {}
    if isinstance(block, list):  # a list of entries with a name / id field
        block = {str(e.get("source") or e.get("group") or e.get("id") or e.get("name")): e for e in block}
    out = {name: selection_counts(entry) for name, entry in block.items() if isinstance(entry, dict)}
    source_groups = summary.get("source_groups") or {}
    units = summary.get("units") or {}
    for name, counts in out.items():
        if level == "sources" and counts["group"] is None:
            counts["group"] = source_groups.get(name)
        # The select stage records each unit's cutoff (the key of the last record kept).
        unit = units.get(name) if isinstance(units, dict) else None
        if counts["threshold"] is None and isinstance(unit, dict) and summary.get("mode") == level.rstrip("s"):
            counts["threshold"] = unit.get("cutoff")
    return out
