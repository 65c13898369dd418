"""Discover (MIRA phase 1): self-anchored rubrics, one per source group.

1. Per group, a stratified sample of records is judged free-form: the teacher names the quality
   dimensions that matter for *this* record, each with a part, a 0-10 score and a one-line reason
   (``judgments/<group>.jsonl``).
2. Every "name: reason" judgment point is embedded and clustered per record part; near-duplicate
   clusters are merged, clusters without enough support (points and distinct records) dropped,
   and the point nearest each centre is the cluster's exemplar (:mod:`mira.rubrics.clusters`).
3. The teacher writes an anchor card (name, definition, low/mid/high) per surviving cluster, and
   may reject a cluster that names a topic instead of a quality; :mod:`mira.rubrics.cards` rejects cards
   that cannot discriminate (near-identical guides, one record's content, length/format/topic,
   one record behind it), and the next cluster takes the slot. Accepted cards become
   ``rubrics/<group>.jsonl``; everything dropped, and why, goes to ``rubrics/<group>.rejected.jsonl``.

Teacher failures that leave a group without anchors (or exceed ``teacher.max_failed_share``, or
the deadline) stop the stage with TeacherFailed after the judgments are written for audit; it is
not marked done, and a rerun sends only the failed requests (answers are cached).

A rubric the user edited is never overwritten silently: ``rubrics/_generated.json`` remembers the
hash of what discover wrote, and a file that differs from it is kept unless ``--force``.

The dry run (``plan``, ``teacher_work``) lives in :mod:`mira.stages.discover_plan`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mira.artifacts.anchors import Anchor, save_rubric
from mira.artifacts.rubrics import JUDGMENTS, RUBRIC_GENERATED, RUBRIC_REJECTED
from mira.core.hashing import fingerprint as make_fingerprint
from mira.corpus.records import Record
from mira.rubrics.budget import discovery_budget
from mira.rubrics.discovery import CARD_PROMPT, JUDGE_PROMPT, VERSION, discover, guard_edits, read_sidecar, remove_stale
from mira.run.context import StageContext
from mira.teacher import load_prompt
from mira.teacher.identity import teacher_identity
from mira.teacher.outcome import FailureTracker


def fingerprint(ctx: StageContext) -> str:
    prompts = [load_prompt(JUDGE_PROMPT).id, load_prompt(CARD_PROMPT).id]
    sections = ctx.config.section_hash("discovery", "render", "tokenizer", "embed")
    # The teacher identity, not the whole teacher section: timeouts, concurrency, budgets and the
    # server address never change an answer (mira.teacher.identity).
    return make_fingerprint(VERSION, prompts, sections, teacher_identity(ctx.config.teacher), ctx.run.require("group"))


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.artifacts.groups import load_groups
    from mira.corpus.records import render
    from mira.corpus.sources import index_note, sample_stratified, source_infos
    from mira.text.tokens import get_tokenizer

    config, dcfg, run_dir = ctx.config, ctx.config.discovery, ctx.run
    groups = load_groups(run_dir)
    generated = read_sidecar(run_dir)
    kept = guard_edits(ctx, groups.ids, generated)
    remove_stale(ctx, groups.ids, generated)
    infos = {info.name: info for info in source_infos(run_dir)}
    tokenizer = get_tokenizer(config.tokenizer.name)

    note = index_note([i for g in groups.groups if g.id not in kept for s in g.sources if (i := infos.get(s))],
                      dcfg.seed)
    if note:
        ctx.notes.append(f"discover: {note}")
    budget = discovery_budget(dcfg, groups.groups, {name: info.tokens for name, info in infos.items()})
    small = [f"{gid} ({b.share:.1%})" for gid, b in budget.items() if b.small and gid not in kept]
    if small:
        ctx.notes.append(f"discover: groups under discovery.small_group_share={dcfg.small_group_share:.0%} of the "
                         f"tokens get {dcfg.small_group_records} judgments and {dcfg.small_group_anchors} "
                         f"anchor(s): {', '.join(small)}")
    def sample(group: Any, n: int) -> list[tuple[Record, str]]:
        members = [infos[s] for s in group.sources if s in infos]
        return [(r, render(r, tokenizer, config.render.max_tokens, config.render.windows).text)
                for r in sample_stratified(config, members, n, dcfg.seed)]

    samples: dict[str, list[tuple[Record, str]]] = {}
    task = ctx.progress("discover: sample records", len(groups.groups) - len(kept))
    for group in groups.groups:
        if group.id in kept:
            continue
        samples[group.id] = sample(group, budget[group.id].records)
        task.advance()
    task.close()

    counts: Counter[str] = Counter(groups=len(groups.groups), kept_edited=len(kept))
    outputs: dict[str, tuple[list[Anchor], list[dict[str, Any]], list[dict[str, Any]]]] = {}
    tracker = FailureTracker("discover", "without anchors")
    teacher = None
    if samples:
        from mira.teacher import open_teacher

        with open_teacher(config.teacher, run_dir, stage="discover", progress=ctx.progress) as teacher:
            outputs = discover(ctx, teacher, samples, counts, tracker,
                               {gid: b.anchors for gid, b in budget.items()})
            # A small group whose few judgments share no quality would lose its ranking for want of
            # one more judgment (the demo's agent group, 2026-12-08: three one-record dimensions):
            # it is judged once more on the full records_per_group (its first records come from the
            # teacher cache, as the sample grows from the same seeded order).
            widen = [g for g in groups.groups if g.id in outputs and not outputs[g.id][0] and budget[g.id].small
                     and budget[g.id].records < dcfg.records_per_group and g.id not in tracker.failed_groups]
            if widen:
                counts["widened"] = len(widen)
                ctx.notes.append(f"discover: small group(s) {', '.join(g.id for g in widen)} found no shared quality "
                                 f"in {dcfg.small_group_records} judgments: judged on "
                                 f"discovery.records_per_group={dcfg.records_per_group} instead")
                outputs |= discover(ctx, teacher, {g.id: sample(g, dcfg.records_per_group) for g in widen}, counts,
                                    tracker, {g.id: budget[g.id].anchors for g in widen})

    for gid, (anchors, judgments, rejected) in outputs.items():
        JUDGMENTS.save(run_dir, judgments, group=gid)
        RUBRIC_REJECTED.save(run_dir, rejected, group=gid)
        generated[gid] = save_rubric(run_dir, gid, anchors)
        if not anchors:
            ctx.notes.append(f"discover: group {gid} has no anchor (see rubrics/{gid}.rejected.jsonl); "
                             f"raise discovery.records_per_group or write rubrics/{gid}.jsonl by hand")
    RUBRIC_GENERATED.save(run_dir, {gid: sha for gid, sha in sorted(generated.items()) if gid in groups.ids})
    if teacher is not None:
        tracker.check(teacher, [gid for gid, (anchors, _, _) in outputs.items() if not anchors])
    return dict(counts)
