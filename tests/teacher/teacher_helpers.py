"""Shared bits of the teacher tests (imported explicitly; tests/conftest.py belongs to the lead)."""

import json

from pydantic import BaseModel, ConfigDict

from mira.teacher import Score, TeacherRequest


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str
    score: Score


def answer(score: int = 7, reason: str = "fine") -> str:
    return json.dumps({"reason": reason, "score": score})


def requests(n: int, version: str = "ping_v1", max_tokens: int = 64) -> list[TeacherRequest]:
    return [TeacherRequest(messages=[{"role": "user", "content": f"rate record {i}"}], schema=Verdict,
                           prompt_version=version, max_tokens=max_tokens, tag=f"r{i}") for i in range(n)]
