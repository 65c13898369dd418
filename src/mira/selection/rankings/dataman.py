"""DataMan: one fixed, source-agnostic quality rubric, the paper's "generic rubric" baseline.

DataMan (Peng et al. 2025, arXiv 2502.19363) rates text on 14 quality criteria, the last of them
an overall score, with one rubric for every source. Here the 14 criteria are anchor cards
(``dataman_rubric.jsonl`` in this package; DataMan's 1-5 scale becomes our 0-10 anchors), and
the pipeline is exactly MIRA's phase 2 with a single group: the teacher labels a sample drawn
evenly from every source (``selection.dataman.records``) with the annotate stage's requests,
one student is distilled with the distill stage's code, and the student scores the whole corpus
with the score stage's code. Records are ranked by the predicted overall score under
``selection.mode`` (the paper used one global cutoff); no reliability mask (DataMan has none).

Artifacts form a small run directory of their own, ``baselines/dataman/`` (so the stages' path
helpers work unchanged): ``rubrics/dataman.jsonl``, ``labels/dataman.parquet`` (+
``.consistency.parquet``), ``students/dataman/`` (model, ``metrics.json``, ``mask.json``),
``scores/<source>/<shard>.parquet`` with per-shard done markers, ``_done/{labels,dataman}.json``.
Teacher answers go through the run's teacher cache (usage: ``usage/dataman.json``), so a rerun
or a resumed budget stop pays nothing twice.

    from mira.selection.rankings.dataman import prepare_dataman
    prepare_dataman(config, run, progress)    # label, distill, score (each step cached)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from mira.core.config import RunConfig
from mira.core.hashing import fingerprint as make_fingerprint
from mira.run.rundir import RunDir
from mira.scoring.corpus_scores import StageModels
from mira.scoring.table import ScoreTable
from mira.selection.rankings import Ranking

log = logging.getLogger(__name__)
VERSION = "dataman-v1"
GROUP = "dataman"  # the one group: every source
# DataMan scores its 14 criteria in one answer (annotate_v2's flat JSON); annotate_v3 would ask
# 14 requests per record. Pinned, so MIRA's annotation.protocol does not change the baseline.
PROMPT_VERSION = 2
OVERALL = "overall"  # the criterion records are ranked by; the rubric's last card


def folder(run: RunDir) -> RunDir:
    """The baseline's own run directory, ``<run>/baselines/dataman``."""
    return RunDir(run.path("baselines", "dataman"))


def rubric_text() -> str:
    return resources.files("mira.selection.rankings").joinpath("dataman_rubric.jsonl").read_text(encoding="utf-8")


def load_dataman_rubric() -> list[Any]:
    from mira.artifacts.anchors import parse_rubric

    anchors = parse_rubric(rubric_text(), "mira/selection/rankings/dataman_rubric.jsonl")
    if anchors[-1].id != OVERALL:
        raise ValueError(f"the DataMan rubric must end with the {OVERALL!r} criterion")
    return anchors


# --- fingerprints ---------------------------------------------------------------------------------

def _labels_fingerprint(config: RunConfig, run: RunDir) -> str:
    from mira.rubrics import annotation
    from mira.teacher import load_prompt
    from mira.teacher.identity import teacher_identity

    a = config.annotation
    prompt = load_prompt(annotation.PROMPT, PROMPT_VERSION)
    # Only the annotation settings that change a request (not MIRA's records_per_group).
    return make_fingerprint(VERSION, config.selection.dataman.model_dump(mode="json"),
                            [a.rationales, a.rationale_chars, a.self_consistency_records],
                            config.section_hash("render", "tokenizer"), teacher_identity(config.teacher),
                            prompt.id, prompt.system + prompt.user, rubric_text(), run.require("ingest"))


def fingerprint(config: RunConfig, run: RunDir) -> str:
    """Everything the DataMan scores depend on (labels, student settings); not the selection budget."""
    return make_fingerprint(VERSION, _labels_fingerprint(config, run), config.section_hash("student", "embed"))


