"""Per-group student scorers: cheap models that predict the teacher's anchor scores.

    student = load_student(run, "g0")
    scores = student.predict(formats, texts)   # (n, len(student.anchors)), 0..10

``texts`` are the records' renderings (``mira.corpus.records.render`` with ``config.render``): the same
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

from mira.core.config import EmbedConfig, StudentConfig
from mira.io.files import read_json
from mira.run.rundir import RunDir
from mira.students.metrics import evaluate, spearman

# A student is trained (and a fold model fitted) only on at least this many label rows.
MIN_LABEL_ROWS = 2

__all__ = ["MIN_LABEL_ROWS", "Student", "load_student", "train", "student_dir", "spearman", "evaluate"]


class Student(Protocol):
    kind: str
    anchors: list[str]

    def predict(self, formats: Sequence[str | None] | None, texts: Sequence[str]) -> np.ndarray: ...
    def save(self, folder: Path) -> None: ...


def student_dir(run: RunDir, group: str) -> Path:
    return run.path("students", group)


def load_student(run: RunDir, group: str, device: str = "auto") -> Student:
    """The trained student of `group` (raises FileNotFoundError with a one-line hint if absent);
    an encoder student runs on `device` (auto, cpu or cuda)."""
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

        return EncoderStudent.load(folder, meta, device)
    raise ValueError(f"unknown student kind {meta['kind']!r} in {meta_path}")


def train(config: StudentConfig, embed: EmbedConfig, anchors: list[str], texts: Sequence[str],
          formats: Sequence[str | None], targets: np.ndarray, train_idx: np.ndarray,
          background: tuple[Sequence[str], Sequence[str | None]] | None = None) -> tuple[Student, dict[str, Any]]:
    """Train a student of ``config.kind`` on the `train_idx` rows only (`background`: renderings
    and formats of the group's unlabelled records, which the static student's features fit on).

    Any model choice happens by cross-validation inside those rows: the held-out validation rows
    judge reliability (mira.scoring.reliability) and must not also have picked the model they judge.
    """
    if config.kind == "encoder":
        from mira.students.encoder import EncoderStudent

        return EncoderStudent.fit(anchors, texts, targets, train_idx, config)
    from mira.students.static import StaticStudent

    return StaticStudent.fit(anchors, texts, formats, targets, train_idx, config, embed, background)
