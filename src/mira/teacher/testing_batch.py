"""A fake OpenAI Batch API server for tests: ``/v1/files`` and ``/v1/batches`` over the scripted teacher.

Each line of a batch is answered by the same handler a :class:`mira.teacher.testing.ScriptedServer`
uses for chat requests, with the same response bodies, so a batch answers exactly what the direct
path would have been answered (the server serves chat completions too)::

    with BatchServer(handler, polls=2, outcomes=["expired", "completed"]) as server:
        config.teacher = server.teacher_config(mode="batch", batch={"poll_interval_s": 0.01})
        ...
        assert len(server.created) == 2

A batch goes ``validating -> in_progress -> finalizing`` one step per status check, stays
``in_progress`` for `polls` checks, then ends as the next of `outcomes` says (the last repeats):
``completed`` (every line answered), ``expired`` (only the first `expire_after` lines answered, the
rest missing, as OpenAI does), ``failed`` (no output, ``errors`` set) or ``cancelled``. A handler's
:class:`Fault` ``status`` becomes a line in the error file with that status; any other fault a 500
line. ``created_event`` is set at each create (a test kills its client then).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from mira.teacher.testing import Fault, Handler, Reply, ScriptedServer, _Handler, completion


class BatchServer(ScriptedServer):
    """A :class:`ScriptedServer` that also serves the files and batches endpoints."""

    def __init__(self, handler: Handler, model: str = "scripted", polls: int = 1,
                 outcomes: list[str] | None = None, expire_after: int = 1, list_batches: bool = True) -> None:
        super().__init__(handler, model)
        self.polls, self.outcomes, self.expire_after = polls, outcomes or ["completed"], expire_after
        self.list_batches = list_batches
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []        # batch ids, in creation order
        self.uploads: list[str] = []        # file ids of uploaded input files
        self.retrieves = 0
        self.lines: list[dict[str, Any]] = []  # every batch line answered (its body), in order
        self.created_event = threading.Event()
        self._ids = 0

    def _handler_base(self) -> type[_Handler]:
        return _BatchHandler

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}{self._ids}"

    def upload(self, data: bytes, purpose: str = "batch") -> dict[str, Any]:
        file_id = self._next_id("file-")
        self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "purpose": purpose}

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": f"no file {body.get('input_file_id')!r}"}}
        if body.get("endpoint") != "/v1/chat/completions":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions"}}
        batch_id = self._next_id("batch_")
        with self._lock:
            outcome = self.outcomes[min(len(self.created), len(self.outcomes) - 1)]
            self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                                      "input_file_id": body["input_file_id"], "status": "validating",
                                      "completion_window": body.get("completion_window"), "errors": None,
                                      "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                                      "metadata": body.get("metadata"), "_outcome": outcome, "_checks": 0}
            self.created.append(batch_id)
        self.uploads.append(body["input_file_id"])
        self.created_event.set()
        return 200, self._public(self.batches[batch_id])

    def retrieve(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            self.retrieves += 1
        if batch is None:
            return None
        if batch["status"] in ("validating", "in_progress"):
            batch["_checks"] += 1
            if batch["status"] == "validating":
                batch["status"] = "in_progress"
            elif batch["_checks"] > self.polls:
                self._finish(batch)
        return self._public(batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        outcome = batch["_outcome"]
        if outcome in ("failed", "cancelled"):
            batch["status"] = outcome
            if outcome == "failed":
                failure = {"code": "invalid_request", "message": "scripted failure"}
                batch["errors"] = {"object": "list", "data": [failure]}
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        if outcome == "expired":
            lines = lines[:self.expire_after]
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for n, line in enumerate(lines):
            status, body = self._answer(line["body"])
            record = {"id": f"{batch['id']}_req_{n}", "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": f"req_{n}", "body": body}, "error": None}
            (output if status == 200 else errors).append(record)
        for name, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                content = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = self.upload(content, "batch_output")["id"]
        batch["status"] = outcome

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self._record(body, {})
        with self._lock:
            self.lines.append(body)
        answer = self.handler(body)
        if isinstance(answer, Fault):
            if answer.kind == "status":
                return answer.status_code, {"error": {"message": answer.message}}
            if answer.kind not in ("delay", "truncated"):
                return 500, {"error": {"message": f"scripted {answer.kind}"}}
            answer = answer.then if answer.then is not None else "{}"
        reply = answer if isinstance(answer, Reply) else Reply(str(answer))
        return 200, completion(body, reply, self.model)

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}


class _BatchHandler(_Handler):
    owner: BatchServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        parts = path.split("/")
        if path.startswith("/v1/files/") and path.endswith("/content") and len(parts) == 5:
            content = self.owner.files.get(parts[3])
            if content is None:
                self._send(404, {"error": {"message": "no such file"}})
            else:
                self._send(200, None, raw=content)
        elif path == "/v1/batches":
            if not self.owner.list_batches:
                self._send(404, {"error": {"message": "not found"}})
                return
            data = [self.owner._public(b) for b in reversed(list(self.owner.batches.values()))]
            self._send(200, {"object": "list", "data": data, "has_more": False})
        elif path.startswith("/v1/batches/") and len(parts) == 4:
            batch = self.owner.retrieve(parts[3])
            self._send(404 if batch is None else 200, batch or {"error": {"message": "no such batch"}})
        else:
            super().do_GET()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path not in ("/v1/files", "/v1/batches"):
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if path == "/v1/batches":
            status, payload = self.owner.create(json.loads(data or b"{}"))
            self._send(status, payload)
            return
        fields = _multipart(self.headers.get("Content-Type", ""), data)
        if "file" not in fields or fields.get("purpose") != b"batch":
            self._send(400, {"error": {"message": "expected multipart fields purpose=batch and file"}})
            return
        self._send(200, self.owner.upload(fields["file"]))


def _multipart(content_type: str, data: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
    return fields
