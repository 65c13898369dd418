"""Async transport for any OpenAI-compatible chat-completions server.

Retries with exponential backoff and jitter on timeouts, connection errors, 429 and 5xx (a
Retry-After header wins); other 4xx are not retried. Structured output is requested as
``response_format: json_schema``; a server that rejects it (or rejects ``logprobs``) gets the
request again without that feature, and the client remembers the downgrade for later requests.
The API key lives in one header of this object and is never logged or returned.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from mira.core.config import TeacherConfig
from mira.core.secrets import Redactor, endpoint_url, protect_logs, redact_url, split_credentials, url_secrets
from mira.teacher.sanitize import clean_text
from mira.teacher.scores import logprob_problem
from mira.teacher.usage import Usage

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0
# The longest reply mira stores and parses, after the whitespace around it is trimmed. The longest
# answer a stage asks for is about 1,000 tokens (annotate with rationales on 15 anchors), a few KB;
# a reply padded with megabytes (whitespace inside the JSON, a server ignoring max_tokens) is a
# failed answer instead of a megabyte row in the cache and a megabyte parse on every replay.
MAX_REPLY_CHARS = 65_536
# The largest response body parsed at all: a 1,000-token answer with 10 alternatives per token
# is under 1 MB of JSON.
MAX_BODY_BYTES = 32 * 1024 * 1024


class RequestRejected(Exception):
    """A 4xx the server will repeat for this request (not retried now, never cached: the server may be fixed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"http {status}: {message}")
        self.status = status


class ServiceError(Exception):
    """The service did not answer after all retries (timeouts, 429, 5xx, connection errors), or
    answered with a reply that cannot be read (malformed JSON structure or logprobs, too long)."""


@dataclass
class ChatReply:
    content: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)


