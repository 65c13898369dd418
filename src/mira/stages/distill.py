"""Distill: train one student per group on the teacher's labels, measure it, and mask what it cannot do.

Per group, the usable label rows (``ok``) measure the student in one of two ways
(``student.validation``). ``crossfit`` (default): the rows are dealt into ``student.folds`` folds,
stratified by source and seeded; each fold is predicted by a student trained on the other folds,
so every row gets an out-of-fold prediction and the student kept is then trained on every row.
``holdout``: ``student.val_fraction`` of each source's rows validate one student trained on the
rest. Either way a prediction is never judged against a row its model trained on, and any model
choice is a cross-validation inside the training rows. Every (source, anchor) cell gets MAE /
Spearman / n against the teacher (``metrics.json``), next to the teacher's own self-consistency,
the ceiling. The reliability mask (``mask.json``) follows from those cells and ``reliability.*``
(confidence bounds, never pooled across sources); changing only the thresholds recomputes the mask
without retraining.
"""

from __future__ import annotations

from typing import Any

from mira.core.hashing import fingerprint as make_fingerprint
from mira.io.files import hash_files
from mira.run.context import StageContext
from mira.scoring.distillation import VERSION, distill_group, label_files, raise_without_students
from mira.students.features import FEATURE_VERSION


def fingerprint(ctx: StageContext) -> str:
    # FEATURE_VERSION: students trained on other features are retrained (loading them is refused).
    return make_fingerprint(VERSION, FEATURE_VERSION, ctx.config.section_hash("student", "embed", "reliability"),
                            ctx.run.require("annotate"), hash_files(label_files(ctx.run)))


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.artifacts.anchors import rubric_is_empty
    from mira.artifacts.groups import load_groups

    groups = load_groups(ctx.run)
    counts: dict[str, Any] = {"groups": 0, "trained": 0, "masked_cells": 0}
    without: list[str] = []
    for group in groups.groups:
        path = ctx.run.path("labels", f"{group.id}.parquet")
        if not path.exists() and rubric_is_empty(ctx.run, group.id):
            # Discover found no anchor (its reasons are in rubrics/<group>.rejected.jsonl): nothing to
            # learn, so the group's sources stay unscored and select treats them by selection.unscored.
            ctx.notes.append(f"distill: group {group.id} has no rubric; its sources are unscored")
            counts["no_rubric"] = counts.get("no_rubric", 0) + 1
            continue
        if not path.exists():
            without.append(group.id)
            continue
        result = distill_group(ctx, group.id, path)
        counts["groups"] += 1
        counts["trained"] += result.get("trained", 0)
        counts["masked_cells"] += result.get("masked_cells", 0)
        if not (result.get("trained") or result.get("reused")):
            without.append(group.id)
    if without:
        raise_without_students(ctx.run, without)
    return counts
