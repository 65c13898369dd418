"""Artifacts of annotate and distill: the teacher's labels, the students' metrics, reliability
masks and held-out predictions. Per-anchor columns depend on the rubric, so the Arrow schemas
here are of the fixed columns; :func:`labels_schema` gives the full schema for a list of anchors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document


def labels_fixed() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field("record_id", pa.string()), pa.field("source", pa.string()),
                      pa.field("text", pa.string()), pa.field("format", pa.string()),
                      pa.field("tokens", pa.int64()), pa.field("ok", pa.bool_()), pa.field("error", pa.string())])


def labels_schema(anchor_ids: list[str]) -> Any:
    """Every column of a labels file: the fixed ones, then per anchor the target (`<id>`), the
    sampled integer, the rationale and which of expected/sampled the target is."""
    import pyarrow as pa

    fields = list(labels_fixed())
    for aid in anchor_ids:
        fields += [pa.field(aid, pa.float64()), pa.field(f"{aid}__sampled", pa.int64()),
                   pa.field(f"{aid}__why", pa.string()), pa.field(f"{aid}__target_kind", pa.string())]
    return pa.schema(fields)


def validation_fixed() -> Any:
    """Plus ``<anchor>__teacher`` and ``<anchor>__student`` (float64) per anchor."""
    import pyarrow as pa

    return pa.schema([pa.field("record_id", pa.string()), pa.field("source", pa.string())])


class CellMetrics(Document):
    mae: float | None = None
    spearman: float | None = None
    n: int = 0


class LabelStats(Document):
    """How the teacher's targets of one anchor vary (``mira.stages.distill.label_stats``)."""

    n: int = 0
    mean: float | None = None
    std: float | None = None
    modal_share: float | None = None  # share of the most common integer answered
    exact_share: float | None = None  # share of logprob expectations (the rest fell back to the integer)


class Metrics(Document):
    """``students/<group>/metrics.json``: validation metrics per source x anchor (never training rows)."""

    student: str = ""  # the student kind (static, encoder)
    regressor: str = ""
    anchors: list[str]
    cells: dict[str, dict[str, CellMetrics]] = Field(default_factory=dict)  # source -> anchor
    overall: dict[str, CellMetrics] = Field(default_factory=dict)  # pooled: shown, never used by the mask
    mean_spearman: float | None = None
    mean_mae: float | None = None
    candidates: dict[str, Any] = Field(default_factory=dict)
    teacher_consistency: CellMetrics = Field(default_factory=CellMetrics)
    labels: dict[str, LabelStats] = Field(default_factory=dict)  # anchor -> spread of the targets
    train_rows: int = 0
    validation_rows: int = 0
    validation: str = "held-out rows"  # how the cells were measured (cross-fitting or held-out rows)
    train_key: str | None = None  # what the model depends on: same key, only the mask is rebuilt
    model_choice: str | None = None  # why this regressor (e.g. fewer than student.prior_below rows)


class MaskCell(Document):
    masked: bool
    # Absent in masks written before the status existed: the report derives it from n.
    status: Literal["reliable", "unreliable", "undecidable"] | None = None
    reason: str | None = None
    weight: float = 0.0
    basis: str = "source"  # "source" or "*" (the group cell decided)
    n: int = 0
    spearman: float | None = None
    mae: float | None = None
    lower: float | None = None  # one-sided lower bound of the Spearman


class Mask(Document):
    """``students/<group>/mask.json`` (``mira.scoring.reliability.build_mask``); select and the report use
    ``mira.scoring.reliability.current_mask``, which rebuilds it under changed thresholds."""

    anchors: list[str]
    cells: dict[str, dict[str, MaskCell]]  # source (or "*") -> anchor
    needed_rows: int | None = None
    thresholds: dict[str, Any] | None = None  # absent: hand-written, used as is
    teacher_mae: float | None = None
    summary: dict[str, int] | None = None
    # The group's aggregate checked within sources, with its verdict (mira.scoring.agreement.judge_aggregate).
    aggregate: dict[str, Any] | None = None


LABELS = Artifact(
    "labels", "labels/{group}.parquet", "annotate", "teacher labels, see below", kind="parquet",
    arrow=labels_fixed, not_suffixes=(".consistency.parquet",))
CONSISTENCY = Artifact(
    "consistency", "labels/{group}.consistency.parquet", "annotate", "the same records scored a second time "
    "(an equivalent variant of the prompt: shuffled anchor order, or guides HIGH -> LOW for annotate_v3)",
    kind="parquet", arrow=labels_fixed)
STUDENT = Artifact(
    "student", "students/{group}/", "distill", "the student's model files: `student.json` (kind, "
    "anchors, feature settings; a static student's `feature_version`, part of distill's fingerprint, so a "
    "student of older features is retrained) and its weights beside it", kind="opaque", owner="mira.students")
METRICS = Artifact(
    "metrics", "students/{group}/metrics.json", "distill", "validation MAE / Spearman per source x anchor, "
    "teacher self-consistency, model choice, `train_key`", model=Metrics)
MASK = Artifact(
    "mask", "students/{group}/mask.json", "distill", "the reliability mask under distill's thresholds (select "
    "and the report use `mira.scoring.reliability.current_mask`)", model=Mask)
VALIDATION = Artifact(
    "validation", "students/{group}/validation.parquet", "distill",
    "out-of-fold (crossfit) or held-out rows: `record_id`, `source`, "
    "`<anchor>__teacher`, `<anchor>__student` (the report's read-tests)", kind="parquet", arrow=validation_fixed)
