"""The annotate stage's dry run (:mod:`mira.pipeline.plan`): its detail lines and the teacher work it would ask.

Kept apart from :mod:`mira.stages.annotate` so the stage module stays small; :mod:`mira.pipeline.plan` looks
here first for a stage's ``plan`` and ``teacher_work``. Requests are built with the stage's own
functions, so the dry run prices exactly what a run sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mira.core.config import RunConfig
from mira.core.errors import StageNotReady
from mira.corpus.sources import source_infos
from mira.rubrics.allocation import allocation_lines
from mira.rubrics.annotation import (
    anchor_card,
    flat_protocol,
    group_infos,
    group_quotas,
    group_requests,
    load_anchors,
    output_tokens,
    protocol_prompt,
    short_sources,
)
from mira.run.rundir import RunDir

if TYPE_CHECKING:
    from mira.teacher import TeacherRequest


def teacher_work(config: RunConfig, run_dir: RunDir, assume_new: bool = False) -> dict[str, Any]:
    """The requests a run would send and how many the teacher cache answers already (dry run).

    Built exactly as `run` builds them (the sample is read through the sample index), so a larger
    ``records_per_group`` counts only the records not labelled yet. With `assume_new` (groups or
    rubrics are rewritten first) or before discover, every request counts as new, from the config.
    """
    from mira.teacher import estimate

    cfg = config.annotation
    if assume_new or not run_dir.done("group") or not run_dir.done("discover"):
        groups = _group_count(config, run_dir)
        prompt = protocol_prompt(config)
        labels = groups * (cfg.records_per_group + cfg.self_consistency_records)
        per_group = config.discovery.anchors_per_group
        if prompt.version >= 3:  # one request per anchor; the record is processed once per label
            from mira.rubrics import annotation_v3

            n_requests = labels * per_group
            prompt_tokens = labels * (config.render.max_tokens + 60 + annotation_v3.prompt_overhead_tokens(per_group))
            completion = labels * annotation_v3.output_tokens(per_group)
        else:
            n_requests = labels
            prompt_tokens = labels * (config.render.max_tokens + 600)  # rubric cards and instructions
            completion = labels * output_tokens(per_group, cfg.rationales, cfg.rationale_chars,
                                                flat_protocol(prompt, cfg.rationales)) // 2
        return {"requests": n_requests, "cached": 0, "prompt_tokens_est": prompt_tokens,
                "completion_tokens_est": completion}
    return estimate(config.teacher, run_dir, annotate_requests(config, run_dir))


def annotate_requests(config: RunConfig, run_dir: RunDir) -> list[TeacherRequest]:
    """Every request annotate would send under `config` (its groups, rubrics and sample), built
    with the stage's own functions; needs group and discover done."""
    from mira.artifacts.groups import load_groups
    from mira.text.tokens import get_tokenizer

    prompt, tokenizer = protocol_prompt(config), get_tokenizer(config.tokenizer.name)
    infos = {info.name: info for info in source_infos(run_dir)}
    requests: list[TeacherRequest] = []
    run_groups = load_groups(run_dir).groups
    rubrics = {group.id: load_anchors(run_dir, group.id) for group in run_groups}
    members = {group.id: group_infos(infos, group.sources) for group in run_groups if rubrics[group.id]}
    quotas = group_quotas(config, members)
    for gid, anchors in rubrics.items():
        if anchors:
            requests += group_requests(config, prompt, tokenizer, anchors, gid, members[gid], quotas[gid])[-1]
    return requests


def _group_count(config: RunConfig, run_dir: RunDir) -> int:
    from mira.artifacts.groups import load_groups

    try:
        return len(load_groups(run_dir).groups)
    except (StageNotReady, OSError, ValueError):
        return (config.grouping.k or min(config.grouping.k_max, max(len(config.sources), 1))) + \
            len({s.group for s in config.sources if s.group})


def plan(config: RunConfig, run_dir: RunDir) -> list[str]:
    """Requests and a token/time estimate, from the inventory and rubrics (no corpus pass)."""
    from mira.teacher.usage import CHARS_PER_TOKEN

    cfg = config.annotation
    if not run_dir.done("group") or not run_dir.done("discover"):
        return [f"up to {cfg.records_per_group} records per group + {cfg.self_consistency_records} re-scored, "
                f"one request each (groups and rubrics not known yet: run `mira group` and `mira discover`)"]
    from mira.artifacts.groups import load_groups

    groups = load_groups(run_dir)
    infos = {info.name: info for info in source_infos(run_dir)}
    lines, total_requests, total_prompt, total_completion = [], 0, 0, 0
    prompt = protocol_prompt(config)
    flat = flat_protocol(prompt, cfg.rationales)
    rubrics: dict[str, Any] = {}
    for group in groups.groups:
        try:
            rubrics[group.id] = load_anchors(run_dir, group.id)
        except ValueError as exc:
            rubrics[group.id] = exc
    labelled = {g.id: group_infos(infos, g.sources) for g in groups.groups
                if rubrics[g.id] and not isinstance(rubrics[g.id], ValueError)}
    quotas = group_quotas(config, labelled)
    if cfg.allocation == "tokens":
        lines += allocation_lines(quotas, {g: {i.name: i.tokens for i in m} for g, m in labelled.items()})
    for group in groups.groups:
        anchors = rubrics[group.id]
        if isinstance(anchors, ValueError):
            lines.append(f"{group.id}: {anchors}")
            continue
        if not anchors:
            lines.append(f"{group.id}: no rubric, skipped")
            continue
        members = labelled[group.id]
        available = sum(i.ok for i in members)
        n = sum(quotas[group.id].values())
        labels = n + min(cfg.self_consistency_records, n)
        mean_tokens = (sum(i.tokens for i in members) / available) if available else 0
        record_tokens = min(mean_tokens, config.render.max_tokens)
        if prompt.version >= 3:  # cards cached per group and slot; the record once; a question per anchor
            from mira.rubrics import annotation_v3

            requests = labels * len(anchors)
            total_prompt += int(labels * (record_tokens + 60 + annotation_v3.prompt_overhead_tokens(len(anchors))))
            total_completion += labels * annotation_v3.output_tokens(len(anchors))
        else:
            requests = labels
            cards = sum(len(anchor_card(a)) for a in anchors) / CHARS_PER_TOKEN
            total_prompt += int(labels * (record_tokens + cards + 250))
            total_completion += labels * output_tokens(len(anchors), cfg.rationales, cfg.rationale_chars, flat)
        total_requests += requests
        lines.append(f"{group.id}: {n} records x {len(anchors)} anchors, {requests} requests")
        short = short_sources(config, members, quotas[group.id])
        if short:
            lines.append(f"  {group.id}: sources below {cfg.min_validation_per_source} validation rows: "
                         + ", ".join(short))
    # The time is the dry run's (mira.pipeline.plan.estimate: measured speeds, cached requests free).
    lines.append(f"total: {total_requests} requests, ~{total_prompt:,} prompt + ~{total_completion:,} output tokens")
    return lines
