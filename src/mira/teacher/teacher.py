"""The teacher a stage talks to: cache, budget, parse-and-re-ask, usage, progress.

``open_teacher`` is the one entry point. ``Teacher.run`` is synchronous for stage code and runs
the requests concurrently on an event loop inside. Every request ends as a :class:`TeacherResult`:
an answer, a recorded failure, or ``error="budget"``; nothing a server does raises out of it.

Only valid answers are cached. Transport errors, 4xx/5xx, timeouts and answers that stay invalid
after the re-asks are failures of this session only, so a rerun asks exactly those again. A
cached answer is replayed by parsing its raw text with the same code as a live one, so replay is
exact for every schema (aliases included) and for caches written by older versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from pydantic import ValidationError

from mira.core.config import TeacherConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.run.rundir import RunDir
from mira.teacher.cache import TeacherCache
from mira.teacher.client import ChatClient, RequestRejected, ServiceError
from mira.teacher.identity import teacher_identity
from mira.teacher.outcome import DEADLINE_ERROR, UNAVAILABLE_ERROR
from mira.teacher.request import TeacherRequest, TeacherResult
from mira.teacher.scores import expected_scores
from mira.teacher.usage import Budget, Usage, UsageLog, estimate_cost

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
# A re-ask at temperature 0 would repeat the same bad answer; sample a little instead.
REASK_TEMPERATURE = 0.7


def parse_answer(content: str, schema: Any, finish_reason: str | None) -> tuple[Any, str | None]:
    """(value, None) for a valid answer, (None, reason) otherwise."""
    if schema is None:
        return (content, None) if finish_reason != "length" else (None, "cut off at max_tokens")
    text = content.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except ValueError as exc:
        cut = " (cut off at max_tokens)" if finish_reason == "length" else ""
        return None, f"invalid JSON{cut}: {exc}"
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return None, f"schema violation at {where}: {first['msg']}"


class Teacher:
    """An open teacher session for one stage. Use :func:`open_teacher`, which also closes it."""

    def __init__(self, config: TeacherConfig, run: RunDir, stage: str, base_url: str,
                 progress: ProgressFactory = null_progress) -> None:
        self.config = config
        self.run_dir = run
        self.stage = stage
        self.model_name = config.model
        self.progress = progress
        self.usage_counters = Usage()
        self.usage_log = UsageLog(self.run_dir.usage_dir / f"{self.stage}.json", self.stage, self.model_name)
        self.budget = Budget(config.max_requests, config.max_tokens)
        self.cache = TeacherCache(run.teacher_cache_path)
        api_key = os.environ.get(config.api_key_env) if config.provider == "openai" else None
        self.client = ChatClient(config, base_url, config.model, api_key)
        # Where the user is told the teacher is: never with credentials or query values.
        self.url = self.client.display_url
        self._deadline = time.monotonic() + config.deadline_s
        # A server that fails request after request is down: stop sending (each request would
        # otherwise wait out every retry) and let the stage stop with the reason.
        self._failure_streak = 0
        self._unavailable: str | None = None
        self._closed = False
        self._usage_write_pending = False

    @property
    def budget_exhausted(self) -> bool:
        return self.budget.exhausted

    @property
    def usage(self) -> dict[str, Any]:
        return self.usage_counters.as_dict()

    def key(self, request: TeacherRequest) -> str:
        return request_key(self.config, request)

    def estimate(self, requests: list[TeacherRequest]) -> dict[str, Any]:
        keys = [self.key(r) for r in requests]
        return estimate_cost(requests, keys, self.cache.has(keys), self.model_name,
                             self.cache.mean_usage(self.model_name))

    def run(self, requests: list[TeacherRequest]) -> list[TeacherResult]:
        """Answer `requests` (cache first, then the server, concurrently); results in input order."""
        return _run_sync(self._run(list(requests)))

    # --- internals -----------------------------------------------------------------------------
    async def _run(self, requests: list[TeacherRequest]) -> list[TeacherResult]:
        import httpx

        results: list[TeacherResult | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            key = self.key(request)
            self.usage_counters.requests += 1
            cached = self.cache.get(key)
            if cached is not None and cached.ok:  # failures (older caches stored some) are asked again
                self.usage_counters.cache_hits += 1
                results[i] = self._from_cache(request, key, cached)
            else:
                pending.setdefault(key, []).append(i)  # duplicates in one batch are asked once
        hits = len(requests) - sum(len(v) for v in pending.values())
        task = self.progress(f"teacher {self.stage} ({hits} cached)", len(requests))
        task.advance(hits)
        semaphore = asyncio.Semaphore(self.config.concurrency)
        limits = httpx.Limits(max_connections=self.config.concurrency,
                              max_keepalive_connections=self.config.concurrency)
        timeout = httpx.Timeout(self.config.timeout_s, connect=min(10.0, self.config.timeout_s))

        async def one(key: str, indices: list[int], http: httpx.AsyncClient) -> None:
            request = requests[indices[0]]
            async with semaphore:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    result = self._fail(request, key, self._deadline_error(), None, _no_counts(), 0.0)
                elif self._unavailable is not None:  # said once already, in _note_service_failure
                    result = self._fail(request, key, self._unavailable, None, _no_counts(), 0.0, logging.DEBUG)
                elif self.budget.try_start():
                    try:
                        result = await asyncio.wait_for(self._ask(http, request, key), timeout=left)
                    except TimeoutError:
                        result = self._fail(request, key, self._deadline_error(), None, _no_counts(), 0.0)
                else:
                    self.usage_counters.budget_skipped += 1
                    result = TeacherResult.failure("budget", tag=request.tag, key=key)
            for i in indices:
                results[i] = result
            task.advance(len(indices))

        try:
            # Plain-http servers (local, scripted) need no TLS context, which costs ~0.15 s to build.
            verify = not self.client.url.startswith("http://")
            async with httpx.AsyncClient(limits=limits, timeout=timeout, verify=verify) as http:
                await asyncio.gather(*(one(k, idx, http) for k, idx in pending.items()))
        finally:
            task.close()
            if pending:  # a deferred write dies with this event loop: write now
                self._usage_write_pending = False
                self.usage_log.write(self.usage_counters, self.budget.exhausted)
        if self.budget.exhausted:
            log.warning("teacher %s: budget reached (%s); %d requests left for a rerun", self.stage,
                        self._budget_text(), self.usage_counters.budget_skipped)
        return [r for r in results if r is not None]

    def _budget_text(self) -> str:
        parts = []
        if self.budget.max_requests is not None:
            parts.append(f"{self.budget.requests}/{self.budget.max_requests} requests")
        if self.budget.max_tokens is not None:
            parts.append(f"{self.budget.tokens}/{self.budget.max_tokens} tokens")
        return ", ".join(parts)

    async def _ask(self, http: Any, request: TeacherRequest, key: str) -> TeacherResult:
        schema = request.json_schema()
        schema_name = request.schema.__name__ if request.schema is not None else "answer"
        max_tokens, counts = request.max_tokens, {"prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}
        latency, raw = 0.0, None
        error: str | None = "no answer"
        for attempt in range(self.config.max_parse_retries + 1):
            counts["attempts"] += 1
            temperature = self.config.temperature if attempt == 0 else max(self.config.temperature, REASK_TEMPERATURE)
            try:
                reply = await self.client.complete(http, request.messages, schema, schema_name, max_tokens,
                                                   temperature, self.config.seed + 1009 * attempt,
                                                   self.usage_counters, request.tag, request.slot)
            except (RequestRejected, ServiceError) as exc:
                # Never cached: a rerun after the server is fixed asks again.
                self._note_service_failure(str(exc))
                return self._fail(request, key, str(exc), raw, counts, latency)
            self._failure_streak = 0
            counts["prompt_tokens"] += reply.prompt_tokens
            counts["completion_tokens"] += reply.completion_tokens
            self.usage_counters.prompt_tokens += reply.prompt_tokens
            self.usage_counters.completion_tokens += reply.completion_tokens
            self.budget.spend_tokens(reply.prompt_tokens + reply.completion_tokens)
            latency += reply.latency_s
            raw = reply.content
            value, error = parse_answer(reply.content, request.schema, reply.finish_reason)
            if error is None:
                scores = (expected_scores(reply.content, reply.logprobs, request.score_key, request.score_max)
                          if schema else None)
                self.usage_counters.latency_s += latency
                usage = {**counts, "latency_s": round(latency, 3)}
                # By alias: the cache stores the answer as the server wrote it, and a schema whose
                # fields have aliases (annotate's anchor ids) validates only that form on replay.
                dumped = value.model_dump(mode="json", by_alias=True) if request.schema is not None else value
                self.cache.put(key, prompt_version=request.prompt_version, model=self.model_name, tag=request.tag,
                               ok=True, raw=raw, value=dumped, error=None, expected_scores=scores,
                               prompt_tokens=counts["prompt_tokens"], completion_tokens=counts["completion_tokens"],
                               attempts=counts["attempts"], latency_s=latency)
                self.usage_counters.answered += 1
                self._keep_usage_current()
                return TeacherResult(True, value, None, False, scores, usage, raw, request.tag, key)
            if attempt < self.config.max_parse_retries:
                self.usage_counters.parse_retries += 1
                log.info("teacher %s: %s; asking again", request.tag or "request", error)
                if reply.finish_reason == "length":
                    max_tokens = int(max_tokens * 1.5) + 16  # it ran out of room: give it more
        self.usage_counters.latency_s += latency
        # An answer that stays invalid is not cached: the next run (or a better server) may answer it.
        return self._fail(request, key, error or "no answer", raw, counts, latency)

    def _keep_usage_current(self) -> None:
        """Write usage/<stage>.json now, or once its write interval has passed (a session killed
        with SIGKILL then keeps all but the last second of its counts; close writes the rest)."""
        if self.usage_log.write(self.usage_counters, self.budget.exhausted, force=False) is not None:
            return
        if not self._usage_write_pending:
            self._usage_write_pending = True
            asyncio.get_running_loop().call_later(self.usage_log.interval, self._deferred_usage_write)

    def _deferred_usage_write(self) -> None:
        self._usage_write_pending = False
        if not self._closed:
            self.usage_log.write(self.usage_counters, self.budget.exhausted)

    def _note_service_failure(self, error: str) -> None:
        self._failure_streak += 1
        limit = self.config.max_consecutive_failures
        if limit is not None and self._failure_streak >= limit and self._unavailable is None:
            self._unavailable = f"{UNAVAILABLE_ERROR} after {self._failure_streak} failed requests in a row ({error})"
            log.warning("teacher %s: %s; not sending the rest", self.stage, self._unavailable)

    def _deadline_error(self) -> str:
        return f"{DEADLINE_ERROR} (teacher.deadline_s={self.config.deadline_s:g}) before an answer"

    def _fail(self, request: TeacherRequest, key: str, error: str, raw: str | None, counts: dict[str, int],
              latency: float, level: int = logging.WARNING) -> TeacherResult:
        self.usage_counters.failures += 1
        self._keep_usage_current()
        log.log(level, "teacher %s: failed: %s", request.tag or "request", error)
        usage = {**counts, "latency_s": round(latency, 3)}
        return TeacherResult(False, None, error, False, None, usage, raw, request.tag, key)

    def _from_cache(self, request: TeacherRequest, key: str, cached: Any) -> TeacherResult:
        usage = {"prompt_tokens": cached.prompt_tokens, "completion_tokens": cached.completion_tokens,
                 "attempts": cached.attempts, "latency_s": cached.latency_s}
        value, error = replay_value(cached, request.schema)
        if error is not None:  # only if a model changed without a prompt version bump
            return TeacherResult(False, None, f"cached answer no longer validates: {error}",
                                 True, None, usage, cached.raw, request.tag, key)
        return TeacherResult(True, value, None, True, cached.expected_scores, usage, cached.raw, request.tag, key)

    def interrupted_line(self) -> str:
        """What an interruption kept, in one line (for the CLI)."""
        counters = self.usage_counters
        return (f"interrupted during {self.stage}: {counters.answered} new teacher answers (plus "
                f"{counters.cache_hits} replayed) are kept in {self.run_dir.teacher_cache_path.name}, usage in "
                f"usage/{self.stage}.json; rerun `mira {self.stage}` to resume without paying for them again")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.usage_log.write(self.usage_counters, self.budget.exhausted)
        self.cache.close()


def replay_value(cached: Any, schema: Any) -> tuple[Any, str | None]:
    """The cached answer as a live run would have parsed it: from the raw text when there is one.

    Rows of older versions stored field names (``f0``) where the answer had aliases (``a00``);
    the raw text is what the server said, so parsing it again is exact whatever was stored.
    """
    if cached.raw is not None:
        value, error = parse_answer(cached.raw, schema, "stop")
        if error is None:
            return value, None
    stored: Any = json.loads(cached.value_json) if cached.value_json is not None else None
    if schema is None:
        return stored, None
    try:
        return schema.model_validate(stored, by_alias=True, by_name=True), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


def _no_counts() -> dict[str, int]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}


class TeacherInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during a teacher stage; the message says what was kept."""


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from code that already runs an event loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="mira-teacher")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def open_teacher(config: TeacherConfig, run: RunDir, stage: str,
                 progress: ProgressFactory = null_progress) -> Iterator[Teacher]:
    """Open a teacher for `stage`; with ``provider: local`` start (or reuse) the bundled model server."""
    with contextlib.ExitStack() as stack:
        if config.provider == "local":
            from mira.teacher.local import local_server

            base_url = stack.enter_context(local_server(config)).url
        else:
            base_url = config.base_url or DEFAULT_OPENAI_URL
        teacher = Teacher(config, run, stage, base_url, progress)
        stack.callback(teacher.close)
        try:
            yield teacher
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into one by the CLI
            teacher.close()  # usage counters first: they are what the user is told about
            raise TeacherInterrupted(teacher.interrupted_line()) from exc


def request_key(config: TeacherConfig, request: TeacherRequest) -> str:
    """The cache key of `request` under `config`: the request itself and the teacher identity."""
    return request.cache_key(teacher_identity(config))


def estimate(config: TeacherConfig, run: RunDir, requests: list[TeacherRequest]) -> dict[str, Any]:
    """Dry-run cost of `requests`: no server is started, nothing is sent, no file is created."""
    keys = [request_key(config, r) for r in requests]
    if not run.teacher_cache_path.exists():
        return estimate_cost(requests, keys, set(), config.model, None)
    cache = TeacherCache(run.teacher_cache_path)
    try:
        return estimate_cost(requests, keys, cache.has(keys), config.model, cache.mean_usage(config.model))
    finally:
        cache.close()
