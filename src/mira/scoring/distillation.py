"""Distilling the teacher into students: one student per group, validated out of fold, with its reliability mask."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mira.artifacts import ArtifactInvalid
from mira.artifacts.students import METRICS
from mira.core.errors import StageNotReady
from mira.core.hashing import fingerprint as make_fingerprint
from mira.core.hashing import stable_rank
from mira.io.files import atomic_path, hash_files
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.scoring.checks import aggregate_check, background_renderings, confirmation_rows, length_crossfit
from mira.students import MIN_LABEL_ROWS
from mira.students.features import FEATURE_VERSION

log = logging.getLogger(__name__)
VERSION = "distill-v7"  # v2: cross-fitted validation with fold intercepts removed; v3: also in the model choice;
# v4: a confirmation slice, the aggregate checked within sources, unlabelled background records;
# v5: the few-label regressor's penalty grid starts at 1; v6: a confirmation slice only where it can decide;
# v7: the slice's rows join the lower bound, and it vetoes only below the cross-fit beyond noise



def label_files(run: RunDir) -> list[Path]:
    folder = run.path("labels")
    return sorted(folder.glob("*.parquet")) if folder.exists() else []




def split(record_ids: list[str], sources: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: per source, the seeded-rank first share goes to validation.

    A source with two or more rows gives at least one to validation and keeps at least one for
    training; a single-row source trains only.
    """
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    train, val = [], []
    for rows in by_source.values():
        rows = sorted(rows, key=lambda i: stable_rank(seed, record_ids[i]))
        n_val = 0 if len(rows) < 2 else min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
        val += rows[:n_val]
        train += rows[n_val:]
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def folds(record_ids: list[str], sources: list[str], k: int, seed: int) -> np.ndarray:
    """Fold of every row (0..k-1): per source, rows in seeded-rank order dealt round robin, each
    source starting where the previous one stopped, so folds stay even in size and in sources."""
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_source.setdefault(source, []).append(i)
    fold = np.zeros(len(record_ids), dtype=np.int64)
    turn = 0
    for source in sorted(by_source):
        for i in sorted(by_source[source], key=lambda i: stable_rank(seed, record_ids[i])):
            fold[i] = turn % k
            turn += 1
    return fold


def crossfit_predictions(config: Any, embed: Any, anchors: list[str], texts: list[str], formats: list[str],
                         targets: np.ndarray, fold: np.ndarray,
                         background: tuple[list[str], list[str | None]] | None = None) -> np.ndarray:
    """Out-of-fold predictions (:func:`crossfit_with_offsets`, without the source offsets)."""
    return crossfit_with_offsets(config, embed, anchors, texts, formats, targets, fold, background)[0]


