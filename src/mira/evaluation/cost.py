"""What each compared method cost the teacher, and DataMan's label count at MIRA's teacher budget.

MIRA's selections rest on the discover and annotate stages' teacher answers, DataMan's on its own
labels pass; the other rankings ask no teacher. A method's cost is read from the run's usage files
(``usage/<stage>.json``): ``requests`` asked in the stage's last pass (the answers its labels rest
on) and, over every pass, the answers paid for with their prompt and output tokens and teacher
seconds (request latencies summed). Cache hits are free here, so a run made from a copied cache
looks cheap: ``cache_hits`` says how many of the last pass's answers came from it.

``compare.dataman_budget: match_mira`` gives DataMan as many labels as make its estimated prompt +
output tokens equal annotate's: annotate's requests priced at its measured tokens per answer,
against DataMan's requests (14 criteria each, ~1,800 prompt tokens) priced from the teacher cache
where it holds them and from their prompt length otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from mira.core.config import ConfigError, RunConfig
from mira.run.bookkeeping import USAGE
from mira.run.rundir import RunDir
from mira.selection.rankings.dataman import label_requests
from mira.teacher.cache import TeacherCache
from mira.teacher.teacher import request_key
from mira.teacher.usage import CHARS_PER_TOKEN

log = logging.getLogger(__name__)

MIRA_STAGES = ("discover", "annotate")
STAGES = {"mira": MIRA_STAGES, "dataman": ("dataman",)}  # methods that ask the teacher, and where
FIELDS = ("requests", "cache_hits", "answered", "prompt_tokens", "completion_tokens", "seconds")


def stage_cost(run: RunDir, stage: str) -> dict[str, Any]:
    """One stage's teacher cost from ``usage/<stage>.json`` (zeros when the stage asked nothing)."""
    usage = USAGE.read(run, stage=stage)
    if usage is None:
        return dict.fromkeys(FIELDS, 0) | {"seconds": 0.0}
    last, total = usage.last, usage.total
    return {"requests": int(last.get("requests", 0)), "cache_hits": int(last.get("cache_hits", 0)),
            "answered": int(total.get("answered", 0)), "prompt_tokens": int(total.get("prompt_tokens", 0)),
            "completion_tokens": int(total.get("completion_tokens", 0)),
            "seconds": round(float(total.get("latency_s", 0.0)), 1)}


def method_costs(run: RunDir, methods: list[dict[str, Any]]) -> dict[str, Any]:
    """Selection name -> its method's teacher cost: the sum over the stages it rests on, with them named."""
    out: dict[str, Any] = {}
    for method in methods:
        stages = STAGES.get(str(method.get("method")), ())
        costs = [stage_cost(run, stage) for stage in stages]
        total = {key: sum(c[key] for c in costs) for key in FIELDS}
        total["seconds"] = round(float(total["seconds"]), 1)
        out[method["name"]] = {"stages": list(stages), **total}
    return out


def annotate_tokens(run: RunDir) -> int:
    """Prompt + output tokens of annotate's current requests at its measured tokens per answer."""
    cost = stage_cost(run, "annotate")
    if not cost["requests"]:
        raise ConfigError("compare.dataman_budget match_mira: annotate has asked the teacher nothing "
                          "(usage/annotate.json); run `mira annotate` first")
    if not cost["answered"] or not cost["prompt_tokens"] + cost["completion_tokens"]:
        raise ConfigError("compare.dataman_budget match_mira: usage/annotate.json records no tokens (its answers "
                          "came from the teacher cache); set selection.dataman.records instead")
    per_answer = (cost["prompt_tokens"] + cost["completion_tokens"]) / cost["answered"]
    return round(per_answer * cost["requests"])


def request_tokens(config: RunConfig, run: RunDir, requests: list[Any]) -> list[float]:
    """Prompt + output tokens of each request: as the teacher cache recorded them where it holds the
    answer, else estimated (prompt characters / 4, output at the cache's mean for that prompt)."""
    if not requests:
        return []
    path = run.teacher_cache_path
    cached: dict[str, float] = {}
    mean_output: float | None = None
    if path.exists():
        cache = TeacherCache(path)
        try:
            for request in requests:
                hit = cache.get(request_key(config.teacher, request))
                if hit is not None and hit.ok and hit.prompt_tokens:
                    cached[request_key(config.teacher, request)] = hit.prompt_tokens + hit.completion_tokens
            measured = cache.mean_usage(config.teacher.model, requests[0].prompt_version)
            mean_output = measured["completion_tokens"] if measured else None
        finally:
            cache.close()
    out = []
    for request in requests:
        key = request_key(config.teacher, request)
        if key in cached:
            out.append(cached[key])
        else:
            output = mean_output if mean_output is not None else request.max_tokens / 2
            out.append(request.prompt_chars() / CHARS_PER_TOKEN + output)
    return out


def matched_dataman_records(config: RunConfig, run: RunDir) -> dict[str, Any]:
    """DataMan's label count whose estimated teacher tokens match annotate's, with the figures behind it."""
    target = annotate_tokens(run)
    sampled, requests = label_requests(config, run)
    tokens = request_tokens(config, run, requests)
    per_request = sum(tokens) / len(tokens)
    # The consistency re-asks are a fixed few (annotation.self_consistency_records), not a share.
    again = len(requests) - sampled
    records = max(2, int(target / per_request) - again)
    log.info("compare: DataMan gets %d labels (%.0f tokens a request) to match annotate's %d tokens",
             records, per_request, target)
    return {"records": records, "annotate_tokens": target, "tokens_per_request": round(per_request, 1),
            "estimated_tokens": round(per_request * (records + again))}
