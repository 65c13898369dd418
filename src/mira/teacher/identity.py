"""The teacher identity: the one definition of which teacher settings decide an answer.

It keys the request cache (:func:`mira.teacher.teacher.request_key`) and every stage
fingerprint that depends on teacher answers (discover, annotate, the DataMan baseline), so the
two can never disagree: a setting that would replay the same answer from the cache never makes a
stage rerun. Prompt versions are per request (``TeacherRequest.prompt_version``), not part of it.

Left out on purpose, because they decide only *whether* or *when* an answer comes, never which:
timeouts, concurrency, budgets (``max_requests``, ``max_tokens``), retries and back-off, the
deadline, the failure-share and consecutive-failure limits, the local server's threads, port,
context size and model cache folder, the API key variable, ``base_url`` (with any credentials
in it), and how requests travel and what they cost (``mode``, ``batch``, ``price_per_mtok``): an
answer from a batch is the answer the direct path caches. Changing any of them leaves every finished stage done.
"""

from __future__ import annotations

from typing import Any

from mira.core.config import TeacherConfig
from mira.teacher.scores import SCORES_VERSION


def sampling_params(config: TeacherConfig) -> dict[str, Any]:
    """The sampling settings that change an answer (temperature, seed, logprobs)."""
    params: dict[str, Any] = {"temperature": config.temperature, "seed": config.seed, "logprobs": config.logprobs}
    if config.logprobs:
        # The cache stores expectations, not logprobs: a new expectation rule must re-ask, not replay.
        params["expected"] = SCORES_VERSION
    return params


def teacher_identity(config: TeacherConfig) -> dict[str, Any]:
    """Provider, model and sampling: what keys the cache and the teacher stages' fingerprints."""
    return {"provider": config.provider, "model": config.model, "sampling": sampling_params(config)}
