"""Strict decoding of one JSONL line into a JSON object, or a one-line reason it is not one.

Python's json module accepts more than JSON: NaN/Infinity literals, and ``\\ud800`` escapes that
decode to lone surrogates no UTF-8 writer can encode. Both would pass ingest and fail later (a bare
NaN in the selection, a UnicodeEncodeError in a teacher request), so they are refused here, where
the record is quarantined with its reason.
"""

from __future__ import annotations

import json
from typing import Any


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity/-Infinity, which JSON (RFC 8259) does not; a record holding
    # one would be written back into the selection as a bare NaN that strict parsers reject.
    raise _NotJson(f"non-finite number {name} is not valid JSON")


# One decoder for every line: json.loads with a hook would build a new decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (byte {exc.start})"
    try:
        value = _DECODER.decode(text)
    except _NotJson as exc:
        return None, str(exc)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    # A "\ud800" escape decodes to a lone surrogate, which no UTF-8 writer (teacher request, selection
    # file) can encode. Only lines with such an escape can hold one, so the walk is rare.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        return None, "lone UTF-16 surrogate escape (not encodable as UTF-8)"
    return value, None


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
