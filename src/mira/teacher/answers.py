"""A teacher's answer as mira reads it: JSON parsed into the request's schema, teacher text cleaned.

The same code reads a live answer and replays a cached one, so a replay is exact for every
schema (aliases included) and for caches written by older versions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from mira.teacher.sanitize import clean_strings, clean_text

_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_answer(content: str, schema: Any, finish_reason: str | None) -> tuple[Any, str | None]:
    """(value, None) for a valid answer, (None, reason) otherwise.

    Every string of the answer loses its control, bidi and invisible characters first (escaped
    ones too, ``"\\u202e"``): teacher text goes into rubrics, labels and the report.
    """
    if schema is None:
        return (clean_text(content), None) if finish_reason != "length" else (None, "cut off at max_tokens")
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
        return schema.model_validate(clean_strings(data)), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return None, f"schema violation at {where}: {first['msg']}"


def replay_value(cached: Any, schema: Any) -> tuple[Any, str | None]:
    """The cached answer as a live run would have parsed it: from the raw text when there is one.

    Rows of older versions stored field names (``f0``) where the answer had aliases (``a00``);
    the raw text is what the server said, so parsing it again is exact whatever was stored.
    """
    if cached.raw is not None:
        value, error = parse_answer(cached.raw, schema, "stop")
        if error is None:
            return value, None
    stored: Any = clean_strings(json.loads(cached.value_json)) if cached.value_json is not None else None
    if schema is None:
        return stored, None
    try:
        return schema.model_validate(stored, by_alias=True, by_name=True), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])