def plan(config: RunConfig, run: RunDir) -> list[str]:
    """Dry run: the teacher requests DataMan's labels need (the cache's answers are free) and the time."""
    from mira.teacher import estimate
    from mira.teacher.speed import teacher_estimate

    cfg = config.selection.dataman
    try:
        if folder(run).is_done(GROUP, fingerprint(config, run)):
            return ["DataMan: labels, student and scores are cached; no teacher call"]
        work = estimate(config.teacher, run, _sample(config, run, load_dataman_rubric()).requests)
    except Exception as exc:  # noqa: BLE001 - ingest not done yet: say what the pass will do
        log.debug("DataMan plan: %s", exc)
        return [f"DataMan: about {cfg.records} records evenly over sources, all 14 criteria in one request each, "
                "then one student scores the whole corpus (run `mira ingest` for the teacher estimate)"]
    when = teacher_estimate(config, run, "dataman", work)
    time = f"about {when.seconds / 60:.0f} min of teacher time" if when.seconds is not None else "teacher time unknown"
    return [f"DataMan labels: {cfg.records} records evenly over sources + re-scored ones, all 14 criteria in one "
            f"request each: {time} ({when.basis}); then one student scores the whole corpus"]


# --- the pipeline ---------------------------------------------------------------------------------

def prepare(config: RunConfig, run: RunDir, progress: Any = None) -> dict[str, Any]:
    """Label (teacher), distill (one student) and score the corpus; every step is skipped when done.

    Raises ``StageIncomplete`` when the teacher budget stops labelling (a rerun resumes).
    """
    from mira.artifacts.anchors import save_rubric
    from mira.core.progress import null_progress

    progress = progress or null_progress
    fp = fingerprint(config, run)
    sub = folder(run)
    if sub.is_done(GROUP, fp):
        return dict((sub.done(GROUP) or {}).get("counts", {}), cached=1)
    anchors = load_dataman_rubric()
    save_rubric(sub, GROUP, anchors)
    counts: dict[str, Any] = {}
    labels_fp = _labels_fingerprint(config, run)
    if not sub.is_done("labels", labels_fp):
        sub.mark_done("labels", labels_fp, _label(config, run, sub, anchors, progress))
    counts.update((sub.done("labels") or {}).get("counts", {}))
    counts.update(_distill(config, sub, progress))
    counts.update(_score(config, run, sub, fp, progress))
    sub.mark_done(GROUP, fp, counts)
    return counts


def label_requests(config: RunConfig, run: RunDir) -> tuple[int, list[Any]]:
    """The records DataMan's labels pass samples and every teacher request it makes (the records'
    and the consistency re-asks'), for `mira compare`'s cost estimates."""
    sample = _sample(config, run, load_dataman_rubric())
    return len(sample.records), sample.requests


@dataclass
class _Sample:
    """DataMan's labelling work: the sampled records, their renderings (by record key: ids are
    unique only within a source), the re-scored subset with its anchor orders, and the requests."""

    records: list[Any]
    rendered: dict[str, Any]
    again: list[Any]
    orders: list[list[Any]]
    requests: list[Any]


def _sample(config: RunConfig, run: RunDir, anchors: list[Any]) -> _Sample:
    from mira.corpus.records import render
    from mira.corpus.sources import sample_stratified, source_infos
    from mira.rubrics import annotation
    from mira.teacher import load_prompt
    from mira.text.tokens import get_tokenizer

    cfg, a = config.selection.dataman, config.annotation
    infos = [info for info in source_infos(run) if info.ok > 0]
    records = sample_stratified(config, infos, cfg.records, cfg.seed)
    tokenizer = get_tokenizer(config.tokenizer.name)
    rendered = {r.key: render(r, tokenizer, config.render.max_tokens, config.render.windows) for r in records}
    prompt = load_prompt(annotation.PROMPT, PROMPT_VERSION)
    requests = [annotation.build_request(prompt, anchors, r, rendered[r.key], a.rationales, a.rationale_chars, r.id)
                for r in records]
    again = annotation.consistency_subset(records, a.self_consistency_records, cfg.seed)
    orders = [annotation.shuffled(anchors, cfg.seed, r.id) for r in again]
    requests += [annotation.build_request(prompt, order, r, rendered[r.key], a.rationales, a.rationale_chars,
                                        f"{r.id} (consistency)") for r, order in zip(again, orders, strict=True)]
    return _Sample(records, rendered, again, orders, requests)


