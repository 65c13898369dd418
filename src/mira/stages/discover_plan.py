"""The discover stage's dry run (:mod:`mira.pipeline.plan`): its detail lines and the teacher work it would ask.

Kept apart from :mod:`mira.stages.discover` so the stage module stays small; :mod:`mira.pipeline.plan` looks
here first for a stage's ``plan`` and ``teacher_work``.
"""

from __future__ import annotations

from typing import Any

from mira.core.config import RunConfig
from mira.core.errors import StageNotReady
from mira.io.files import read_json
from mira.rubrics.budget import discovery_budget
from mira.run.rundir import RunDir


def plan(config: RunConfig, run: RunDir) -> list[str]:
    """Teacher requests and a time estimate; reads groups.json when grouping has run."""
    dcfg = config.discovery
    try:
        from mira.artifacts.groups import load_groups

        groups = load_groups(run)
        n_groups, where = len(groups.groups), "from groups.json"
        ok: dict[str, int] = {}
        tokens: dict[str, int] = {}
        if run.inventory_path.exists():
            sources = read_json(run.inventory_path).get("sources", {})
            ok = {g.id: sum(sources.get(s, {}).get("ok", 0) for s in g.sources) for g in groups.groups}
            tokens = {name: int(entry.get("tokens", 0)) for name, entry in sources.items()}
        budget = discovery_budget(dcfg, groups.groups, tokens)
        judgments = sum(min(budget[g.id].records, ok.get(g.id, budget[g.id].records)) for g in groups.groups)
        cards = sum(b.anchors for b in budget.values())
        small = [f"{gid} ({b.share:.1%} of the tokens)" for gid, b in budget.items() if b.small]
    except StageNotReady:  # grouping not run yet: estimate from the config
        n_groups = (config.grouping.k or min(config.grouping.k_max, max(len(config.sources), 1)))
        n_groups += len({s.group for s in config.sources if s.group})
        where, judgments = "estimated; run `mira group` for the real number", n_groups * dcfg.records_per_group
        cards, small = n_groups * dcfg.anchors_per_group, []
    # The time is the dry run's (mira.pipeline.plan.estimate: measured speeds, cached answers free).
    lines = [f"groups: {n_groups} ({where})",
             f"teacher requests: {judgments} judgments ({dcfg.records_per_group} per group) + about {cards} "
             f"anchor cards ({dcfg.anchors_per_group} per group, more if clusters are rejected)"]
    if small:
        lines.append(f"small groups ({dcfg.small_group_records} judgments, {dcfg.small_group_anchors} anchor(s) each; "
                     f"discovery.small_group_share={dcfg.small_group_share}): {', '.join(small)}")
    return lines


def teacher_work(config: RunConfig, run: RunDir, assume_new: bool = False) -> dict[str, Any]:
    """The judgments a run would ask, built as `run` builds them, with the cache's answers (dry
    run); plus the anchor cards, which count as new unless every judgment is cached (the
    clusters, and so the cards asked, follow from the judgments)."""
    from mira.artifacts.groups import load_groups
    from mira.corpus.records import render
    from mira.corpus.sources import sample_stratified, source_infos
    from mira.rubrics.discovery import judge_request
    from mira.teacher import estimate
    from mira.text.tokens import get_tokenizer

    dcfg = config.discovery
    try:
        groups = load_groups(run).groups
    except StageNotReady:
        groups = []
    if assume_new or not groups:
        n_groups = len(groups) or (config.grouping.k or min(config.grouping.k_max, max(len(config.sources), 1)))
        requests = n_groups * (dcfg.records_per_group + dcfg.anchors_per_group)
        return {"requests": requests, "cached": 0, "prompt_tokens_est": requests * (config.render.max_tokens + 400),
                "completion_tokens_est": requests * 200}
    infos = {info.name: info for info in source_infos(run)}
    budget = discovery_budget(dcfg, groups, {name: info.tokens for name, info in infos.items()})
    tokenizer = get_tokenizer(config.tokenizer.name)
    asked = []
    for group in groups:
        members = [infos[s] for s in group.sources if s in infos]
        for record in sample_stratified(config, members, budget[group.id].records, dcfg.seed):
            text = render(record, tokenizer, config.render.max_tokens, config.render.windows).text
            asked.append(judge_request(record, text, dcfg))
    work = estimate(config.teacher, run, asked)
    cards = sum(b.anchors for b in budget.values())
    new_cards = 0 if work["cached"] == work["requests"] else cards
    return {**work, "requests": work["requests"] + cards, "cached": work["cached"] + cards - new_cards,
            "prompt_tokens_est": work["prompt_tokens_est"] + new_cards * 400,
            "completion_tokens_est": work["completion_tokens_est"] + new_cards * 100}
