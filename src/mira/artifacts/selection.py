"""Artifacts of select: named selections ``selection/<name>/`` (``mira.selection.named``), each with its
kept records, one decision per input record and a summary whose counts add up."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field

from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document

log = logging.getLogger(__name__)


class DecisionReason(StrEnum):
    """Why select kept or rejected a record (the ``reason`` column of the decisions). str-valued:
    the files hold the values. A quarantined record's reason is ``"quarantined: <why>"``."""

    KEPT = "kept"
    KEPT_FLOOR = "kept (source floor)"
    BELOW_CUTOFF = "below cutoff"
    SOURCE_CAP = "source cap"
    QUARANTINED = "quarantined"
    UNSCORED = "unscored (all anchors masked)"
    UNSCORED_KEPT = "kept (unscored: source-preserving random share)"
    UNSCORED_BELOW = "unscored: outside its random share"

    @classmethod
    def of(cls, text: str) -> DecisionReason:
        """The reason of a stored value (``"quarantined: ..."`` included)."""
        return cls.QUARANTINED if text.startswith(f"{cls.QUARANTINED.value}:") else cls(text)


UNSCORED_REASONS = (DecisionReason.UNSCORED, DecisionReason.UNSCORED_KEPT, DecisionReason.UNSCORED_BELOW)
# One-byte codes of the reasons (an index into REASONS): select holds one per record of the corpus,
# where an object array would cost 8 bytes a record.
REASONS = tuple(DecisionReason)
REASON_CODE = {reason: code for code, reason in enumerate(REASONS)}


class SelectionCounts(Document):
    """One source's, group's or the whole selection's books: ``records_in = kept + rejected +
    quarantined`` (select asserts it before writing); ``unscored`` records are inside ``rejected``
    or ``kept`` (their random share), never a fourth term."""

    records_in: int
    tokens_in: int
    kept: int
    kept_tokens: int
    rejected: int
    rejected_tokens: int = 0
    quarantined: int = 0
    unscored: int = 0
    unscored_tokens: int = 0
    # Of the kept: the unscored records a seeded random draw kept (``selection.unscored: random``),
    # so the rest of `kept` was ranked by the method's key. None in summaries written before.
    unscored_kept: int | None = None
    unscored_kept_tokens: int | None = None

    @property
    def adds_up(self) -> bool:
        return self.records_in == self.kept + self.rejected + self.quarantined


class RetentionUnit(Document):
    tokens_in: int
    budget_tokens: float
    unscored_share_tokens: float = 0.0
    kept_tokens: int
    cutoff: float | None = None  # key of the last record kept by rank
    eligible_records: int = 0
    records_in: int = 0


class SelectionSummary(Document):
    name: str | None = None  # absent in a selection written before selections had names
    fingerprint: str | None = None
    method: str
    mode: str
    key: str = "score"
    budget: float
    budget_kind: str = "fraction of tokens"
    budget_label: str | None = None
    budget_share: float | None = None
    floor: dict[str, float] = Field(default_factory=dict)
    cap: dict[str, float] = Field(default_factory=dict)
    seed: int = 0
    unscored_policy: str | None = None  # selection.unscored: "random" or "reject" (None: older summaries)
    totals: SelectionCounts
    sources: dict[str, SelectionCounts]
    groups: dict[str, SelectionCounts] = Field(default_factory=dict)
    units: dict[str, RetentionUnit] = Field(default_factory=dict)
    source_groups: dict[str, str | None] = Field(default_factory=dict)
    parquet_json_columns: dict[str, list[str]] = Field(default_factory=dict)  # (older selections: per source)
    # Fields held as JSON texts in every output file (their types differ between records or sources).
    json_columns: list[str] = Field(default_factory=list)


class CurrentSelection(Document):
    name: str


def decisions_schema() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field("id", pa.string()), pa.field("locator", pa.string()), pa.field("kept", pa.bool_()),
                      pa.field("reason", pa.string()), pa.field("rank", pa.int64()), pa.field("key", pa.float64()),
                      pa.field("tokens", pa.int64())])


SELECTED = Artifact(
    "selected", "selection/{name}/{source}/{shard}.{ext}", "select", "kept records (`ext`: the "
    "`selection.output_formats`: jsonl, jsonl.gz, jsonl.zst, parquet), one schema for every file of the selection: "
    "every source's fields (null where absent) + `mira_id, mira_score` (the join-time aggregate), `mira_group, "
    "mira_tokens, mira_reason, mira_anchors` (list of `anchor` \"<group>/<id>\", `name, score, reliable`); "
    "strict JSON (NaN/Infinity written as null)", kind="opaque",
    owner="mira.selection.build")
DECISIONS = Artifact(
    "decisions", "selection/{name}/_decisions/{source}/{shard}.parquet", "select", "one row per input record: "
    "`id, locator, kept, reason` (`mira.artifacts.selection.DecisionReason`), `rank, key, tokens`",
    kind="parquet", arrow=decisions_schema, compression="zstd")
SELECTION_CARD = Artifact(
    "selection_card", "selection/{name}/README.md", "select", "dataset card: YAML `configs` (one per JSON lines "
    "format, Parquet where it is the only one) with the selection's `features`, so `datasets.load_dataset(<folder>)` "
    "reads every source with one schema", kind="opaque", owner="mira.selection.card")
SELECTION_SUMMARY = Artifact(
    "selection_summary", "selection/{name}/summary.json", "select", "per source and group: records/tokens in, "
    "kept, rejected, quarantined (they add up), unscored; name, fingerprint, method, mode, budget, units",
    model=SelectionSummary)
CURRENT_SELECTION = Artifact(
    "current_selection", "selection/_current.json", "select", "`{\"name\": ...}`: the selection the last "
    "`mira select` wrote (the report's)", model=CurrentSelection)


def read_selection_summary(folder: Path) -> SelectionSummary | None:
    """The summary of the selection in `folder` (``selection/<name>/``, or ``selection/`` itself for
    a run written before selections had names); None when it is missing or does not validate."""
    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        return SELECTION_SUMMARY.parse(path)
    except (OSError, ValueError) as exc:
        log.warning("not a selection summary: %s: %s", path, str(exc).splitlines()[0] if str(exc) else exc)
        return None