def _label(config: RunConfig, run: RunDir, sub: RunDir, anchors: list[Any], progress: Any) -> dict[str, Any]:
    from mira.core.errors import StageIncomplete
    from mira.rubrics import annotation
    from mira.teacher import open_teacher

    sample = _sample(config, run, anchors)
    # The run's teacher cache: the same request as any earlier run is free.
    with open_teacher(config.teacher, run, stage="dataman", progress=progress) as teacher:
        results = teacher.run(sample.requests)
    if any(r.error == "budget" for r in results):
        raise StageIncomplete("teacher budget reached while labelling the DataMan sample; raise "
                              "teacher.max_requests / max_tokens and rerun (answers so far are cached)")
    ids = [anchor.id for anchor in anchors]
    first, second = results[:len(sample.records)], results[len(sample.records):]
    rendered = sample.rendered
    rows = [annotation.label_row(r, rendered[r.key], ids, ids, res)
            for r, res in zip(sample.records, first, strict=True)]
    again_rows = [annotation.label_row(r, rendered[r.key], ids, [o.id for o in order], res)
                  for r, order, res in zip(sample.again, sample.orders, second, strict=True)]
    annotation.write_labels(annotation.labels_path(sub, GROUP), rows, ids)
    annotation.write_labels(annotation.labels_path(sub, GROUP, consistency=True), again_rows, ids)
    failed = sum(not row["ok"] for row in rows)
    if failed:
        log.warning("DataMan labels: %d of %d records failed (kept with ok=false)", failed, len(rows))
    return {"labels": len(rows) - failed, "failed": failed, "requests": len(sample.requests)}


def _distill(config: RunConfig, sub: RunDir, progress: Any) -> dict[str, Any]:
    from mira.rubrics import annotation
    from mira.run.context import StageContext
    from mira.scoring import distillation

    # distill_group keeps a trained student whose labels and settings did not change.
    ctx = StageContext(config, sub, progress=progress)
    result = distillation.distill_group(ctx, GROUP, annotation.labels_path(sub, GROUP))
    for note in ctx.notes:
        log.info("%s", note)
    if not result.get("trained") and not (sub.path("students", GROUP, "student.json")).exists():
        from mira.core.config import ConfigError

        raise ConfigError("DataMan: too few usable teacher labels to train a student; "
                          "raise selection.dataman.records or check the teacher")
    return {"student_trained": result.get("trained", 0)}


def _score(config: RunConfig, run: RunDir, sub: RunDir, fp: str, progress: Any) -> dict[str, Any]:
    from mira.corpus.sources import source_infos
    from mira.engines import map_tasks
    from mira.scoring import corpus_scores

    models = StageModels(device=config.student.encoder_device)
    tasks = [(config, str(sub.root), shard, info.format, GROUP, fp, models)
             for info in source_infos(run) for shard in info.shards if not corpus_scores.shard_done(sub, shard, fp)]
    task = progress("DataMan: score shards", len(tasks))
    records = 0
    for _, marker in map_tasks(config.engine, corpus_scores._score_shard_task, tasks):
        records += marker["records"]
        task.advance()
    task.close()
    return {"shards_scored": len(tasks), "records_scored": records}


# --- ranking --------------------------------------------------------------------------------------

def rank(config: RunConfig, table: ScoreTable) -> Ranking:
    import pyarrow.parquet as pq

    from mira.scoring import corpus_scores

    run = RunDir(table.run_root)
    prepare(config, run)
    fp = fingerprint(config, run)
    sub = folder(run)
    overall = np.full(len(table.tokens), np.nan)
    for info, shard, start, end in table.shard_rows:
        if not corpus_scores.shard_done(sub, shard, fp):
            raise RuntimeError(f"{info.name} shard {shard.name}: no DataMan scores for this configuration")
        # The rubric's last criterion, overall, ranks (no mask, no aggregate: DataMan has none).
        column = pq.read_table(corpus_scores.shard_scores_path(sub, shard), columns=[OVERALL]).column(OVERALL)
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        if len(values) != end - start:
            raise RuntimeError(f"{info.name} shard {shard.name}: DataMan scores do not match the scores")
        overall[start:end] = values
    eligible = ~table.quarantined & np.isfinite(overall)
    return Ranking(np.where(eligible, overall, -np.inf), eligible, config.selection.mode,
                   "DataMan overall score (student)")


prepare_dataman = prepare

