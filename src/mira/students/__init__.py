"""Per-group student scorers: cheap models that predict the teacher's anchor scores.

    student = load_student(run, "g0")
    scores = student.predict(formats, texts)   # (n, len(student.anchors)), 0..10

``texts`` are the records' renderings (``mira.records.render`` with ``config.render``): the same
text the teacher saw; ``formats`` are their records' formats (``Record.format``), one per text, or
None when unknown (the static student's format features then stay zero; the encoder reads none).
Two kinds: ``static`` (default; CPU, thousands of records per second) and ``encoder`` (a fine-tuned
transformer encoder, meant for a GPU). Importing this package is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mira.config import EmbedConfig, StudentConfig
from mira.rundir import RunDir, read_json

__all__ = ["Student", "load_student", "train", "student_dir", "spearman", "evaluate"]


class Student(Protocol):
    kind: str
    anchors: list[str]

    def predict(self, formats: Sequence[str | None] | None, texts: Sequence[str]) -> np.ndarray: ...
    def save(self, folder: Path) -> None: ...


def student_dir(run: RunDir, group: str) -> Path:
    return run.path("students", group)


def load_student(run: RunDir, group: str) -> Student:
    """The trained student of `group` (raises FileNotFoundError with a one-line hint if absent)."""
    folder = student_dir(run, group)
    meta_path = folder / "student.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no student for group {group!r} in {folder}; run `mira distill` first")
    meta = read_json(meta_path)
    if meta["kind"] == "static":
        from mira.students.static import StaticStudent

        return StaticStudent.load(folder, meta)
    if meta["kind"] == "encoder":
        from mira.students.encoder import EncoderStudent

        return EncoderStudent.load(folder, meta)
    raise ValueError(f"unknown student kind {meta['kind']!r} in {meta_path}")


def train(config: StudentConfig, embed: EmbedConfig, anchors: list[str], texts: Sequence[str],
          formats: Sequence[str | None], targets: np.ndarray,
          train_idx: np.ndarray) -> tuple[Student, dict[str, Any]]:
    """Train a student of ``config.kind`` on the `train_idx` rows only.

    Any model choice happens by cross-validation inside those rows: the held-out validation rows
    judge reliability (mira.reliability) and must not also have picked the model they judge.
    """
    if config.kind == "encoder":
        from mira.students.encoder import EncoderStudent

        return EncoderStudent.fit(anchors, texts, targets, train_idx, config)
    from mira.students.static import StaticStudent

    return StaticStudent.fit(anchors, texts, formats, targets, train_idx, config, embed)


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None when undefined (fewer than 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    value = float(spearmanr(a, b).statistic)
    return value if np.isfinite(value) else None


def _cell(pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(pred) & np.isfinite(target)
    n = int(ok.sum())
    rho = spearman(pred[ok], target[ok])
    return {"mae": round(float(np.mean(np.abs(pred[ok] - target[ok]))), 4) if n else None,
            "spearman": round(rho, 4) if rho is not None else None, "n": n}


def evaluate(pred: np.ndarray, target: np.ndarray, sources: Sequence[str], anchors: list[str]) -> dict[str, Any]:
    """Per (source, anchor) and group-wide validation MAE / Spearman / n, plus the mean Spearman."""
    source_of_row = np.asarray(sources, dtype=object)
    cells = {}
    for source in sorted(set(source_of_row.tolist())):
        rows = source_of_row == source
        cells[source] = {a: _cell(pred[rows, j], target[rows, j]) for j, a in enumerate(anchors)}
    overall = {a: _cell(pred[:, j], target[:, j]) for j, a in enumerate(anchors)}
    rhos = [c["spearman"] for c in overall.values() if c["spearman"] is not None]
    return {"cells": cells, "overall": overall,
            "mean_spearman": round(float(np.mean(rhos)), 4) if rhos else None,
            "mean_mae": round(float(np.mean([c["mae"] for c in overall.values() if c["mae"] is not None])), 4)
            if any(c["mae"] is not None for c in overall.values()) else None}
