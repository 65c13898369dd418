"""Probability-weighted scores from token logprobs (G-Eval style).

A small judge's argmax score is coarse (it likes 8). The expectation over the score tokens it
considered is finer and steadier: at the token where a score's digits start, take every
alternative in ``top_logprobs`` that reads as an integer 0..10, renormalise, and average.

Tokenisers split numbers differently: SmolLM has "10" as one token, Qwen writes "1" then "0". When
the sampled score starts with "1", the next position tells how the "1" mass splits between 1 and
10; otherwise a bare "1" alternative is counted as 1 (10 is rare by construction of our rubrics).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

_DIGITS = "0123456789"


def score_offsets(text: str, key: str | Collection[str] = "score") -> list[tuple[int, int]]:
    """(offset, value) of every integer value of `key` in the JSON text, in order of appearance.

    `key` may be several names: the flat annotate answer ``{"a00": 7, "a01": 5}`` has one key per
    anchor id.

    A tiny scanner instead of a regex, so that ``"score": 7`` quoted inside a rationale string is
    not mistaken for a field. Values that are not plain integers are reported as value -1.
    """
    keys = {key} if isinstance(key, str) else set(key)
    found: list[tuple[int, int]] = []
    i, n = text.find("{"), len(text)
    if i < 0:
        return found
    last_string: str | None = None
    while i < n:
        ch = text[i]
        if ch == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\":
                    buf.append(text[j:j + 2])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            last_string = "".join(buf)
            i = j + 1
            continue
        if ch == ":" and last_string in keys:
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            k = j
            while k < n and text[k] in _DIGITS:
                k += 1
            is_int = k > j and (k == n or text[k] not in ".eE")
            found.append((j, int(text[j:k]) if is_int else -1))
        if ch not in " \t\r\n":
            last_string = last_string if ch == ":" else None
        i += 1
    return found


def _number_prefix(text: str) -> tuple[str, bool]:
    """Leading digits of `text` and whether the number visibly ends inside `text`."""
    k = 0
    while k < len(text) and text[k] in _DIGITS:
        k += 1
    return text[:k], k < len(text)


def _expected_at(tokens: list[dict[str, Any]], index: int, prefix: str) -> float | None:
    chosen = tokens[index]
    alternatives = list(chosen.get("top_logprobs") or [])
    if not any(alt.get("token") == chosen.get("token") for alt in alternatives):
        alternatives.append({"token": chosen.get("token"), "logprob": chosen.get("logprob")})
    chosen_digits, chosen_ends = _number_prefix(chosen["token"][len(prefix):])
    one_to_ten = None  # share of a bare "1" that continues to "10"
    if chosen_digits == "1" and not chosen_ends and index + 1 < len(tokens):
        zero = other = 0.0
        for alt in tokens[index + 1].get("top_logprobs") or [tokens[index + 1]]:
            p = math.exp(alt.get("logprob", -math.inf))
            if alt.get("token", "")[:1] == "0":
                zero += p
            elif alt.get("token", "")[:1] not in _DIGITS:
                other += p
        one_to_ten = zero / (zero + other) if zero + other > 0 else None
    mass: dict[int, float] = {}
    for alt in alternatives:
        token = alt.get("token") or ""
        if not token.startswith(prefix) or alt.get("logprob") is None:
            continue
        digits, ends = _number_prefix(token[len(prefix):])
        if not digits:
            continue
        p = math.exp(alt["logprob"])
        if digits == "1" and not ends and one_to_ten is not None:
            mass[10] = mass.get(10, 0.0) + p * one_to_ten
            mass[1] = mass.get(1, 0.0) + p * (1 - one_to_ten)
        elif int(digits) <= 10 and (len(digits) == 1 or digits[0] != "0"):
            mass[int(digits)] = mass.get(int(digits), 0.0) + p
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(value * p for value, p in mass.items()) / total


def expected_scores(content: str, logprobs: dict[str, Any] | None, key: str | Collection[str] = "score") -> list[float | None] | None:
    """Expected value of each `key` score in `content` (order of appearance); None where unknown.

    Returns None when `content` has no such scores; a list of Nones when it has scores but the
    logprobs are missing or do not line up with the content.
    """
    wanted = score_offsets(content, key)
    if not wanted:
        return None
    tokens = (logprobs or {}).get("content") or []
    if not tokens:
        return [None] * len(wanted)
    text = "".join(t.get("token") or "" for t in tokens)
    # Servers may strip a ```json fence the grammar allowed; scan the token text itself and only
    # trust it when it holds the same scores as the content.
    located = score_offsets(text, key)
    if [v for _, v in located] != [v for _, v in wanted]:
        return [None] * len(wanted)
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t.get("token") or "")
    results: list[float | None] = []
    token_index = 0
    for offset, value in located:
        if value < 0 or value > 10:
            results.append(None)
            continue
        while token_index + 1 < len(tokens) and starts[token_index + 1] <= offset:
            token_index += 1
        prefix = tokens[token_index]["token"][: offset - starts[token_index]]
        results.append(_expected_at(tokens, token_index, prefix))
    return results
