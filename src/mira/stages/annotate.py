"""Annotate (phase 2): the teacher scores a sample of each group on every anchor of its rubric.

Per group, a sample stratified by source is rendered (start/middle/end windows, the same text the
students will see) and scored on every anchor, as ``annotation.protocol`` says. ``annotate_v3``
(the default, :mod:`mira.rubrics.annotation_v3`) asks one anchor per request and gets a bare 0-9
integer (mapped to 0-10: every value is one token, so its expectation is exact); the requests of
a record share their prompt up to the question and run on one server slot.
``annotate_v1``/``annotate_v2`` ask ONE request per record: a JSON object with one entry per anchor
id, each a 0-10 score (an ``enum``, validated again); with ``annotation.rationales`` on, each entry
is ``{"why", "score"}`` (a short reason first), off, the answer is flat, ``{"a00": 7, "a01": 5}``
(v2). The training target is the probability-weighted expected score where the server returns
logprobs, else the sampled integer. ``<anchor>__target_kind`` says which.

A few records are scored a second time with an equivalent variant of the prompt (a different
request, so not a cache hit): the agreement between the two scorings is the teacher's
self-consistency, the ceiling a student can be held to. v1/v2 shuffle the anchor cards (one order
per group, so the re-scorings share their prompt prefix in the server's cache); v3 lists every
card's guides and the scale from HIGH to LOW.

Outputs ``labels/<group>.parquet`` and ``labels/<group>.consistency.parquet`` (columns in
docs/architecture.md). Failed requests are rows with ``ok = false``; a teacher budget stop raises
StageIncomplete, and a rerun replays finished requests from the teacher cache. Failures that leave
a group without enough labels to train (or exceed ``teacher.max_failed_share``, or the deadline)
raise TeacherFailed after the labels are written for audit: the stage is not marked done.
Records are keyed by source and id (:attr:`Record.key`): two sources may both number theirs 0..N.
"""

from __future__ import annotations

from typing import Any

from mira.core.errors import StageIncomplete
from mira.core.hashing import fingerprint as make_fingerprint
from mira.corpus.sources import index_note, source_infos
from mira.rubrics.allocation import allocation_lines
from mira.rubrics.annotation import (
    VERSION,
    answers_row,
    group_infos,
    group_quotas,
    group_requests,
    labels_path,
    load_anchors,
    min_label_rows,
    protocol_prompt,
    short_sources,
    write_labels,
)
from mira.run.context import StageContext


