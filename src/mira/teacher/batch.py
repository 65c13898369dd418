"""Batch mode (``teacher.mode: batch``): a stage's uncached requests as OpenAI Batch API files.

Each request becomes one JSONL line, ``{custom_id, method: POST, url: /v1/chat/completions, body}``,
whose body is exactly what the direct path would send; ``custom_id`` is the request's cache key and
its attempt (``<key>.<attempt>``). Files go up through ``/v1/files``, batches are created and polled
through ``/v1/batches``, and every output line lands through :meth:`Teacher.accept_reply`, the path
a direct reply takes: the same parsing, validation, expectations and cache rows, so the rest of the
pipeline cannot tell how an answer travelled. With ``teacher.batch.offline`` the input file is
written and the stage stops (:class:`BatchPending`, exit 3) naming the vLLM ``run_batch`` command;
a rerun imports the output file written beside it.

Crash safety: ``teacher_batches/<stage>.json`` records every batch (input hash, file id, batch id,
status) atomically before anything is polled, and the input file stays beside it until its answers
land. A rerun recomputes what is not in the cache yet, adopts the recorded batches holding those
requests (resuming the poll, or finding a batch whose create answer a kill lost by its input file
id) and submits only the requests no batch holds. An expired, failed or cancelled batch is
resubmitted with only its unanswered requests (``teacher.batch.max_resubmits`` times a session).
A line that failed (in the error file, or with a status other than 200) fails its request like a
failed direct request: never cached, asked again by a rerun. An invalid answer is asked again in
the next batch, as the direct path asks again (``teacher.max_parse_retries``, the same temperature,
seed and room); its attempt is kept in the state file, so offline rounds go on where they stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mira.core.config import ConfigError, TeacherConfig
from mira.core.errors import StageIncomplete
from mira.io.files import atomic_write_json, atomic_write_text, read_json
from mira.run.rundir import RunDir
from mira.teacher.asking import no_counts, reask_max_tokens, reask_seed, reask_temperature
from mira.teacher.batch_api import CHAT_ENDPOINT, FINISHED, BatchApi
from mira.teacher.client import ChatClient, ChatReply, RequestRejected, ServiceError
from mira.teacher.request import TeacherRequest, TeacherResult
from mira.teacher.usage import Budget, Usage

log = logging.getLogger(__name__)
# OpenAI takes input files up to 200 MB; a chunk stops short of it whatever its request count.
MAX_BATCH_BYTES = 190 * 1024 * 1024
VLLM_COMMAND = "python -m vllm.entrypoints.openai.run_batch"


class Session(Protocol):
    """What batch mode needs of the teacher session (:class:`mira.teacher.teacher.Teacher`)."""

    config: TeacherConfig
    run_dir: RunDir
    stage: str
    client: ChatClient
    budget: Budget
    usage_counters: Usage

    def accept_reply(self, request: TeacherRequest, key: str, reply: ChatReply,
                     counts: dict[str, Any]) -> tuple[TeacherResult | None, str | None]: ...

    def fail(self, request: TeacherRequest, key: str, error: str, raw: str | None,
             counts: dict[str, Any]) -> TeacherResult: ...

    def deadline_left(self) -> float: ...

    def deadline_error(self) -> str: ...


class BatchPending(StageIncomplete):
    """Offline batch mode wrote input files and waits for their output files (exit 3; rerun imports them)."""


class _Stop(Exception):
    """The batch work of this session ends: every request still open fails with `error`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Open:
    """A request still without an answer in this session, and where its attempts stand."""

    request: TeacherRequest
    key: str
    attempt: int
    max_tokens: int
    counts: dict[str, Any] = field(default_factory=no_counts)