class ChatClient:
    """Sends one chat request at a time per call; callers bound concurrency with a semaphore."""

    def __init__(self, config: TeacherConfig, base_url: str, model: str, api_key: str | None) -> None:
        self.config = config
        # Built with its query string kept (`?api-version=...`); user:pass@ becomes a Basic header
        # (an API key wins), and only `display_url` may ever be shown or stored.
        bare, basic = split_credentials(base_url)
        self.api_base = bare  # the batch files and batches endpoints sit beside chat/completions
        self.url = endpoint_url(bare, "chat/completions")
        self.display_url = redact_url(base_url) or ""
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if basic and not api_key:
            self._headers = {"Authorization": basic}
        elif basic:
            log.warning("teacher.base_url carries user:password and an API key is set; sending the API key")
        # Servers echo headers and URLs in error bodies; nothing they send reaches mira's files unmasked.
        self.redact = Redactor([api_key, *url_secrets(base_url)])
        protect_logs(self.redact)
        # Downgrades learned from this server, remembered for the life of the client.
        self.use_json_schema = True
        self.use_logprobs = config.logprobs

    def __repr__(self) -> str:  # never show the headers
        return f"ChatClient(url={self.display_url!r}, model={self.model!r})"

    @property
    def request_headers(self) -> dict[str, str]:
        """The authorization header(s) every request carries (for the batch endpoints; never logged)."""
        return dict(self._headers)

    def read_reply(self, payload: dict[str, Any], asked_logprobs: bool, usage: Usage) -> ChatReply:
        """A chat-completions response body read as a live reply is (a batch output line's body)."""
        return self._reply(payload, 0.0, asked_logprobs, usage)

    def body(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, schema_name: str,
             max_tokens: int, temperature: float, seed: int, json_schema: bool, logprobs: bool,
             slot: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": temperature, "seed": seed}
        if slot is not None and self.config.provider == "local":
            # llama.cpp extensions (other servers may reject unknown fields): run on this slot and
            # reuse its cached prompt prefix (cache_prompt is llama.cpp's default; said explicitly).
            body["id_slot"] = slot % max(1, self.config.concurrency)
            body["cache_prompt"] = True
        if schema is not None and json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        elif schema is not None:
            # json_object mode cannot carry the schema, so the model reads it instead.
            note = "Answer with one JSON object that matches this JSON schema:\n" + json.dumps(schema)
            body["messages"] = [*messages, {"role": "system", "content": note}]
            body["response_format"] = {"type": "json_object"}
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 10
        return body

    async def complete(self, http: Any, messages: list[dict[str, str]], schema: dict[str, Any] | None,
                       schema_name: str, max_tokens: int, temperature: float, seed: int, usage: Usage,
                       tag: str = "", slot: int | None = None) -> ChatReply:
        json_schema, logprobs = self.use_json_schema, self.use_logprobs
        while True:
            body = self.body(messages, schema, schema_name, max_tokens, temperature, seed, json_schema, logprobs,
                             slot)
            started = time.monotonic()
            try:
                payload = await self._post(http, body, usage, tag)
            except RequestRejected as exc:
                if exc.status not in (400, 422) or not (logprobs or (json_schema and schema is not None)):
                    raise
                text = str(exc).lower()
                drop_logprobs = logprobs and ("logprob" in text or not (json_schema and schema is not None))
                if drop_logprobs:
                    logprobs = False
                else:
                    json_schema = False
                log.info("teacher %s: server rejected %s, retrying without it", tag or "request",
                         "logprobs" if drop_logprobs else "json_schema")
                continue
            self._remember(json_schema, logprobs, usage)
            return self._reply(payload, time.monotonic() - started, logprobs, usage)

    def _remember(self, json_schema: bool, logprobs: bool, usage: Usage) -> None:
        if self.use_json_schema and not json_schema:
            self.use_json_schema = False
            usage.degraded.append("json_schema->json_object")
            log.warning("teacher server rejects json_schema output; using json_object from now on")
        if self.use_logprobs and not logprobs:
            self.use_logprobs = False
            usage.degraded.append("logprobs off (rejected)")
            log.warning("teacher server rejects logprobs; probability-weighted scores are off")

    def _reply(self, payload: dict[str, Any], latency: float, asked_logprobs: bool, usage: Usage) -> ChatReply:
        """The reply in `payload`; ServiceError when it cannot be read (never cached, asked again
        by a rerun). Its text loses control and bidi characters here (mira.teacher.sanitize)."""
        try:
            choice = payload["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ServiceError("malformed response: no choices[0].message") from None
        if content is not None and not isinstance(content, str):
            raise ServiceError(f"malformed response: message.content is {type(content).__name__}, not text")
        content = content or ""
        if len(content) > MAX_REPLY_CHARS:
            content = content.strip()
            if len(content) > MAX_REPLY_CHARS:
                raise ServiceError(f"reply too long: {len(content):,} characters, more than {MAX_REPLY_CHARS:,}")
        content = clean_text(self.redact(content) or "")
        logprobs = choice.get("logprobs") or None
        problem = logprob_problem(logprobs)
        if problem is not None:
            raise ServiceError(f"malformed logprobs: {problem}")
        if asked_logprobs and not (logprobs or {}).get("content") and content and self.use_logprobs:
            # Accepted but ignored: stop paying for the larger request.
            self.use_logprobs = False
            usage.degraded.append("logprobs off (not returned)")
            log.warning("teacher server returns no logprobs; probability-weighted scores are off")
        token_usage = payload.get("usage") or {}
        if not isinstance(token_usage, dict):
            raise ServiceError("malformed response: usage is not an object")
        finish_reason = choice.get("finish_reason")
        return ChatReply(content, finish_reason if isinstance(finish_reason, str) else None, logprobs,
                         _token_count(token_usage, "prompt_tokens"), _token_count(token_usage, "completion_tokens"),
                         latency)

    async def _post(self, http: Any, body: dict[str, Any], usage: Usage, tag: str) -> dict[str, Any]:
        import httpx

        retries = self.config.max_retries
        for attempt in range(retries + 1):
            if attempt:
                usage.retries += 1
            usage.sent += 1
            delay: float | None = None
            try:
                # httpx's read timeout is per chunk; wait_for bounds the whole exchange.
                response = await asyncio.wait_for(http.post(self.url, json=body, headers=self._headers),
                                                  timeout=self.config.timeout_s)
            except (TimeoutError, httpx.TimeoutException):
                reason = f"timeout after {self.config.timeout_s:g} s"
            except httpx.TransportError as exc:
                reason = f"connection error ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    reason = f"http {status}"
                    delay = retry_after_seconds(response.headers.get("retry-after"))
                elif status >= 400:
                    raise RequestRejected(status, self.redact(_error_text(response)) or "")
                else:
                    if len(response.content) > MAX_BODY_BYTES:
                        raise ServiceError(f"malformed response: a body of {len(response.content):,} bytes")
                    try:
                        payload = response.json()
                    except ValueError:
                        reason = "unreadable response body"
                    else:
                        if not isinstance(payload, dict):
                            raise ServiceError("malformed response: the body is not a JSON object")
                        return payload
            if attempt == retries:
                raise ServiceError(f"{reason} (gave up after {retries + 1} attempts)")
            if delay is None:
                delay = min(self.config.backoff_s * 2 ** attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
            log.info("teacher %s: %s; retry %d/%d in %.2f s", tag or "request", reason, attempt + 1, retries, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _token_count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53:
        raise ServiceError(f"malformed response: usage.{name} is {str(value)[:20]!r}")
    return int(value)


def _error_text(response: Any) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message)
    except ValueError:
        text = response.text
    return " ".join(clean_text(text).split())[:300]