def fingerprint(ctx: StageContext) -> str:
    from mira.artifacts.anchors import rubric_fingerprint
    from mira.rubrics import annotation_v3
    from mira.teacher.identity import teacher_identity

    prompt = protocol_prompt(ctx.config)
    # What annotate reads from discover is the rubric files, so their content hash stands for
    # discover (not its fingerprint): a discover rerun that writes the same rubrics (replayed from
    # the cache, or under settings that do not change them) leaves the labels done.
    ctx.run.require("discover")
    # v3 builds the last line of each request in code: its wording is part of what is asked.
    question = annotation_v3.QUESTION if prompt.id == "annotate_v3" else ""
    return make_fingerprint(VERSION, ctx.config.section_hash("annotation", "render", "tokenizer"),
                            teacher_identity(ctx.config.teacher), prompt.id, prompt.system + prompt.user + question,
                            ctx.run.require("group"), rubric_fingerprint(ctx.run))


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.artifacts.groups import load_groups
    from mira.teacher import open_teacher
    from mira.text.tokens import get_tokenizer

    config, run_dir, cfg = ctx.config, ctx.run, ctx.config.annotation
    groups = load_groups(run_dir)
    infos = {info.name: info for info in source_infos(run_dir)}
    tokenizer = get_tokenizer(config.tokenizer.name)
    prompt = protocol_prompt(config)
    counts: dict[str, Any] = {"groups": 0, "labels": 0, "failed": 0, "consistency": 0, "requests": 0}
    note = index_note([i for g in groups.groups for s in g.sources if (i := infos.get(s))], cfg.seed)
    if note:
        ctx.notes.append(f"annotate: {note}")
    incomplete: list[str] = []
    all_results: list[Any] = []
    starved: list[str] = []  # groups the teacher's failures left without enough labels to train
    rubrics = {group.id: load_anchors(run_dir, group.id) for group in groups.groups}
    members = {group.id: group_infos(infos, group.sources) for group in groups.groups if rubrics[group.id]}
    quotas = group_quotas(config, members)
    if cfg.allocation == "tokens":
        ctx.notes += [f"annotate: {line}" for line in allocation_lines(quotas, {g: {i.name: i.tokens for i in m}
                                                                              for g, m in members.items()})]
    planned: list[tuple[str, list[str], Any]] = []  # (group, anchor ids, group_requests' output)
    for group in groups.groups:
        anchors = rubrics[group.id]
        if not anchors:
            ctx.notes.append(f"annotate: group {group.id} has no rubric; no labels written")
            continue
        short = short_sources(config, members[group.id], quotas[group.id])
        if short:
            ctx.notes.append(f"annotate: group {group.id}: validation rows below "
                             f"annotation.min_validation_per_source={cfg.min_validation_per_source}: "
                             + ", ".join(short))
        built = group_requests(config, prompt, tokenizer, anchors, group.id, members[group.id], quotas[group.id])
        if not built[0]:
            ctx.notes.append(f"annotate: group {group.id} has no usable records")
            continue
        planned.append((group.id, [a.id for a in anchors], built))
    with open_teacher(config.teacher, run_dir, stage="annotate", progress=ctx.progress) as teacher:
        # Every group's requests in one call: in batch mode (teacher.mode) they travel as one batch
        # instead of one batch per group, each waiting for the one before.
        every = teacher.run([request for _, _, built in planned for request in built[-1]])
        start = 0
        for gid, ids, (records, rendered, labels, positions, requests) in planned:
            results, start = every[start:start + len(requests)], start + len(requests)
            counts["requests"] += len(requests)
            if any(r.error == "budget" for r in results):
                incomplete.append(gid)
                continue
            all_results += results
            label_rows = [answers_row(prompt, r, rendered[r.key], ids, order, [results[i] for i in pos])
                          for (r, order, _), pos in zip(labels, positions, strict=True)]
            rows, again_rows = label_rows[:len(records)], label_rows[len(records):]
            write_labels(labels_path(run_dir, gid), rows, ids)
            write_labels(labels_path(run_dir, gid, consistency=True), again_rows, ids)
            failed = sum(not row["ok"] for row in rows)
            if failed and len(rows) - failed < min_label_rows():
                starved.append(gid)
            counts["groups"] += 1
            counts["labels"] += len(rows) - failed
            counts["failed"] += failed + sum(not row["ok"] for row in again_rows)
            counts["consistency"] += sum(row["ok"] for row in again_rows)
            if failed:
                ctx.notes.append(f"annotate: group {gid}: {failed} of {len(rows)} records failed "
                                 f"(kept with ok=false; `mira annotate --force` asks only those again)")
        usage = teacher.usage
        from mira.teacher.outcome import raise_if_failed

        raise_if_failed(teacher, all_results, "annotate", starved, "without enough labels to train a student")
    counts["cache_hits"] = usage.get("cache_hits", 0)
    if incomplete:
        raise StageIncomplete(f"teacher budget reached; groups {', '.join(incomplete)} are not labelled yet. "
                              f"Raise teacher.max_requests / max_tokens and rerun `mira annotate` "
                              f"(answers so far are cached)")
    return counts


def reads(ctx: StageContext) -> dict[str, str]:
    """Digests of the artifacts annotate reads (its done marker keeps them; the dry run names a change)."""
    from mira.artifacts.anchors import rubric_fingerprint

    return {"rubrics": rubric_fingerprint(ctx.run)}