class BatchRun:
    """The batch path of one :meth:`Teacher.run` call: `todo` in, a result per key out."""

    def __init__(self, teacher: Session, http: Any) -> None:
        self.teacher, self.http = teacher, http
        self.config = teacher.config
        self.cfg = teacher.config.batch
        self.api = BatchApi(teacher.config, teacher.client)
        self.folder = teacher.run_dir.root / "teacher_batches" / teacher.stage
        self.state_path = self.folder.parent / f"{teacher.stage}.json"
        self.state = self._load()
        self.results: dict[str, TeacherResult] = {}
        self._keys: dict[str, dict[str, int]] = {}  # entry name -> {key: attempt}, read from its input file

    async def run(self, requests: dict[str, TeacherRequest]) -> dict[str, TeacherResult]:
        reasks = self.state["reasks"]
        todo = {key: Open(request, key, int((reasks.get(key) or {}).get("attempt", 0)),
                          int((reasks.get(key) or {}).get("max_tokens", request.max_tokens)))
                for key, request in requests.items()}
        charged: set[str] = set()  # keys this session counted against the budget
        resubmits = 0
        try:
            while todo:
                active = self._adopt(todo)
                held = {key for entry in active for key in self._entry_keys(entry)}
                new = [item for key, item in todo.items() if key not in held]
                if new:
                    active += self._write(self._charge(new, todo, charged))
                if not active:
                    break
                for entry in active:
                    await self._submit(entry)
                if self.cfg.offline:
                    active = self._offline_ready(active)
                else:
                    await self._poll(active)
                missing: list[str] = []
                for entry in active:
                    missing += await self._land(entry, todo)
                if missing:
                    resubmits += 1
                    if resubmits > self.cfg.max_resubmits:
                        why = "; ".join(sorted({e.get("error") or f"batch {e['status']}" for e in active
                                                if e.get("error") or e.get("status") != "completed"}))
                        raise _Stop(f"batch gave no answer after {resubmits} submissions ({why or 'lines missing'})")
                    log.warning("teacher %s: %d requests without an answer; submitting them again", self.teacher.stage,
                                len(missing))
        except _Stop as stop:
            for key, item in list(todo.items()):
                self.results[key] = self.teacher.fail(item.request, key, stop.error, None, item.counts)
            todo.clear()
        for key, item in todo.items():  # none expected: every open request ends above
            self.results[key] = self.teacher.fail(item.request, key, "no answer", None, item.counts)
        return self.results

    # --- state ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"stage": self.teacher.stage, "batches": [], "reasks": {}}
        try:
            state = read_json(self.state_path)
            if not isinstance(state.get("batches"), list) or not isinstance(state.get("reasks"), dict):
                raise ValueError("no batches list")
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{self.state_path} is damaged ({exc}); the batches it lists cannot be resumed: "
                              "delete it to submit the stage's unanswered requests again") from None
        return state

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    def _entry_keys(self, entry: dict[str, Any]) -> dict[str, int]:
        """{cache key: attempt} of the lines of `entry`'s input file ({} once it is gone)."""
        if entry["name"] not in self._keys:
            keys: dict[str, int] = {}
            path = self.folder / f"{entry['name']}.input.jsonl"
            if path.exists():
                with path.open(encoding="utf-8") as handle:
                    for line in handle:
                        key, _, attempt = json.loads(line)["custom_id"].rpartition(".")
                        keys[key] = int(attempt)
            self._keys[entry["name"]] = keys
        return self._keys[entry["name"]]

    def _adopt(self, todo: dict[str, Open]) -> list[dict[str, Any]]:
        """Recorded batches not landed yet that hold requests of `todo` (a rerun resumes them)."""
        adopted = []
        for entry in self.state["batches"]:
            if entry.get("landed"):
                continue
            if any(todo.get(k) is not None and todo[k].attempt == a for k, a in self._entry_keys(entry).items()):
                adopted.append(entry)
        return adopted

    # --- submit --------------------------------------------------------------------------------
    def _charge(self, new: list[Open], todo: dict[str, Open], charged: set[str]) -> list[Open]:
        """`new` less the requests the budget stops (a "budget" result each, as on the direct path)."""
        kept = []
        for item in new:
            if item.key not in charged:
                if not self.teacher.budget.try_start():
                    self.teacher.usage_counters.budget_skipped += 1
                    self.results[item.key] = TeacherResult.failure("budget", tag=item.request.tag, key=item.key)
                    del todo[item.key]
                    continue
                charged.add(item.key)
            kept.append(item)
        return kept

    def _write(self, items: list[Open]) -> list[dict[str, Any]]:
        """Input files for `items` (chunked), each recorded in the state file before any upload."""
        entries: list[dict[str, Any]] = []
        lines: list[str] = []
        size = 0
        for item in items:
            line = json.dumps({"custom_id": f"{item.key}.{item.attempt}", "method": "POST", "url": CHAT_ENDPOINT,
                               "body": self._body(item)}, ensure_ascii=False, separators=(",", ":"))
            if lines and (len(lines) >= self.cfg.max_requests_per_batch or size + len(line) > MAX_BATCH_BYTES):
                entries.append(self._record(lines))
                lines, size = [], 0
            lines.append(line)
            size += len(line.encode("utf-8")) + 1
        if lines:
            entries.append(self._record(lines))
        return entries

    def _body(self, item: Open) -> dict[str, Any]:
        request, client = item.request, self.teacher.client
        schema_name = request.schema.__name__ if request.schema is not None else "answer"
        return client.body(request.messages, request.json_schema(), schema_name, item.max_tokens,
                           reask_temperature(self.config, item.attempt), reask_seed(self.config, item.attempt),
                           client.use_json_schema, client.use_logprobs, request.slot)

    def _record(self, lines: list[str]) -> dict[str, Any]:
        text = "\n".join(lines) + "\n"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        entry = {"name": digest[:16], "input_sha256": digest, "requests": len(lines), "offline": self.cfg.offline,
                 "logprobs": self.teacher.client.use_logprobs, "file_id": None, "batch_id": None, "status": "written",
                 "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "landed": False}
        atomic_write_text(self.folder / f"{entry['name']}.input.jsonl", text)
        self.state["batches"].append(entry)
        self._save()
        self.teacher.usage_counters.sent += len(lines)
        return entry

    async def _submit(self, entry: dict[str, Any]) -> None:
        """Upload and create `entry`'s batch where that is not done yet (recorded after each step)."""
        if entry["offline"] or entry.get("batch_id"):
            return
        try:
            resumed = entry.get("file_id") is not None
            if not resumed:
                try:
                    entry["file_id"] = await self.api.upload(self.http, self.folder / f"{entry['name']}.input.jsonl")
                except RequestRejected as exc:
                    raise _Stop(f"{exc} (a server without the Batch API, like `vllm serve`: use "
                                "teacher.batch.offline: true and vLLM run_batch)") from None
                self._save()
            # Uploaded by an earlier session that was killed before recording its batch: it may exist.
            batch = await self.api.find(self.http, entry["file_id"]) if resumed else None
            if batch is None:
                batch = await self.api.create(self.http, entry["file_id"],
                                              {"mira_stage": self.teacher.stage, "mira_input": entry["name"]})
        except (RequestRejected, ServiceError) as exc:
            raise _Stop(str(exc)) from None
        self._update(entry, batch)
        if not entry.get("batch_id"):
            raise _Stop("malformed response: create the batch answered no id")

    def _update(self, entry: dict[str, Any], batch: dict[str, Any]) -> None:
        before = (entry.get("batch_id"), entry.get("status"))
        entry["batch_id"] = entry.get("batch_id") or batch.get("id")
        entry["status"] = str(batch.get("status") or "unknown")
        for name in ("output_file_id", "error_file_id"):
            entry[name] = batch.get(name) or entry.get(name)
        errors = (batch.get("errors") or {}).get("data") if isinstance(batch.get("errors"), dict) else None
        if errors:
            entry["error"] = "; ".join(str(e.get("message") or e.get("code")) for e in errors[:3]
                                       if isinstance(e, dict))[:300]
        if (entry["batch_id"], entry["status"]) != before:
            log.info("teacher %s: batch %s %s", self.teacher.stage, entry["batch_id"], entry["status"])
            self._save()

    # --- wait ----------------------------------------------------------------------------------
    def _offline_ready(self, active: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ready = [e for e in active if (self.folder / f"{e['name']}.output.jsonl").exists()]
        waiting = [e for e in active if e not in ready]
        if not ready and waiting:
            raise BatchPending(self._offline_line(waiting))
        return ready

    def _offline_line(self, waiting: list[dict[str, Any]]) -> str:
        stage, model = self.teacher.stage, self.config.model
        count = sum(int(e["requests"]) for e in waiting)
        if len(waiting) == 1:
            path = self.folder / f"{waiting[0]['name']}.input.jsonl"
            out = self.folder / f"{waiting[0]['name']}.output.jsonl"
            command = f"{VLLM_COMMAND} -i {path} -o {out} --model {model}"
        else:
            command = (f'for f in {self.folder}/*.input.jsonl; do {VLLM_COMMAND} -i "$f" '
                       f'-o "${{f%.input.jsonl}}.output.jsonl" --model {model}; done')
        return (f"{count} teacher requests of {stage} are written as batch input ({len(waiting)} file(s) in "
                f"{self.folder}); run `{command}`, then rerun `mira {stage}` to import the output")

    async def _poll(self, active: list[dict[str, Any]]) -> None:
        interval = self.cfg.poll_interval_s
        while True:
            waiting = [e for e in active if e.get("status") not in FINISHED]
            for entry in waiting:
                try:
                    self._update(entry, await self.api.retrieve(self.http, entry["batch_id"]))
                except (RequestRejected, ServiceError) as exc:
                    raise _Stop(str(exc)) from None
            if all(e.get("status") in FINISHED for e in active):
                return
            left = self.teacher.deadline_left()
            if left <= 0:
                raise _Stop(self.teacher.deadline_error() + "; the batch is kept: a rerun resumes polling it")
            await asyncio.sleep(min(interval, left))
            ceiling = max(self.cfg.max_poll_interval_s, self.cfg.poll_interval_s)
            interval = min(interval * self.cfg.poll_backoff, ceiling)

    # --- land ----------------------------------------------------------------------------------
    async def _land(self, entry: dict[str, Any], todo: dict[str, Open]) -> list[str]:
        """Land `entry`'s output and error lines; the keys it held that got no line (to resubmit)."""
        files = await self._outputs(entry)
        reasked: set[str] = set()
        for path in files:
            with path.open(encoding="utf-8") as handle:
                for number, text in enumerate(handle, 1):
                    self._line(entry, path, number, text, todo, reasked)
        missing = [k for k, a in self._entry_keys(entry).items()
                   if k in todo and k not in reasked and todo[k].attempt == a]
        entry["landed"] = True
        self._save()
        for path in [*files, self.folder / f"{entry['name']}.input.jsonl"]:
            with contextlib.suppress(OSError):
                path.unlink()
        return missing

    async def _outputs(self, entry: dict[str, Any]) -> list[Path]:
        if entry["offline"]:
            return [self.folder / f"{entry['name']}.output.jsonl"]
        paths = []
        for kind in ("output", "error"):
            file_id = entry.get(f"{kind}_file_id")
            if file_id:
                path = self.folder / f"{entry['name']}.{kind}.jsonl"
                try:
                    await self.api.download(self.http, file_id, path)
                except (RequestRejected, ServiceError) as exc:
                    raise _Stop(str(exc)) from None
                paths.append(path)
        return paths

    def _line(self, entry: dict[str, Any], path: Path, number: int, text: str, todo: dict[str, Open],
              reasked: set[str]) -> None:
        try:
            line = json.loads(text)
            key, _, attempt = str(line["custom_id"]).rpartition(".")
        except (ValueError, KeyError, TypeError):
            if text.strip():
                log.warning("teacher %s: %s line %d is not a batch output line; skipped", self.teacher.stage,
                            path.name, number)
            return
        item = todo.get(key)
        if item is None or str(item.attempt) != attempt:
            return  # answered already, or a line of an earlier attempt
        item.counts["attempts"] += 1
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        body, status = response.get("body"), response.get("status_code")
        error = self.teacher.client.redact(_line_error(line.get("error"), status, body))
        reply = None
        if error is None and isinstance(body, dict):
            try:
                reply = self.teacher.client.read_reply(body, bool(entry.get("logprobs")), self.teacher.usage_counters)
            except ServiceError as exc:
                error = str(exc)
        if reply is None:
            self.results[key] = self.teacher.fail(item.request, key, error or "no answer", None, item.counts)
            del todo[key]
            return
        result, invalid = self.teacher.accept_reply(item.request, key, reply, item.counts)
        reasks = self.state["reasks"]
        if result is None and item.attempt < self.config.max_parse_retries:
            self.teacher.usage_counters.parse_retries += 1
            log.info("teacher %s: %s; asking again in the next batch", item.request.tag or "request", invalid)
            item.attempt += 1
            if reply.finish_reason == "length":
                item.max_tokens = reask_max_tokens(item.max_tokens)
            reasks[key] = {"attempt": item.attempt, "max_tokens": item.max_tokens}
            reasked.add(key)
            return
        if result is None:
            result = self.teacher.fail(item.request, key, invalid or "no answer", reply.content, item.counts)
        self.results[key] = result
        reasks.pop(key, None)
        del todo[key]


def _line_error(error: Any, status: Any, body: Any) -> str | None:
    """Why a batch output line holds no reply, in the words a direct failure would use; None if it does
    (the caller redacts it: servers echo what they were sent)."""
    if isinstance(error, dict) and (error.get("message") or error.get("code")):
        return f"batch line failed: {str(error.get('code') or '')}: {str(error.get('message') or '')}"[:300]
    if status != 200:
        message = ""
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = str(inner.get("message") if isinstance(inner, dict) else inner)
        return f"http {status}: {' '.join(message.split())[:300]}"
    if not isinstance(body, dict):
        return "malformed response: a batch line without a response body"
    return None
