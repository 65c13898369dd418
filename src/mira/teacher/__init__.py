"""The teacher layer: one client for any OpenAI-compatible server, plus the bundled local model.

    from mira.teacher import open_teacher, TeacherRequest, load_prompt, wrap_record

    with open_teacher(config.teacher, run, stage="annotate", progress=ctx.progress) as teacher:
        results = teacher.run([TeacherRequest(messages, schema=Judgement, prompt_version="judge_v1")])
    if teacher.budget_exhausted:
        raise StageIncomplete("teacher budget reached; rerun to continue")

Importing this package is cheap: names are resolved on first use, and nothing starts until
``open_teacher`` is entered.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "open_teacher": "mira.teacher.teacher",
    "estimate": "mira.teacher.teacher",
    "request_key": "mira.teacher.teacher",
    "Teacher": "mira.teacher.teacher",
    "TeacherRequest": "mira.teacher.request",
    "TeacherResult": "mira.teacher.request",
    "Score": "mira.teacher.request",
    "Digit": "mira.teacher.request",
    "load_prompt": "mira.teacher.prompts",
    "wrap_record": "mira.teacher.prompts",
    "Prompt": "mira.teacher.prompts",
    "PromptError": "mira.teacher.prompts",
    "expected_scores": "mira.teacher.scores",
    "MODELS": "mira.teacher.local",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # "x as x": an explicit re-export for type checkers (the runtime list is _EXPORTS)
    from mira.teacher.local import MODELS as MODELS
    from mira.teacher.prompts import Prompt as Prompt
    from mira.teacher.prompts import PromptError as PromptError
    from mira.teacher.prompts import load_prompt as load_prompt
    from mira.teacher.prompts import wrap_record as wrap_record
    from mira.teacher.request import Digit as Digit
    from mira.teacher.request import Score as Score
    from mira.teacher.request import TeacherRequest as TeacherRequest
    from mira.teacher.request import TeacherResult as TeacherResult
    from mira.teacher.scores import expected_scores as expected_scores
    from mira.teacher.teacher import Teacher as Teacher
    from mira.teacher.teacher import estimate as estimate
    from mira.teacher.teacher import open_teacher as open_teacher
    from mira.teacher.teacher import request_key as request_key


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mira.teacher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