def crossfit_with_offsets(config: Any, embed: Any, anchors: list[str], texts: list[str], formats: list[str],
             targets: np.ndarray, fold: np.ndarray, background: tuple[list[str], list[str | None]] | None = None,
             sources: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions: row i predicted by a student trained without i's fold. A fold
    whose complement has fewer than MIN_LABEL_ROWS rows stays NaN (not judged), and so do the rows of
    fold -1 (set aside: neither trained on nor predicted).

    Each fold's predictions are shifted by (mean of all targets - mean of its training targets).
    Without it, cross-fitting ranks a student that has learnt nothing *against* the teacher: a
    fold holding high targets trains on lower ones, so a model near its training mean predicts
    low exactly where the teacher is high (a mean predictor scores Spearman -1 on 1..12). The
    shift removes the fold's intercept, which is not what reliability judges; the ranking the
    student adds on top is unchanged.

    Also returns, with `sources` (else NaN), each row's *source offset*: the mean prediction of its fold's
    model over that fold's training rows of the same source. The same artefact works inside a
    source: a model that learns a source's level from its training rows predicts low exactly where
    the held-out row is high (the training mean of its source dropped without it), so with a few
    rows per source the raw out-of-fold predictions rank rows *against* the teacher within
    sources. Prediction minus offset is the deviation the model predicts from its own view of the
    source, which within-source statistics compare (:func:`mira.scoring.checks.aggregate_check`).
    """
    from mira.students import train

    pred = np.full(targets.shape, np.nan)
    offsets = np.full(targets.shape, np.nan)
    in_folds = np.flatnonzero(fold >= 0)  # fold -1: the confirmation slice, never fitted on here
    overall = _column_means(targets[in_folds])
    for f in np.unique(fold[in_folds]):
        train_idx, held = np.flatnonzero((fold != f) & (fold >= 0)), np.flatnonzero(fold == f)
        if len(train_idx) < MIN_LABEL_ROWS:
            continue
        student, _ = train(config, embed, anchors, texts, formats, targets, train_idx, background)
        raw = np.asarray(student.predict([formats[i] for i in held], [texts[i] for i in held]), dtype=np.float64)
        # A missing target (NaN) must not blank a whole fold: means over the targets present, and
        # no shift for an anchor with none.
        shift = np.nan_to_num(overall - _column_means(targets[train_idx]))
        pred[held] = raw + shift
        if sources is not None:
            fitted = np.asarray(student.predict([formats[i] for i in train_idx], [texts[i] for i in train_idx]),
                                dtype=np.float64) + shift
            train_sources = np.array([sources[i] for i in train_idx], dtype=object)
            for i in held:
                same = train_sources == sources[i]
                offsets[i] = fitted[same].mean(axis=0) if same.any() else fitted.mean(axis=0)
    return pred, offsets


def _column_means(values: np.ndarray) -> np.ndarray:
    present = np.isfinite(values)
    counts = present.sum(axis=0)
    sums = np.where(present, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def read_labels(path: Path) -> tuple[Any, list[str]]:
    """(ok rows as a pyarrow table, anchor ids in column order)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    anchors = [c for c in table.column_names if f"{c}__sampled" in table.column_names]
    return table.filter(pc.equal(table["ok"], True)), anchors


def teacher_consistency(labels: Any, again_path: Path, anchors: list[str]) -> dict[str, Any]:
    """MAE / Spearman between the two scorings of the re-scored records (pooled over anchors)."""
    from mira.students import spearman

    if not again_path.exists():
        return {"mae": None, "spearman": None, "n": 0}
    again, _ = read_labels(again_path)
    # Keyed by (source, id): ids are unique only within a source.
    first = {key: i for i, key in enumerate(_keys(labels))}
    pairs_a, pairs_b, per_anchor = [], [], {}
    rows = [(first[key], j) for j, key in enumerate(_keys(again)) if key in first]
    for anchor in anchors:
        a = np.array([labels[anchor][i].as_py() for i, _ in rows], dtype=np.float64)
        b = np.array([again[anchor][j].as_py() for _, j in rows], dtype=np.float64)
        pairs_a.append(a)
        pairs_b.append(b)
        rho = spearman(a, b)
        per_anchor[anchor] = {"mae": round(float(np.mean(np.abs(a - b))), 4) if len(a) else None,
                              "spearman": round(rho, 4) if rho is not None else None, "n": len(a)}
    a, b = (np.concatenate(pairs_a), np.concatenate(pairs_b)) if pairs_a else (np.zeros(0), np.zeros(0))
    rho = spearman(a, b)
    return {"mae": round(float(np.mean(np.abs(a - b))), 4) if len(a) else None,
            "spearman": round(rho, 4) if rho is not None else None, "n": len(rows), "pairs": int(len(a)),
            "anchors": per_anchor}


def label_stats(labels: Any, anchors: list[str]) -> dict[str, dict[str, Any]]:
    """Per anchor, how much the teacher's targets vary and where they come from: ``n``, ``mean``,
    ``std``, ``modal_share`` (share of the most common integer answered) and ``exact_share``
    (share of targets that are logprob expectations rather than a fallback to that integer).
    A student cannot learn a ranking the labels do not have: the report shows these next to it."""
    from collections import Counter

    out: dict[str, dict[str, Any]] = {}
    columns = set(labels.column_names)
    for anchor in anchors:
        values = np.array([v for v in labels[anchor].to_pylist() if v is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        sampled = [v for v in labels[f"{anchor}__sampled"].to_pylist() if v is not None]
        kinds = ([k for k in labels[f"{anchor}__target_kind"].to_pylist() if k is not None]
                 if f"{anchor}__target_kind" in columns else [])
        out[anchor] = {
            "n": int(len(values)),
            "mean": round(float(values.mean()), 4) if len(values) else None,
            "std": round(float(values.std()), 4) if len(values) else None,
            "modal_share": round(Counter(sampled).most_common(1)[0][1] / len(sampled), 4) if sampled else None,
            "exact_share": round(sum(k == "expected" for k in kinds) / len(kinds), 4) if kinds else None,
        }
    return out


def _keys(table: Any) -> list[tuple[str, str]]:
    return list(zip(table["source"].to_pylist(), table["record_id"].to_pylist(), strict=True))


def _background(ctx: StageContext, group: str, labelled: set[tuple[str, str]]) -> tuple[list[str], list[str | None]]:
    """Renderings of the group's unlabelled records (``student.background_records``)."""
    from mira.artifacts.groups import load_groups
    from mira.corpus.sources import source_infos

    config = ctx.config
    if config.student.kind != "static" or config.student.background_records <= 0:
        return [], []
    try:
        infos = {i.name: i for i in source_infos(ctx.run)}
        members = load_groups(ctx.run).group(group).sources
    except (StageNotReady, KeyError):  # labels written without an ingested corpus (hand-made, tests)
        log.info("distill %s: no corpus to draw unlabelled records from; components fit on the labels", group)
        return [], []
    usable = [infos[s] for s in members if s in infos and infos[s].ok > 0]
    return background_renderings(config, usable, config.student.background_records, labelled,
                                 config.annotation.seed + 1)


def _train_key(ctx: StageContext, labels_path: Path) -> str:
    # What the trained model depends on (not the reliability thresholds): if it matches, only the
    # mask is recomputed. The model-choice rule is part of it: students whose regressor was chosen
    # on the validation rows (before cross-validation inside the training rows) are retrained.
    # The background sample (unlabelled records) depends on the corpus, the rendering and the seed.
    return make_fingerprint(VERSION, FEATURE_VERSION, "model choice: cv in train rows",
                            ctx.config.section_hash("student", "embed", "render", "tokenizer"),
                            ctx.config.annotation.seed, ctx.config.reliability.min_confirmation_rows,
                            ctx.run.stage_fingerprint("ingest"),
                            hash_files([labels_path]))


def distill_group(ctx: StageContext, group: str, labels_path: Path) -> dict[str, Any]:
    from mira.scoring.reliability import build_mask, load_metrics, write_mask
    from mira.students import evaluate, student_dir, train

    config, run_dir = ctx.config, ctx.run
    folder = student_dir(run_dir, group)
    key = _train_key(ctx, labels_path)
    metrics_path = folder / "metrics.json"
    if not ctx.force and metrics_path.exists() and (folder / "student.json").exists():
        try:
            metrics = load_metrics(run_dir, group)
        except ArtifactInvalid as exc:  # a damaged file is retrained, not trusted
            log.warning("%s; training the student again", exc)
            metrics = {}
        if metrics.get("train_key") == key:
            mask = build_mask(metrics, config.reliability)
            write_mask(run_dir, group, mask)
            return {"trained": 0, "reused": 1, "masked_cells": mask["summary"]["masked"]}

    labels, anchors = read_labels(labels_path)
    n = labels.num_rows
    if n < MIN_LABEL_ROWS or not anchors:
        ctx.notes.append(f"distill: group {group} has {n} usable label rows; no student trained")
        return {"trained": 0, "skipped": 1}
    texts = labels["text"].to_pylist()
    sources = labels["source"].to_pylist()
    formats = labels["format"].to_pylist()
    record_ids = labels["record_id"].to_pylist()
    tokens = np.array(labels["tokens"].to_pylist(), dtype=np.float64) if "tokens" in labels.column_names else None
    targets = np.column_stack([np.array(labels[a].to_pylist(), dtype=np.float64) for a in anchors])
    scfg = config.student
    # Set aside before anything is fitted or chosen: the final student is judged there once.
    confirm = confirmation_rows(record_ids, sources, scfg.confirm_fraction, scfg.confirm_min_rows, scfg.seed,
                                config.reliability.min_confirmation_rows)
    work = np.setdiff1d(np.arange(n), confirm)
    background = _background(ctx, group, set(zip(sources, record_ids, strict=True)))
    crossfit = scfg.validation == "crossfit" and len(work) >= 2 * MIN_LABEL_ROWS
    fold = np.full(n, -1, dtype=np.int64)
    offsets: np.ndarray | None = None
    if crossfit:
        k = min(scfg.folds, len(work))  # dealt round robin over the rows: no fold is empty
        validated_by = f"{k}-fold cross-fitting: each row predicted by a student trained without its fold"
        task = ctx.progress(f"distill {group} ({scfg.kind}, {n} rows, {k} folds)", None)
        fold[work] = folds([record_ids[i] for i in work], [sources[i] for i in work], k, scfg.seed)
        oof, offsets = crossfit_with_offsets(scfg, config.embed, anchors, texts, formats, targets, fold, background,
                                             sources)
        train_idx = work
        val_idx = work[np.isfinite(oof[work]).all(axis=1)]
        pred = oof[val_idx]
    else:
        validated_by = "held-out rows"
        split_train, split_val = split([record_ids[i] for i in work], [sources[i] for i in work],
                                       scfg.val_fraction, scfg.seed)
        train_idx, val_idx = work[split_train], work[split_val]
        fold[val_idx] = 0
        task = ctx.progress(f"distill {group} ({scfg.kind}, {len(train_idx)} train rows)", None)
    # Disjoint roles: the rows a model trains on fit it and choose its regressor (cross-validation
    # inside them); it is judged only on rows it never saw (its held-out fold, the validation rows,
    # and the confirmation slice, which no fold model and no model choice saw).
    student, info = train(scfg, config.embed, anchors, texts, formats, targets, train_idx, background)
    task.close()
    if len(val_idx) and not crossfit:
        pred = student.predict([formats[i] for i in val_idx], [texts[i] for i in val_idx])
    if len(val_idx):
        validation = evaluate(pred, targets[val_idx], [sources[i] for i in val_idx], anchors)
    else:
        validation = evaluate(np.zeros((0, len(anchors))), np.zeros((0, len(anchors))), [], anchors)
    full_pred = np.full(targets.shape, np.nan)
    if len(val_idx):
        full_pred[val_idx] = pred
    length_pred = None
    if tokens is not None:
        mean_target = np.nanmean(targets, axis=1)
        length_pred = length_crossfit(tokens, mean_target, fold) if crossfit else None
    # Within sources, what counts is the deviation each fold model predicts from its own view of the
    # source (crossfit_with_offsets); held-out rows (holdout) share one model: nothing to remove.
    aggregate = aggregate_check(full_pred, targets, sources, val_idx, length_pred, offsets)
    if len(confirm):
        confirm_pred = np.full(targets.shape, np.nan)
        confirm_pred[confirm] = student.predict([formats[i] for i in confirm], [texts[i] for i in confirm])
        aggregate["confirmation"] = aggregate_check(confirm_pred, targets, sources, confirm)
    consistency = teacher_consistency(labels, labels_path.with_name(f"{group}.consistency.parquet"), anchors)
    metrics = {"student": student.kind, "regressor": info["regressor"], "anchors": anchors,
               "cells": validation["cells"], "overall": validation["overall"],
               "mean_spearman": validation["mean_spearman"], "mean_mae": validation["mean_mae"],
               "candidates": info.get("candidates", {}), "teacher_consistency": consistency,
               "train_rows": int(len(train_idx)), "validation_rows": int(len(val_idx)),
               "validation": validated_by, "labels": label_stats(labels, anchors), "aggregate": aggregate,
               "background_records": len(background[0]) if background else 0,
               "train_key": key, **{k: v for k, v in info.items() if k not in ("regressor", "candidates")}}
    student.save(folder)
    if len(val_idx):
        write_validation(folder / "validation.parquet", [record_ids[i] for i in val_idx],
                         [sources[i] for i in val_idx], anchors, targets[val_idx], pred)
    METRICS.save(run_dir, metrics, group=group)
    mask = build_mask(metrics, config.reliability)
    write_mask(run_dir, group, mask)
    ceiling = consistency.get("spearman")
    ctx.notes.append(f"distill: group {group}: {student.kind}/{info['regressor']}, validation mean Spearman "
                     f"{_fmt(validation['mean_spearman'])} (teacher self-consistency {_fmt(ceiling)}), "
                     f"{mask['summary']['masked']}/{mask['summary']['cells']} cells masked "
                     f"({mask['summary']['undecidable']} undecidable for lack of labels: fewer than "
                     f"{mask['needed_rows']} validation rows)")
    return {"trained": 1, "masked_cells": mask["summary"]["masked"]}


def write_validation(path: Path, record_ids: list[str], sources: list[str], anchors: list[str],
                     teacher: np.ndarray, student: np.ndarray) -> None:
    """Held-out predictions next to the teacher's labels: the report's read-tests show where the
    two disagree most, on records the student never trained on."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"record_id": record_ids, "source": sources}
    for j, anchor in enumerate(anchors):
        columns[f"{anchor}__teacher"] = teacher[:, j].astype(np.float64)
        columns[f"{anchor}__student"] = student[:, j].astype(np.float64)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"




def raise_without_students(run: RunDir, groups: list[str]) -> None:
    """Stop (no done marker): score cannot run while a group has no student.

    TeacherFailed (exit 4) when failed teacher labels are the cause, else StageIncomplete (exit 3).
    """
    import pyarrow.parquet as pq

    from mira.core.errors import StageIncomplete, TeacherFailed

    parts, errors = [], []
    for group in groups:
        path = run.path("labels", f"{group}.parquet")
        if not path.exists():
            parts.append(f"{group} (no labels: no rubric or annotate skipped it)")
            continue
        table = pq.read_table(path, columns=["ok", "error"])
        ok = sum(bool(v) for v in table["ok"].to_pylist())
        errors += [e for e in table["error"].to_pylist() if e]
        parts.append(f"{group} ({ok} usable of {table.num_rows} label rows, {MIN_LABEL_ROWS} needed)")
    message = f"no student for groups {', '.join(parts)}; score needs one per group"
    if errors:
        from mira.teacher.outcome import error_kind

        raise TeacherFailed(f"{message}; the teacher failed on labels ({error_kind(errors[0])}): fix the server "
                            "and rerun `mira annotate --force` (only failed requests are sent), then `mira distill`")
    raise StageIncomplete(f"{message}; write or regenerate the group's rubric (`mira discover --force`), "
                          "then `mira annotate` and `mira distill`")
