"""Cutting a text to a token budget: start / middle / end windows with visible elision marks.

A text that fits its budget is kept whole. A longer one keeps `windows` windows of tokens: exact
token ranges (:func:`window_ranges`) when the text is tokenized anyway, or, for a very long text,
windows cut on character slices around each window (:func:`slice_windows`), so the cost is flat
in the text's length. Both cuts can be replayed from UTF-8 byte spans without a tokenizer: ingest,
which tokenizes every record to count it, records the spans, and score rebuilds the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from mira.text.tokens import Tokenizer

# A token of cl100k spans at most a few characters in code or prose; 8 is a safe bound, so a
# window of `size` tokens lies within `size * 8` characters and only those slices are tokenized.
CHARS_PER_TOKEN_BOUND = 8
NO_MARK = -1


@dataclass(frozen=True)
class Slices:
    """A :func:`slice_windows` cut as a reader holding the text can replay it (:func:`replay_slices`).

    `spans`: the kept pieces as UTF-8 byte spans of the text; `gaps`: the elided-token estimate
    shown before each piece, then after the last one (``NO_MARK`` where no mark is shown).
    """

    spans: tuple[tuple[int, int], ...]
    gaps: tuple[int, ...]


def sliced(text: str, budget: int) -> bool:
    """True when :func:`window` cuts `text` on character slices instead of exact token ranges."""
    return len(text) > 2 * budget * CHARS_PER_TOKEN_BOUND


def window(text: str, budget: int, tokenizer: Tokenizer, windows: int = 3) -> tuple[str, bool]:
    """Cut `text` to about `budget` tokens as start/middle/end windows with elision marks.

    Long texts are windowed on character slices around each window, so the cost is flat in the
    record's length (a 50k-token file is not tokenized again just to keep 256 of its tokens).
    """
    if sliced(text, budget):
        pieces, gaps, _ = slice_windows(text, budget, tokenizer, windows)
        return join_slices(pieces, gaps), True
    tokens = tokenizer.encode(text)
    if len(tokens) <= budget:
        return text, False
    ranges = window_ranges(len(tokens), budget, windows)
    return join_windows(len(tokens), ranges, [tokenizer.decode(tokens[a:b]) for a, b in ranges]), True


def window_ranges(n_tokens: int, budget: int, windows: int) -> list[tuple[int, int]]:
    """The token ranges :func:`window` keeps of an `n_tokens`-token text longer than `budget`."""
    if windows == 1:
        return [(0, budget)]
    size = max(1, budget // windows)
    starts = [0] + [round((n_tokens - size) * i / (windows - 1)) for i in range(1, windows)]
    ranges, last_end = [], 0
    for start in starts:
        start = max(start, last_end)
        ranges.append((start, min(start + size, n_tokens)))
        last_end = start + size
    return ranges


def join_windows(n_tokens: int, ranges: list[tuple[int, int]], pieces: list[str]) -> str:
    """The windowed text: the kept pieces (decoded `ranges`) with elision marks between them."""
    if len(ranges) == 1:
        return pieces[0] + f"\n[... {n_tokens - ranges[0][1]} tokens elided ...]"
    out, last_end = [], 0
    for (start, end), piece in zip(ranges, pieces, strict=True):
        if start > last_end:
            out.append(f"\n[... {start - last_end} tokens elided ...]\n")
        out.append(piece)
        last_end = end
    return "".join(out)


def slice_windows(text: str, budget: int, tokenizer: Tokenizer, windows: int, *,
                  spans: bool = False) -> tuple[list[str], list[int], Slices | None]:
    """(pieces, gaps, the cut as byte spans) of a very long text, tokenizing only a slice per window.

    Each window's slice is `size * CHARS_PER_TOKEN_BOUND` characters; the first window keeps the
    slice's first tokens, the last its last tokens, a middle one the tokens around its centre.
    The cut is returned only when `spans` is asked for, and then None for a tokenizer without byte
    offsets or a text that is not valid UTF-8 (the tokenizer encodes a repaired copy of it).
    """
    size = max(1, budget // windows)
    width = size * CHARS_PER_TOKEN_BOUND
    starts = [0] + [round((len(text) - width) * i / (windows - 1)) for i in range(1, windows)] if windows > 1 else [0]
    offsets = getattr(tokenizer, "byte_offsets", None) if spans and _valid_utf8(text) else None
    pieces: list[str] = []
    gaps: list[int] = []
    byte_spans: list[tuple[int, int]] = []
    last_end = 0
    base, based = 0, 0  # the UTF-8 byte offset of character `based`, advanced window by window
    for i, start in enumerate(starts):
        chunk = text[start:start + width]
        tokens = tokenizer.encode(chunk)
        if i == 0:
            lo, hi = 0, min(size, len(tokens))
        elif i == windows - 1:
            lo, hi = max(0, len(tokens) - size), len(tokens)  # a slice may start inside a token; its tail never does
        else:
            lo = min(len(tokens), max(1, len(tokens) // 2 - size // 2))
            hi = min(len(tokens), lo + size)
        piece = tokenizer.decode(tokens[lo:hi])
        at = text.find(piece, last_end) if i else 0
        begin = at if at >= 0 else start
        gaps.append(round((begin - last_end) * len(tokens) / max(len(chunk), 1)) if begin > last_end else NO_MARK)
        pieces.append(piece)
        last_end = max(last_end, begin + len(piece))
        if offsets is not None:
            # The chunk's tokens concatenate to its UTF-8 bytes, which begin where the chunk does.
            base += len(text[based:start].encode("utf-8"))
            based = start
            a, b = offsets(tokens, [lo, hi])
            byte_spans.append((base + a, base + b))
    trailing = NO_MARK
    if windows == 1 and last_end < len(text):
        trailing = round((len(text) - last_end) * len(tokens) / max(len(chunk), 1))
    gaps.append(trailing)
    cut = Slices(tuple(byte_spans), tuple(gaps)) if offsets is not None else None
    return pieces, gaps, cut


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def join_slices(pieces: list[str], gaps: list[int]) -> str:
    """The text of a sliced cut: each piece after its elision mark, then the trailing mark."""
    out = []
    for piece, gap in zip(pieces, gaps[:-1], strict=True):
        if gap != NO_MARK:
            out.append(f"\n[... about {gap} tokens elided ...]\n")
        out.append(piece)
    if gaps[-1] != NO_MARK:
        out.append(f"\n[... about {gaps[-1]} tokens elided ...]")
    return "".join(out)


def replay_slices(data: bytes, cut: Slices) -> str:
    """The :func:`window` text of a sliced cut, from the UTF-8 bytes of the text it was cut from."""
    return join_slices([data[a:b].decode("utf-8", "replace") for a, b in cut.spans], list(cut.gaps))
