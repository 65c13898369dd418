"""A scripted, real OpenAI-compatible HTTP server: the fake teacher for unit tests.

It speaks the same protocol as the bundled model server, so stage tests go through the real
client, cache and budget. Use it like this::

    from mira.teacher.testing import ScriptedServer, Reply, Fault

    def handler(body: dict) -> str | Reply | Fault:      # body: the request JSON
        return '{"reason": "fine", "score": 7}'          # the assistant's content

    with ScriptedServer(handler) as server:
        config.teacher = server.teacher_config()          # provider openai, base_url=server.url
        run_stage("annotate", ctx)                        # or open_teacher(config.teacher, run, ...)
        assert len(server.requests) == 12                 # request bodies, in arrival order

``teacher_config(**overrides)`` returns a ``TeacherConfig`` with fast retries and a short
timeout. A handler returns the content as a string, a :class:`Reply` (finish reason, synthetic
logprobs for the ``"score"`` values: ``Reply(text, score_probs=[{7: 0.6, 8: 0.4}])``; a broken
server's: ``Reply(text, logprobs=spoiled_logprobs(Reply(text), "nan"))``), or a
:class:`Fault` (``Fault.delay``, ``Fault.status(429, retry_after=...)``, ``Fault.status(500)``,
``Fault.truncated``, ``Fault.drop``, ``Fault.garbage``, ``Fault.echo(401)``: an error body that
repeats the request headers, as careless servers do). :func:`script` turns a list of those
into a handler that answers them in turn (the last one repeats).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mira.teacher.scores import score_offsets


@dataclass
class Reply:
    content: str
    finish_reason: str = "stop"
    # One {score value: probability} per "score" value in `content`, in order (logprobs requests only).
    score_probs: list[dict[int, float]] | None = None
    # Tokenise numbers digit by digit, like Qwen ("10" -> "1", "0"), instead of whole.
    split_digits: bool = False
    # The JSON key(s) whose values `score_probs` describes (flat annotate answers: the anchor ids).
    score_key: str | tuple[str, ...] = "score"
    # Sent as the choice's ``logprobs`` instead of synthetic ones when set (a broken server's
    # values: see :func:`spoiled_logprobs`). Only on requests that ask for logprobs.
    logprobs: Any = None


@dataclass
class Fault:
    kind: str
    seconds: float = 0.0
    status_code: int = 500
    message: str = ""
    retry_after: str | None = None
    then: str | Reply | None = None

    @classmethod
    def delay(cls, seconds: float, then: str | Reply = "{}") -> Fault:
        """Answer `then`, but only after `seconds` (set it past the client's timeout)."""
        return cls("delay", seconds=seconds, then=then)

    @classmethod
    def status(cls, code: int, message: str = "scripted error", retry_after: float | str | None = None) -> Fault:
        return cls("status", status_code=code, message=message,
                   retry_after=None if retry_after is None else str(retry_after))

    @classmethod
    def truncated(cls, content: str, keep: float = 0.5) -> Fault:
        """The first part of `content` with ``finish_reason: length``, as if max_tokens hit."""
        return cls("truncated", then=Reply(content[: max(1, int(len(content) * keep))], finish_reason="length"))

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def echo(cls, code: int = 401) -> Fault:
        """An error whose message repeats the request's headers (Authorization included)."""
        return cls("echo", status_code=code)

    @classmethod
    def garbage(cls) -> Fault:
        """A 200 whose body is not JSON."""
        return cls("garbage")


Handler = Callable[[dict[str, Any]], "str | Reply | Fault"]


def script(*answers: str | Reply | Fault) -> Handler:
    """A handler that gives `answers` in order, then repeats the last one."""
    lock, state = threading.Lock(), {"i": 0}

    def handler(body: dict[str, Any]) -> str | Reply | Fault:
        with lock:
            i = min(state["i"], len(answers) - 1)
            state["i"] += 1
        return answers[i]

    return handler


def synthetic_logprobs(reply: Reply) -> dict[str, Any]:
    """Token logprobs for `reply.content`: certain everywhere except at the score tokens."""
    number = r"\d" if reply.split_digits else r"\d+"
    pieces = re.findall(number + r"|[A-Za-z_]+|\s+|[^\w\s]", reply.content)
    tokens = [{"token": p, "logprob": 0.0, "top_logprobs": [{"token": p, "logprob": 0.0}]} for p in pieces]
    starts, pos = [], 0
    for p in pieces:
        starts.append(pos)
        pos += len(p)
    for n, (offset, value) in enumerate(score_offsets(reply.content, reply.score_key)):
        if not reply.score_probs or n >= len(reply.score_probs) or offset not in starts:
            continue
        probs = dict(reply.score_probs[n])
        probs.setdefault(value, 1e-6)
        index = starts.index(offset)
        first: dict[str, float] = {}
        for v, p in probs.items():
            key = str(v)[0] if reply.split_digits else str(v)
            first[key] = first.get(key, 0.0) + p
        chosen = tokens[index]["token"]
        tokens[index] = _position(chosen, first)
        if reply.split_digits and chosen == "1" and index + 1 < len(tokens):
            one, ten = probs.get(1, 0.0), probs.get(10, 0.0)
            follow = {"0": ten / (one + ten)}
            nxt = tokens[index + 1]["token"]
            follow[nxt if nxt != "0" else ","] = one / (one + ten)
            tokens[index + 1] = _position(nxt, follow)
    return {"content": tokens}


# What a broken server puts in its logprobs (:func:`spoiled_logprobs`).
SPOILS = ("nan", "inf", "big", "string", "object", "list")


def spoiled_logprobs(reply: Reply, how: str) -> Any:
    """The synthetic logprobs of `reply`, spoiled the way a broken server spoils them.

    ``nan`` / ``inf``: every logprob is NaN / +Infinity (JSON ``NaN`` / ``Infinity``, which Python's
    JSON reader accepts); ``big``: every logprob is 1000; ``string``: every logprob is ``"x"``;
    ``object``: every ``top_logprobs`` is an object ``{token: logprob}`` instead of a list;
    ``list``: ``logprobs`` is a list instead of an object.
    """
    if how not in SPOILS:
        raise ValueError(f"unknown spoil {how!r}; one of {', '.join(SPOILS)}")
    tokens = synthetic_logprobs(reply)["content"]
    if how == "list":
        return tokens
    bad: Any = {"nan": math.nan, "inf": math.inf, "big": 1000, "string": "x"}.get(how)
    for position in tokens:
        if how == "object":
            position["top_logprobs"] = {alt["token"]: alt["logprob"] for alt in position["top_logprobs"]}
            continue
        position["logprob"] = bad
        for alt in position["top_logprobs"]:
            alt["logprob"] = bad
    return {"content": tokens}


def _position(chosen: str, probs: dict[str, float]) -> dict[str, Any]:
    top = sorted(probs.items(), key=lambda kv: -kv[1])[:10]
    lp = [{"token": t, "logprob": math.log(max(p, 1e-12))} for t, p in top]
    return {"token": chosen, "logprob": math.log(max(probs.get(chosen, 1e-12), 1e-12)), "top_logprobs": lp}


class ScriptedServer:
    """OpenAI-compatible server on 127.0.0.1 (random port) answering from `handler`."""

    def __init__(self, handler: Handler, model: str = "scripted") -> None:
        self.handler = handler
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL including ``/v1``: what ``teacher.base_url`` expects."""
        if self._httpd is None:
            raise RuntimeError("ScriptedServer is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def teacher_config(self, **overrides: Any) -> Any:
        from mira.core.config import TeacherConfig

        values = {"provider": "openai", "base_url": self.url, "model": self.model, "timeout_s": 5.0,
                  "backoff_s": 0.01, "concurrency": 4, **overrides}
        return TeacherConfig(**values)

    def start(self) -> ScriptedServer:
        server = self

        class RequestHandler(self._handler_base()):  # type: ignore[misc]
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping in a delay must not block exit
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="scripted-teacher",
                                        daemon=True)
        self._thread.start()
        return self

    def _handler_base(self) -> type[_Handler]:
        """The request handler class (a subclass serves more endpoints: mira.teacher.testing_batch)."""
        return _Handler

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout); fine

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif self.path.rstrip("/") in ("/models", "/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        if urlsplit(self.path).path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        self.owner._record(body, dict(self.headers.items()))
        answer = self.owner.handler(body)
        if isinstance(answer, Fault):
            if answer.kind == "drop":
                self.close_connection = True
                return
            if answer.kind == "garbage":
                self._send(200, None, raw=b'{"choices": [')
                return
            if answer.kind == "echo":
                echoed = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
                self._send(answer.status_code, {"error": {"message": f"rejected request with headers {echoed}"}})
                return
            if answer.kind == "status":
                headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else {}
                self._send(answer.status_code, {"error": {"message": answer.message}}, headers)
                return
            if answer.kind == "delay":
                time.sleep(answer.seconds)
            answer = answer.then if answer.then is not None else "{}"
        reply = answer if isinstance(answer, Reply) else Reply(str(answer))
        self._send(200, self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        return completion(body, reply, self.owner.model)


def completion(body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
    """The chat-completions response body that answers request `body` with `reply`."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": reply.finish_reason,
                              "message": {"role": "assistant", "content": reply.content}}
    logprobs = None
    if body.get("logprobs"):
        logprobs = reply.logprobs if reply.logprobs is not None else synthetic_logprobs(reply)
        choice["logprobs"] = logprobs
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    completion_tokens = len(tokens) if isinstance(tokens, list) else max(1, len(reply.content) // 4)
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", model), "choices": [choice],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_chars // 4 + completion_tokens}}
