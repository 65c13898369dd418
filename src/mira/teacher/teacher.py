"""The teacher a stage talks to: cache, budget, parse-and-re-ask, usage, progress.

``open_teacher`` is the one entry point. ``Teacher.run`` is synchronous for stage code and runs
the requests concurrently on an event loop inside. Every request ends as a :class:`TeacherResult`:
an answer, a recorded failure, or ``error="budget"``; nothing a server does raises out of it.

Only valid answers are cached. Transport errors, 4xx/5xx, timeouts and answers that stay invalid
after the re-asks are failures of this session only, so a rerun asks exactly those again. A
cached answer is replayed by parsing its raw text with the same code as a live one, so replay is
exact for every schema (aliases included) and for caches written by older versions
(:mod:`mira.teacher.answers`). A cache that cannot be written (a full disk) stops the session:
nothing more is sent, the requests in flight end, and :class:`TeacherStorageFailed` says in one
line what is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from mira.core.config import TeacherConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.run.rundir import RunDir
from mira.teacher.answers import parse_answer, replay_value
from mira.teacher.asking import no_counts, reask_max_tokens, reask_seed, reask_temperature
from mira.teacher.batch import BatchRun
from mira.teacher.cache import STORAGE_ERRORS, TeacherCache, TeacherStorageFailed
from mira.teacher.client import ChatClient, ChatReply, RequestRejected, ServiceError
from mira.teacher.identity import teacher_identity
from mira.teacher.outcome import DEADLINE_ERROR, UNAVAILABLE_ERROR
from mira.teacher.request import TeacherRequest, TeacherResult
from mira.teacher.sanitize import clean_text
from mira.teacher.scores import expected_scores
from mira.teacher.usage import Budget, Usage, UsageLog, estimate_cost

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


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
        try:
            self.cache = TeacherCache(run.teacher_cache_path)
        except STORAGE_ERRORS as exc:
            raise TeacherStorageFailed(exc, f"cannot open {run.teacher_cache_path} ({exc})") from None
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
        # A failed write of the cache (or usage file) stops the session: every further answer would
        # be paid for and lost. Answers that arrive after it are counted, and the stop is one line.
        self._storage_error: BaseException | None = None
        self._storage_what = ""
        self._unstored = 0
        # An unexpected exception in one request (a bug) stops sending too; it is raised once the
        # requests in flight have ended, so their answers reach the cache.
        self._crash: Exception | None = None

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
            try:
                cached = self.cache.get(key)
            except STORAGE_ERRORS as exc:
                what = f"read {self.run_dir.teacher_cache_path.name}"
                raise TeacherStorageFailed(exc, self._storage_line(exc, what)) from None
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
                try:
                    result = await self._one(http, request, key)
                except Exception as exc:  # a bug: raised after the gather, once the requests in flight end
                    self._crash = self._crash or exc
                    result = TeacherResult.failure(f"{UNAVAILABLE_ERROR}: {type(exc).__name__}", tag=request.tag,
                                                   key=key)
            for i in indices:
                results[i] = result
            task.advance(len(indices))

        try:
            # Plain-http servers (local, scripted) need no TLS context, which costs ~0.15 s to build.
            verify = not self.client.url.startswith("http://")
            async with httpx.AsyncClient(limits=limits, timeout=timeout, verify=verify) as http:
                if self.config.mode == "batch" and pending:
                    answers = await BatchRun(self, http).run({key: requests[i[0]] for key, i in pending.items()})
                    for key, indices in pending.items():
                        for i in indices:
                            results[i] = answers[key]
                    task.advance(sum(len(indices) for indices in pending.values()))
                else:
                    await asyncio.gather(*(one(k, idx, http) for k, idx in pending.items()))
        finally:
            task.close()
            if pending:  # a deferred write dies with this event loop: write now
                self._usage_write_pending = False
                self._write_usage()
        if self._crash is not None:
            raise self._crash
        if self._storage_error is not None:
            raise TeacherStorageFailed(self._storage_error, self._storage_line(self._storage_error, self._storage_what))
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

    async def _one(self, http: Any, request: TeacherRequest, key: str) -> TeacherResult:
        """One pending request: sent, or a failure saying why it was not."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            return self._fail(request, key, self._deadline_error(), None, no_counts(), 0.0)
        if self._unavailable is not None:  # said once already, in _note_service_failure
            return self._fail(request, key, self._unavailable, None, no_counts(), 0.0, logging.DEBUG)
        if self._storage_error is not None or self._crash is not None:  # raised after the gather
            return self._fail(request, key, f"{UNAVAILABLE_ERROR}: the session stopped", None, no_counts(), 0.0,
                              logging.DEBUG)
        if not self.budget.try_start():
            self.usage_counters.budget_skipped += 1
            return TeacherResult.failure("budget", tag=request.tag, key=key)
        try:
            return await asyncio.wait_for(self._ask(http, request, key), timeout=left)
        except TimeoutError:
            return self._fail(request, key, self._deadline_error(), None, no_counts(), 0.0)

    def _storage_line(self, exc: BaseException, what: str) -> str:
        """The one line of a failed cache or usage write: what failed and what is kept (the CLI adds
        what to do about the cause, as for any full disk)."""
        lost = f" ({self._unstored} more could not be stored and will be asked again)" if self._unstored else ""
        return (f"cannot {what} ({exc}); {self.usage_counters.answered} new answers of this session are kept "
                f"in {self.run_dir.teacher_cache_path.name}{lost}, and a rerun of `mira {self.stage}` sends only "
                "the requests not answered yet")

    def _storage_failed(self, exc: BaseException, what: str) -> None:
        if self._storage_error is None:
            self._storage_error, self._storage_what = exc, what
            log.warning("teacher %s: cannot %s (%s); not sending the rest", self.stage, what, exc)

    def _write_usage(self, force: bool = True) -> dict[str, Any] | None:
        """Write usage/<stage>.json; a failed write stops the session instead of raising mid-request."""
        try:
            return self.usage_log.write(self.usage_counters, self.budget.exhausted, force=force)
        except OSError as exc:
            self._storage_failed(exc, f"write usage/{self.stage}.json")
            return {}  # nothing to retry later

    def _store(self, key: str, request: TeacherRequest, raw: str, value: Any, scores: list[float | None] | None,
               counts: dict[str, int], latency: float) -> bool:
        """Put a valid answer in the cache; False (the session stops) when it cannot be written."""
        try:
            self.cache.put(key, prompt_version=request.prompt_version, model=self.model_name, tag=request.tag,
                           ok=True, raw=raw, value=value, error=None, expected_scores=scores,
                           prompt_tokens=counts["prompt_tokens"], completion_tokens=counts["completion_tokens"],
                           attempts=counts["attempts"], latency_s=latency)
        except STORAGE_ERRORS as exc:
            self._unstored += 1
            self._storage_failed(exc, f"write {self.run_dir.teacher_cache_path.name}")
            return False
        return True

    async def _ask(self, http: Any, request: TeacherRequest, key: str) -> TeacherResult:
        schema = request.json_schema()
        schema_name = request.schema.__name__ if request.schema is not None else "answer"
        max_tokens, counts = request.max_tokens, no_counts()
        latency, raw = 0.0, None
        error: str | None = "no answer"
        for attempt in range(self.config.max_parse_retries + 1):
            counts["attempts"] += 1
            temperature = reask_temperature(self.config, attempt)
            try:
                reply = await self.client.complete(http, request.messages, schema, schema_name, max_tokens,
                                                   temperature, reask_seed(self.config, attempt),
                                                   self.usage_counters, request.tag, request.slot)
            except (RequestRejected, ServiceError) as exc:
                # Never cached: a rerun after the server is fixed asks again.
                self._note_service_failure(str(exc))
                return self._fail(request, key, str(exc), raw, counts, latency)
            self._failure_streak = 0
            raw = reply.content
            result, error = self.accept_reply(request, key, reply, counts)
            latency = counts.get("latency_s", 0.0)
            if result is not None:
                return result
            if attempt < self.config.max_parse_retries:
                self.usage_counters.parse_retries += 1
                log.info("teacher %s: %s; asking again", request.tag or "request", error)
                if reply.finish_reason == "length":
                    max_tokens = reask_max_tokens(max_tokens)
        self.usage_counters.latency_s += latency
        # An answer that stays invalid is not cached: the next run (or a better server) may answer it.
        return self._fail(request, key, error or "no answer", raw, counts, latency)

    def accept_reply(self, request: TeacherRequest, key: str, reply: ChatReply,
                     counts: dict[str, Any]) -> tuple[TeacherResult | None, str | None]:
        """Count one reply to `request` and land it: ``(result, None)`` when it ends the request (a
        valid answer, now in the cache, or a failure no re-ask can fix), ``(None, error)`` for an
        answer worth asking again. Direct replies and batch output lines both come through here, so
        the rest of the pipeline cannot tell how an answer travelled. `counts` (prompt and completion
        tokens, attempts, latency_s) accumulates over the attempts at one request."""
        counts["prompt_tokens"] += reply.prompt_tokens
        counts["completion_tokens"] += reply.completion_tokens
        counts["latency_s"] = counts.get("latency_s", 0.0) + reply.latency_s
        latency = counts["latency_s"]
        self.usage_counters.prompt_tokens += reply.prompt_tokens
        self.usage_counters.completion_tokens += reply.completion_tokens
        self.budget.spend_tokens(reply.prompt_tokens + reply.completion_tokens)
        raw = reply.content
        value, error = parse_answer(reply.content, request.schema, reply.finish_reason)
        if error is not None:
            return None, error
        try:
            scores = (expected_scores(reply.content, reply.logprobs, request.score_key, request.score_max)
                      if request.schema is not None else None)
        except ValueError as exc:  # malformed logprobs (the client checks them first)
            self._note_service_failure(str(exc))
            return self._fail(request, key, str(exc), raw, counts, latency), None
        self.usage_counters.latency_s += latency
        usage = {**counts, "latency_s": round(latency, 3)}
        # By alias: the cache stores the answer as the server wrote it, and a schema whose
        # fields have aliases (annotate's anchor ids) validates only that form on replay.
        dumped = value.model_dump(mode="json", by_alias=True) if request.schema is not None else value
        if not self._store(key, request, raw, dumped, scores, counts, latency):
            return self._fail(request, key, f"{UNAVAILABLE_ERROR}: the answer could not be stored", raw,
                              counts, latency, logging.DEBUG), None
        self.usage_counters.answered += 1
        self._keep_usage_current()
        return TeacherResult(True, value, None, False, scores, usage, raw, request.tag, key), None

    def _keep_usage_current(self) -> None:
        """Write usage/<stage>.json now, or once its write interval has passed (a session killed
        with SIGKILL then keeps all but the last second of its counts; close writes the rest)."""
        if self._write_usage(force=False) is not None:
            return
        if not self._usage_write_pending:
            self._usage_write_pending = True
            asyncio.get_running_loop().call_later(self.usage_log.interval, self._deferred_usage_write)

    def _deferred_usage_write(self) -> None:
        self._usage_write_pending = False
        if not self._closed:
            self._write_usage()

    def _note_service_failure(self, error: str) -> None:
        self._failure_streak += 1
        limit = self.config.max_consecutive_failures
        if limit is not None and self._failure_streak >= limit and self._unavailable is None:
            self._unavailable = f"{UNAVAILABLE_ERROR} after {self._failure_streak} failed requests in a row ({error})"
            log.warning("teacher %s: %s; not sending the rest", self.stage, self._unavailable)

    def deadline_left(self) -> float:
        """Seconds until the stage's teacher deadline (``teacher.deadline_s``); <= 0 once it passed."""
        return self._deadline - time.monotonic()

    def fail(self, request: TeacherRequest, key: str, error: str, raw: str | None,
             counts: dict[str, Any]) -> TeacherResult:
        """`request` failed with `error`: counted, logged, never cached (a rerun asks it again)."""
        return self._fail(request, key, error, raw, counts, counts.get("latency_s", 0.0))

    def deadline_error(self) -> str:
        return self._deadline_error()

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
        raw = clean_text(cached.raw) if cached.raw is not None else None  # written before the cleaning
        if error is not None:  # only if a model changed without a prompt version bump
            return TeacherResult(False, None, f"cached answer no longer validates: {error}",
                                 True, None, usage, raw, request.tag, key)
        return TeacherResult(True, value, None, True, cached.expected_scores, usage, raw, request.tag, key)

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
        self._write_usage()
        self.cache.close()


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
