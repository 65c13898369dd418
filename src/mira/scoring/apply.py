"""A group's student applied to a batch of records: the one function `mira score` and
:class:`mira.scoring.scorer.Scorer` both call, so a record scored either way gets the same bytes.

:func:`score_batch` renders each record exactly as the students saw it in training
(``config.render``) and predicts its group's per-anchor scores; a quarantined item gets 0 tokens
and NaN scores. Students come from :class:`StageModels` (a picklable seam: tests pass stand-ins)
and are loaded once per process and group (:func:`models_for`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mira.core.config import RunConfig
from mira.corpus.records import Record, render
from mira.corpus.sources import Quarantined
from mira.run.rundir import RunDir

if TYPE_CHECKING:  # imported at run time only where a student is loaded
    from mira.students import Student


class StageModels:
    """Where scoring gets groups and students: the upstream stages' public functions.

    A picklable seam: tests and benchmarks pass a subclass with stand-in students; workers of
    any engine receive it with their task and call the same methods. `device` is where an encoder
    student predicts (``student.encoder_device``: auto, cpu or cuda); a static student has none.
    """

    def __init__(self, device: str = "auto") -> None:
        self.device = device

    def source_to_group(self, run: RunDir) -> dict[str, str]:
        from mira.artifacts.groups import load_groups

        return dict(load_groups(run).source_to_group)

    def load_student(self, run: RunDir, group: str) -> Student:
        from mira.students import load_student

        return load_student(run, group, getattr(self, "device", "auto"))


@dataclass
class LoadedGroup:
    """A group's student (None: the group has no rubric, its records get no anchor scores) and its anchors."""

    student: Student | None
    anchors: list[str]


NO_GROUP = LoadedGroup(None, [])

# Per-process cache: a worker loads a group's student once, whatever number of shards it scores.
_MODELS: dict[tuple[Any, ...], LoadedGroup] = {}


def models_for(models: StageModels, run: RunDir, group: str, stage_fp: str) -> LoadedGroup:
    """The group's student, loaded once per process for (models, run, group, score fingerprint)."""
    key = (type(models).__module__, type(models).__qualname__, getattr(models, "device", None), str(run.root), group,
           stage_fp)
    if key not in _MODELS:
        from mira.artifacts.anchors import rubric_is_empty

        if rubric_is_empty(run, group):  # no rubric, no student: the group's records get no anchor scores
            _MODELS[key] = LoadedGroup(None, [])
        else:
            student = models.load_student(run, group)
            _MODELS[key] = LoadedGroup(student, list(student.anchors))
    return _MODELS[key]


def batches(items: Iterator[Record | Quarantined], size: int) -> Iterator[list[Record | Quarantined]]:
    batch: list[Record | Quarantined] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_batch(batch: list[Record | Quarantined], loaded: LoadedGroup, config: RunConfig, tokenizer: Any,
                group: str | None, source: str,
                known: list[tuple[int | None, Any]] | None = None) -> tuple[list[int], np.ndarray]:
    """(tokens, per-anchor scores) of every item of the batch: 0 and NaN for a quarantined one.

    `known` holds ingest's (token count, window byte spans) per item where the caller has them
    (:mod:`mira.corpus.shard_tokens`): the rendering is the same with or without, only faster."""
    known = known if known is not None else [(None, None)] * len(batch)
    positions = [i for i, item in enumerate(batch) if isinstance(item, Record)]
    tokens = [0] * len(batch)
    scores = np.full((len(batch), len(loaded.anchors)), np.nan)
    if positions and group is None:
        raise RuntimeError(f"source {source} has usable records but no group; rerun `mira group`")
    if not positions:
        return tokens, scores
    records: list[Record] = [batch[i] for i in positions]  # type: ignore[misc]
    renderings = [render(r, tokenizer, config.render.max_tokens, config.render.windows, total=known[i][0],
                         window_bytes=known[i][1]) for r, i in zip(records, positions, strict=True)]
    formats, texts = [r.format for r in records], [r.text for r in renderings]
    per_anchor = (np.zeros((len(records), 0)) if loaded.student is None  # a group without a rubric
                  else np.asarray(loaded.student.predict(formats, texts), dtype=np.float64))
    if per_anchor.shape != (len(records), len(loaded.anchors)):
        raise RuntimeError(f"student of group {group} returned shape {per_anchor.shape}, "
                           f"expected {(len(records), len(loaded.anchors))}")
    scores[positions] = per_anchor
    for i, rendering in zip(positions, renderings, strict=True):
        tokens[i] = int(rendering.tokens)
    return tokens, scores
