"""The teacher's batch settings and prices (``teacher.batch``, ``teacher.price_per_mtok``).

Kept beside :mod:`mira.core.config`, which re-exports them; they are sections of ``TeacherConfig``. None of them
changes an answer (mira.teacher.identity): they decide how and when requests are sent, and what the
dry run says they cost.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mira.core.config_base import Section


class TeacherBatchConfig(Section):
    """How a stage's uncached requests travel in ``teacher.mode: batch`` (OpenAI Batch API JSONL)."""

    # Write the input JSONL and stop (exit 3) with the vLLM `run_batch` command to run; a rerun
    # imports the output file written beside it. Off: upload through /v1/files and /v1/batches.
    offline: bool = False
    # The Batch API's limit is 50,000 requests per batch; more requests make several batches.
    max_requests_per_batch: int = Field(50_000, ge=1, le=50_000)
    completion_window: Literal["24h"] = "24h"
    # The first status check waits this long; each unchanged answer stretches the wait by
    # `poll_backoff` up to `max_poll_interval_s` (a batch takes minutes to hours: no need to ask
    # every second).
    poll_interval_s: float = Field(10.0, gt=0)
    poll_backoff: float = Field(1.5, ge=1.0)
    max_poll_interval_s: float = Field(300.0, gt=0)
    # An expired, failed or cancelled batch is sent again (its unanswered requests only) at most
    # this many times in one session; past it those requests fail like failed direct requests.
    max_resubmits: int = Field(2, ge=0)


class TokenPrices(Section):
    """US dollars (or any currency) per million tokens: what the dry run prices new requests at."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
