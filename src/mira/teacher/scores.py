"""Probability-weighted scores from token logprobs (G-Eval style), exact across tokenisers.

A small judge's argmax score is coarse (it likes 8). The expectation over the score tokens it
considered is finer and steadier: at the token where a score's digits start, take every
alternative in ``top_logprobs`` that reads as a value on the 0..10 scale, renormalise, and average.

Multi-token numerals. Tokenisers split numbers differently: SmolLM has "10" as one token, Qwen
writes "1" then "0". An alternative is *complete* when its digits end visibly inside the token
("7", "1,", "10") or when no value of the scale extends them (a leading 2-9 or 0 cannot grow
into another value of 0..10). Only a bare "1" is *open*: it is 1 or 10 depending on the next
token. The rule for an open "1":

- it is the sampled token: the next position's alternatives are its continuation distribution,
  so the "1" mass splits exactly as p("0" next) : p(non-digit next) (digits 1-9 next would be
  11-19, off the scale, and are dropped with the rest of the off-scale mass);
- the tokeniser evidently writes whole numbers (some token of the answer, or an alternative,
  holds two digits in a row, e.g. "10"): then 10 is a token of its own and a bare "1" is 1 ("1"
  then "0" is a non-canonical encoding a model practically never emits);
- otherwise the continuation after an unsampled "1" is not in ``top_logprobs`` at all (the next
  position is conditioned on the sampled token). The expectation is then only known to lie in
  [E with the mass read as 1, E with it read as 10], an interval 9 x p("1") wide. If that width
  is at most ``AMBIGUITY_TOLERANCE`` the midpoint is used (error at most half of it); otherwise
  the score is reported unknown (None) and callers fall back to the sampled value, recording
  that the target is a fallback (annotate's ``<anchor>__target_kind``).

A scale whose every value is one digit has no open prefix at all: ``scale_max=9`` reads 0..9
exactly for any tokeniser that writes single digits as tokens (annotate_v3 asks on that scale
and maps it to 0..10: on the 0..10 scale the fallbacks land mostly on poor records, whose
unsampled "1" most likely means 1).

Reading the unsampled "1" as 1 would turn p(7)=0.55, p("1"->10)=0.45 into 4.30 instead of
8.35; guessing 10 would be as wrong for a genuinely low record. The only exact
alternative is a second request that continues the answer after "1"; a sampled fallback costs
nothing and says what it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

_DIGITS = "0123456789"
_TWO_DIGITS = re.compile(r"[0-9]{2}")
# The score scale (the ``Score`` enum of mira.teacher.request).
SCALE_MAX = 10
# Widest interval (in score points) whose midpoint still counts as the expected score when the
# 1-vs-10 split of an unsampled "1" is unknown: an error of at most 0.25 point, finer than the
# integer the sampled value gives. Wider intervals fall back to the sampled value.
AMBIGUITY_TOLERANCE = 0.5
# Part of the teacher cache key of logprob requests: cached expectations computed by an older
# rule are re-asked instead of replayed (v1 read an unsampled "1" as 1 and biased targets low).
SCORES_VERSION = "expected-v2"
# The score key of an answer that is one bare integer (annotate_v3), not a JSON object.
BARE = ""


# A logprob is the log of a probability, so at most 0; servers that compute it in float32 round
# a certain token's to a hair above 0, which is read as 0. Anything larger is not a logprob.
LOGPROB_ROUNDING = 1e-4


def logprob_problem(logprobs: Any) -> str | None:
    """Why a choice's ``logprobs`` object cannot be read, or None when it can (or is absent).

    A broken server sends NaN or Infinity (Python's JSON reader accepts both), a logprob of 1000,
    a string, or ``top_logprobs`` as an object: every expectation read from such values would be
    NaN or an exception, so the reply is malformed. ``-Infinity`` is a probability of 0 and valid.
    """
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        return f"logprobs is {_kind(logprobs)}, not an object"
    tokens = logprobs.get("content")
    if tokens is None:
        return None
    if not isinstance(tokens, list):
        return f"logprobs.content is {_kind(tokens)}, not a list"
    for i, position in enumerate(tokens):
        problem = _position_problem(position)
        if problem is None:
            alternatives = position.get("top_logprobs")
            if alternatives is not None and not isinstance(alternatives, list):
                problem = f"top_logprobs is {_kind(alternatives)}, not a list"
            for alt in alternatives or []:
                problem = problem or _position_problem(alt)
        if problem is not None:
            return f"{problem} at token {i}"
    return None


def _position_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"an entry is {_kind(entry)}, not an object"
    token, logprob = entry.get("token"), entry.get("logprob")
    if token is not None and not isinstance(token, str):
        return f"a token is {_kind(token)}, not a string"
    if logprob is None:
        return None
    if isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
        return f"a logprob is {_kind(logprob)}, not a number"
    if math.isnan(logprob) or logprob > LOGPROB_ROUNDING:
        return f"a logprob is {logprob!r}"
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def _probability(logprob: float) -> float:
    return math.exp(min(logprob, 0.0))


def score_offsets(text: str, key: str | Collection[str] = "score") -> list[tuple[int, int]]:
    """(offset, value) of every integer value of `key` in the JSON text, in order of appearance.

    `key` may be several names: the flat annotate answer ``{"a00": 7, "a01": 5}`` has one key per
    anchor id.

    A tiny scanner instead of a regex, so that ``"score": 7`` quoted inside a rationale string is
    not mistaken for a field. Values that are not plain integers are reported as value -1.

    `key` :data:`BARE` (the empty string) reads an answer that is one bare JSON integer, ``7``
    (annotate_v3 asks one anchor per request).
    """
    if key == BARE:
        return _bare_offset(text)
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


def _bare_offset(text: str) -> list[tuple[int, int]]:
    j = len(text) - len(text.lstrip())
    digits, _ = _number_prefix(text[j:])
    if not digits or text[j + len(digits):].strip():
        return []  # not one bare integer (a fraction, a word, a second value)
    return [(j, int(digits))]


def _number_prefix(text: str) -> tuple[str, bool]:
    """Leading digits of `text` and whether the number visibly ends inside `text`."""
    k = 0
    while k < len(text) and text[k] in _DIGITS:
        k += 1
    return text[:k], k < len(text)


def _is_open(digits: str, ends: bool, scale_max: int = SCALE_MAX) -> bool:
    """True when `digits` may still grow into another value of the scale (0..10: only "1" -> "10";
    0..9: nothing, every value is one digit)."""
    return not ends and any(str(v).startswith(digits) and str(v) != digits for v in range(scale_max + 1))


def _continuation_share(tokens: list[dict[str, Any]], index: int) -> float | None:
    """Share of the sampled open prefix that continues to a longer value ("1" -> "10")."""
    if index + 1 >= len(tokens):
        return None
    longer = ended = 0.0
    for alt in tokens[index + 1].get("top_logprobs") or [tokens[index + 1]]:
        token, logprob = alt.get("token") or "", alt.get("logprob")
        if logprob is None:
            continue
        if token[:1] == "0":
            longer += _probability(logprob)
        elif token[:1] not in _DIGITS:
            ended += _probability(logprob)
        # "1" then 1-9 would be 11-19: off the scale, dropped like any off-scale value.
    return longer / (longer + ended) if longer + ended > 0 else None


def _writes_whole_numbers(tokens: list[dict[str, Any]]) -> bool:
    """True when any token of the answer, or any alternative, holds two digits in a row: the
    tokeniser merges digits (Qwen never does), so "10" is a token of its own."""
    for t in tokens:
        for alt in [t, *(t.get("top_logprobs") or [])]:
            if _TWO_DIGITS.search(alt.get("token") or ""):
                return True
    return False


def _expected_at(tokens: list[dict[str, Any]], index: int, prefix: str, whole_numbers: bool,
                 scale_max: int = SCALE_MAX) -> float | None:
    chosen = tokens[index]
    alternatives = list(chosen.get("top_logprobs") or [])
    if not any(alt.get("token") == chosen.get("token") for alt in alternatives):
        alternatives.append({"token": chosen.get("token"), "logprob": chosen.get("logprob")})
    chosen_digits, chosen_ends = _number_prefix((chosen.get("token") or "")[len(prefix):])
    parsed = []
    for alt in alternatives:
        token = alt.get("token") or ""
        if not token.startswith(prefix) or alt.get("logprob") is None:
            continue
        digits, ends = _number_prefix(token[len(prefix):])
        if digits and (len(digits) == 1 or digits[0] != "0"):  # "07" is not a JSON integer
            parsed.append((digits, ends, _probability(alt["logprob"])))
    mass: dict[int, float] = {}
    open_mass = 0.0  # mass of unsampled open prefixes whose continuation is unknown
    for digits, ends, p in parsed:
        if _is_open(digits, ends, scale_max) and not whole_numbers:
            share = _continuation_share(tokens, index) if digits == chosen_digits and not chosen_ends else None
            if share is None:
                open_mass += p
                continue
            longer = int(digits + "0")
            mass[longer] = mass.get(longer, 0.0) + p * share
            mass[int(digits)] = mass.get(int(digits), 0.0) + p * (1 - share)
        elif int(digits) <= scale_max:
            mass[int(digits)] = mass.get(int(digits), 0.0) + p
    total = sum(mass.values()) + open_mass
    if total <= 0:
        return None
    known = sum(value * p for value, p in mass.items())
    low, high = (known + open_mass * 1) / total, (known + open_mass * 10) / total
    if high - low > AMBIGUITY_TOLERANCE:
        return None
    middle = (low + high) / 2
    return middle if math.isfinite(middle) else None


def expected_scores(content: str, logprobs: dict[str, Any] | None, key: str | Collection[str] = "score",
                    scale_max: int = SCALE_MAX) -> list[float | None] | None:
    """Expected value of each `key` score in `content` (order of appearance); None where unknown.

    Returns None when `content` has no such scores; a list of Nones when it has scores but the
    logprobs are missing or do not line up with the content. A single None marks a score whose
    expectation the logprobs do not determine (an open "1" whose continuation is unseen, see the
    module docstring): callers use the sampled value and record it as a fallback. `scale_max` is
    the largest value of the answer's scale (10; 9 for a one-digit scale, which has no open "1").

    Raises ValueError when the logprobs are malformed (:func:`logprob_problem`): a reply that
    carries them is a failed answer, not one whose score is unknown.
    """
    wanted = score_offsets(content, key)
    if not wanted:
        return None
    problem = logprob_problem(logprobs)
    if problem is not None:
        raise ValueError(f"malformed logprobs: {problem}")
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
    token_index, whole_numbers = 0, _writes_whole_numbers(tokens)
    for offset, value in located:
        if value < 0 or value > scale_max:
            results.append(None)
            continue
        while token_index + 1 < len(tokens) and starts[token_index + 1] <= offset:
            token_index += 1
        prefix = tokens[token_index]["token"][: offset - starts[token_index]]
        results.append(_expected_at(tokens, token_index, prefix, whole_numbers, scale_max))
    return results
