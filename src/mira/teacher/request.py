"""What a stage asks the teacher, and what it gets back."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field


def _not_a_boolean(value: Any) -> Any:
    # pydantic reads JSON `true` as the integer 1 (a bool is an int in Python): a teacher answering
    # `true` has not given a score. The check leaves the JSON schema, and so every cache key, as it was.
    if isinstance(value, bool):
        raise ValueError("a score is an integer, not true or false")
    return value


# A 0-10 score as the teacher must answer it. Small models ignore `minimum`/`maximum` in a JSON
# schema, but grammar-constrained decoding does honour `enum`; pydantic still validates the range.
Score = Annotated[int, Field(ge=0, le=10, json_schema_extra={"enum": list(range(11))}), BeforeValidator(_not_a_boolean)]
# A one-digit score 0-9: every value is one token for any tokeniser, so its expectation is exact
# (teacher/scores.py); annotate_v3 asks on this scale and maps it to 0-10.
Digit = Annotated[int, Field(ge=0, le=9, json_schema_extra={"enum": list(range(10))}), BeforeValidator(_not_a_boolean)]


@functools.lru_cache(maxsize=512)
def _schema_text(schema: type[BaseModel]) -> str:
    return json.dumps(schema.model_json_schema())


@dataclass
class TeacherRequest:
    """One chat request. `schema` is the pydantic model the answer must parse into (None: free text).

    `prompt_version` (e.g. ``"judge_v1"``, see :func:`mira.teacher.load_prompt`) is part of the
    cache key, so editing a prompt file and bumping its version re-asks; `tag` only labels logs.
    """

    messages: list[dict[str, str]]
    schema: type[BaseModel] | None = None
    prompt_version: str = "unversioned"
    max_tokens: int = 512
    tag: str = ""
    # JSON key(s) whose integer values get probability-weighted expectations (see scores.py).
    score_key: str | tuple[str, ...] = "score"
    # A llama.cpp slot to run on (local server only; ``id_slot``): requests that share a long
    # prefix go to one slot so its prompt cache holds that prefix. Not part of the cache key: it
    # decides where the answer is computed, not which answer.
    slot: int | None = None
    # The largest value of the score scale the answer uses (its schema's enum): 10, or 9 for a
    # one-digit scale on which every value is a single token (teacher/scores.py).
    score_max: int = 10

    def json_schema(self) -> dict[str, Any] | None:
        # A fresh copy each call (callers may change it); generated once per schema class, which
        # costs milliseconds: per request, more than landing its answer.
        return json.loads(_schema_text(self.schema)) if self.schema is not None else None

    def cache_key(self, identity: dict[str, Any]) -> str:
        """The key of this request asked of the teacher `identity` (:func:`mira.teacher.identity.teacher_identity`)."""
        payload = {
            "prompt_version": self.prompt_version,
            "model": identity["model"],
            "sampling": identity["sampling"],
            "max_tokens": self.max_tokens,
            "messages": self.messages,
            "schema": self.json_schema(),
        }
        # The provider joins the key only when it is not the default, so the caches written before
        # it was part of the identity (all with the bundled local server) still replay.
        if identity.get("provider", "local") != "local":
            payload["provider"] = identity["provider"]
        if self.score_max != 10:  # the cached expectation depends on it; default keys stay as they were
            payload["score_max"] = self.score_max
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def prompt_chars(self) -> int:
        return sum(len(m.get("content") or "") for m in self.messages)


@dataclass
class TeacherResult:
    """The outcome of one request; a failure is a value (``ok=False`` with `error`), never raised.

    ``error == "budget"`` means the stage budget ran out before this request was sent; it is not
    cached, so a rerun asks it.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    cached: bool = False
    expected_scores: list[float | None] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    tag: str = ""
    key: str = ""

    @classmethod
    def failure(cls, error: str, **kwargs: Any) -> TeacherResult:
        return cls(ok=False, error=error, **kwargs)
