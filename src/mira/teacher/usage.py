"""Usage accounting, the per-stage budget, and dry-run cost estimates."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Tokens per second for generation and prompt processing on a 2-core CPU (DESIGN.md). Prompt
# speeds of the small models are scaled from the 1.5B model's.
MODEL_SPEEDS: dict[str, tuple[float, float]] = {
    "qwen2.5-coder-1.5b": (34.0, 160.0),
    "qwen2.5-coder-0.5b": (58.0, 400.0),
    "smollm2-135m": (140.0, 1_000.0),
}
CHARS_PER_TOKEN = 4.0


@dataclass
class Usage:
    """Counters of one teacher session (one stage run)."""

    requests: int = 0           # logical requests asked for
    cache_hits: int = 0
    sent: int = 0               # HTTP requests that reached the wire, retries included
    retries: int = 0            # transport retries (timeouts, connection errors, 429, 5xx)
    parse_retries: int = 0      # re-asks after an invalid / cut-off / out-of-range answer
    answered: int = 0           # new valid answers, now in the cache
    failures: int = 0
    budget_skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0      # summed over answered requests
    degraded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        answered = self.requests - self.cache_hits - self.budget_skipped
        data["mean_latency_s"] = round(self.latency_s / answered, 3) if answered > 0 else None
        data["latency_s"] = round(self.latency_s, 3)
        return data


class Budget:
    """A stage's hard limits on new (uncached) teacher work. Cache hits are free."""

    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0
        self.tokens = 0
        self.exhausted = False

    def try_start(self) -> bool:
        """Reserve one request; False (and exhausted) when a limit is reached.

        With concurrency, requests already in flight finish, so the token limit can be
        overshot by at most `concurrency` answers; the request limit is exact.
        """
        if (self.max_requests is not None and self.requests >= self.max_requests) or \
                (self.max_tokens is not None and self.tokens >= self.max_tokens):
            self.exhausted = True
            return False
        self.requests += 1
        return True

    def spend_tokens(self, n: int) -> None:
        self.tokens += n


class UsageLog:
    """``usage/<stage>.json``: every session of the stage, summed, and the last one.

    Kept up to date during a session, at most every `interval` seconds after an answer and at
    close, so a session killed with SIGKILL keeps its counts (its answers are in the cache) instead
    of the file missing everything it paid for. Each write adds what this session counted since its
    previous write, so sessions that write the same file in turn each count once.
    """

    def __init__(self, path: Path, stage: str, model: str, interval: float = 1.0) -> None:
        self.path, self.stage, self.model, self.interval = path, stage, model, interval
        self._written: dict[str, float] = {}  # this session's counts already in the file's totals
        self._last_write = -math.inf

    def write(self, usage: Usage, budget_exhausted: bool, *, force: bool = True) -> dict[str, Any] | None:
        """Write the file (unless `force` is False and the last write is under `interval` seconds old)."""
        from mira.io.files import atomic_write_json, read_json

        now = time.monotonic()
        if not force and now - self._last_write < self.interval:
            return None
        self._last_write = now
        session = usage.as_dict()
        previous: dict[str, Any] = {}
        if self.path.exists():
            try:
                previous = read_json(self.path)
            except (OSError, ValueError):
                previous = {}
        totals = dict(previous.get("total") or {})
        counted = {name: value for name, value in session.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "mean_latency_s"}
        for name, value in counted.items():
            totals[name] = round(totals.get(name, 0) + value - self._written.get(name, 0), 3)
        data = {
            "stage": self.stage,
            "model": self.model,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "budget_exhausted": budget_exhausted,
            "sessions": int(previous.get("sessions", 0)) + (0 if self._written else 1),
            "last": session,
            "total": totals,
        }
        atomic_write_json(self.path, data)
        self._written = counted
        return data


def estimate_cost(requests: list[Any], keys: list[str], cached: set[str], model: str,
                  measured: dict[str, float] | None) -> dict[str, Any]:
    """What sending `requests` would cost: counts, token estimates and seconds (dry run)."""
    todo = [r for r, k in zip(requests, keys) if k not in cached]
    prompt_tokens = int(sum(r.prompt_chars() for r in todo) / CHARS_PER_TOKEN)
    if measured:
        completion_per_request = measured["completion_tokens"]
    else:
        # Without measurements assume answers fill about half of their token allowance.
        completion_per_request = None
    completion_tokens = int(sum(completion_per_request if completion_per_request is not None
                                else r.max_tokens / 2 for r in todo))
    speeds = MODEL_SPEEDS.get(model)
    if speeds:
        seconds = completion_tokens / speeds[0] + prompt_tokens / speeds[1]
    elif measured and measured.get("latency_s"):
        seconds = measured["latency_s"] * len(todo)
    else:
        seconds = None
    return {
        "requests": len(requests),
        "cached": len(requests) - len(todo),
        "prompt_tokens_est": prompt_tokens,
        "completion_tokens_est": completion_tokens,
        "seconds_est": round(seconds, 1) if seconds is not None else None,
    }
