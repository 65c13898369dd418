"""The OpenAI Batch API over HTTP: ``/v1/files`` (upload, content) and ``/v1/batches`` (create, retrieve, list).

The same retry policy as chat requests (:mod:`mira.teacher.client`): timeouts, connection errors,
429 and 5xx are retried with exponential backoff and jitter (a Retry-After header wins); other 4xx
raise :class:`RequestRejected` at once. Errors say which endpoint failed, with the server's text
redacted, and nothing here logs a header.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

from mira.core.config import TeacherConfig
from mira.core.secrets import endpoint_url
from mira.teacher.client import MAX_BACKOFF_S, ChatClient, RequestRejected, ServiceError, retry_after_seconds
from mira.teacher.sanitize import clean_text

log = logging.getLogger(__name__)
CHAT_ENDPOINT = "/v1/chat/completions"
# Where a batch stands (OpenAI's names; SGLang's and vLLM's servers use the same).
FINISHED = ("completed", "failed", "expired", "cancelled")


class BatchApi:
    """The files and batches endpoints of the teacher's server, with `client`'s credentials."""

    def __init__(self, config: TeacherConfig, client: ChatClient) -> None:
        self.config = config
        self.base = client.api_base
        self.headers = client.request_headers
        self.redact = client.redact

    def __repr__(self) -> str:  # never show the headers
        return f"BatchApi(base={self.redact(self.base)!r})"

    async def upload(self, http: Any, path: Path) -> str:
        """Upload the batch input file at `path` (purpose ``batch``); its file id."""
        handles = []

        def send() -> Any:
            handles.append(handle := path.open("rb"))  # streamed, not read into memory
            return http.post(endpoint_url(self.base, "files"), data={"purpose": "batch"},
                             files={"file": (path.name, handle, "application/jsonl")}, headers=self.headers)

        try:
            return _id(await self._send("upload the batch input file", send), "upload the batch input file")
        finally:
            for handle in handles:
                handle.close()

    async def create(self, http: Any, file_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        body = {"input_file_id": file_id, "endpoint": CHAT_ENDPOINT,
                "completion_window": self.config.batch.completion_window, "metadata": metadata}
        return await self._json("create the batch", lambda: http.post(endpoint_url(self.base, "batches"), json=body,
                                                                      headers=self.headers))

    async def retrieve(self, http: Any, batch_id: str) -> dict[str, Any]:
        url = endpoint_url(self.base, f"batches/{batch_id}")
        return await self._json(f"check batch {batch_id}", lambda: http.get(url, headers=self.headers))

    async def find(self, http: Any, file_id: str) -> dict[str, Any] | None:
        """The batch created from input file `file_id` (a create whose answer was lost to a kill),
        among the server's most recent ones; None if there is none or the server cannot list them."""
        url = endpoint_url(self.base, "batches") + "?limit=100"
        try:
            listing = await self._json("list batches", lambda: http.get(url, headers=self.headers))
        except RequestRejected:
            return None
        for batch in listing.get("data") or []:
            if isinstance(batch, dict) and batch.get("input_file_id") == file_id:
                return batch
        return None

    async def download(self, http: Any, file_id: str, target: Path) -> None:
        """The content of file `file_id`, streamed to `target` (written under a temporary name)."""
        url = endpoint_url(self.base, f"files/{file_id}/content")
        part = target.with_name(target.name + ".part")
        what = f"download file {file_id}"
        for attempt in range(self.config.max_retries + 1):
            reason, delay = "", None
            try:
                async with http.stream("GET", url, headers=self.headers) as response:
                    status = response.status_code
                    if 400 <= status < 500 and status != 429:
                        await response.aread()
                        raise RequestRejected(status, f"{what}: {_error_text(response, self.redact)}")
                    if status < 400:
                        with part.open("wb") as out:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                        part.replace(target)
                        return
                    reason, delay = f"http {status}", retry_after_seconds(response.headers.get("retry-after"))
            except RequestRejected:
                raise
            except Exception as exc:  # httpx transport errors and timeouts: retried
                if not _transport_error(exc):
                    raise
                reason = f"{type(exc).__name__}"
            await self._wait(what, reason, attempt, delay)
        raise AssertionError("unreachable")

    async def _json(self, what: str, send: Any) -> dict[str, Any]:
        response = await self._send(what, send)
        try:
            payload = response.json()
        except ValueError:
            raise ServiceError(f"malformed response: {what} answered a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise ServiceError(f"malformed response: {what} answered {type(payload).__name__}, not an object")
        return payload

    async def _send(self, what: str, send: Any) -> Any:
        """`send()`'s response once it is below 400; 4xx other than 429 raise at once, the rest retry."""
        for attempt in range(self.config.max_retries + 1):
            delay: float | None = None
            try:
                response = await asyncio.wait_for(send(), timeout=self.config.timeout_s)
            except Exception as exc:
                if not _transport_error(exc):
                    raise
                reason = "timeout" if isinstance(exc, TimeoutError) else f"connection error ({type(exc).__name__})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status != 429 and status < 500:
                    raise RequestRejected(status, f"{what}: {_error_text(response, self.redact)}")
                reason, delay = f"http {status}", retry_after_seconds(response.headers.get("retry-after"))
            await self._wait(what, reason, attempt, delay)
        raise AssertionError("unreachable")

    async def _wait(self, what: str, reason: str, attempt: int, delay: float | None) -> None:
        if attempt == self.config.max_retries:
            raise ServiceError(f"{reason} (gave up after {attempt + 1} attempts to {what})")
        if delay is None:
            delay = min(self.config.backoff_s * 2 ** attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
        log.info("teacher batch: %s: %s; retry %d/%d in %.2f s", what, reason, attempt + 1, self.config.max_retries,
                 delay)
        await asyncio.sleep(delay)


def _transport_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (TimeoutError, httpx.TimeoutException, httpx.TransportError))


def _id(response: Any, what: str) -> str:
    try:
        value = response.json().get("id")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise ServiceError(f"malformed response: {what} answered no id")
    return value


def _error_text(response: Any, redact: Any) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        text = str(error.get("message") if isinstance(error, dict) else error)
    except ValueError:
        text = response.text
    return " ".join(clean_text(redact(text) or "").split())[:300]
