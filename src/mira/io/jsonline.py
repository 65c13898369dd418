"""Strict decoding of one JSONL line into a JSON object, or a one-line reason it is not one.

Python's json module accepts more than JSON: NaN/Infinity literals, and ``\\ud800`` escapes that
decode to lone surrogates no UTF-8 writer can encode. Both would pass ingest and fail later (a bare
NaN in the selection, a UnicodeEncodeError in a teacher request), so they are refused here, where
the record is quarantined with its reason.

Fast path: ``orjson`` (3x the lines/s, ``benchmarks/input_checks.py``; every stage decodes every
record). It is stricter than the stdlib decoder (it refuses NaN, lone surrogates, invalid UTF-8,
1e400), and on every line it accepts it gives the same value (fuzzed: floats are correctly rounded,
a duplicate key keeps its first position and its last value), with two exceptions that
:func:`_stdlib_may_differ` sends to the stdlib path: integers beyond 64 bits (orjson makes them
floats) and nesting deep enough for the stdlib decoder to hit Python's recursion limit. Every line
orjson refuses is decoded by the stdlib path, so the accepted values and the quarantine reasons are
exactly the stdlib ones, except one refusal of our own: a number too large for a float (``1e400``),
which the stdlib reads as inf, is refused like the NaN/Infinity literals.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity/-Infinity, which JSON (RFC 8259) does not; a record holding
    # one would be written back into the selection as a bare NaN that strict parsers reject.
    raise _NotJson(f"non-finite number {name} is not valid JSON")


def _finite_float(text: str) -> float:
    # The stdlib reads 1e400 as inf: the same non-finite value as an Infinity literal, by another spelling.
    value = float(text)
    if value - value != 0.0:
        raise _NotJson(f"number {text[:40]} is too large for a float (it would read as {value})")
    return value


# One decoder for every line: json.loads with a hook would build a new decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


# Nesting the stdlib decoder surely handles (Python's recursion limit is 1000 frames, the caller's
# stack included); deeper lines take the stdlib path, which decides with its own limit.
_SAFE_DEPTH = 200
# Digit runs of this length or longer may be an integer beyond 64 bits (19 digits: 10**18 <= n).
_DIGITS = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))
_LONG_RUN = b"0" * 19


def decode_json_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _decode_stdlib(line)  # for the stdlib's verdict and reason text
    if not isinstance(value, dict) or _stdlib_may_differ(value, line):
        # Not an object (rare, and the reason names the stdlib's type: a 20-digit number is an int),
        # or a value orjson may have read differently.
        return _decode_stdlib(line)
    return value, None


def _stdlib_may_differ(value: dict[str, Any], line: bytes) -> bool:
    """True when orjson's `value` of `line` might not be what the stdlib decoder gives (or refuses)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    has_float = False
    while stack:
        item, depth = stack.pop()
        if depth > _SAFE_DEPTH:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float:
                has_float = True
    # A float may be an integer orjson could not hold in 64 bits: only a long digit run can be one.
    return has_float and _LONG_RUN in line.translate(_DIGITS)


def _decode_stdlib(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
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
