"""Windows cut on character slices replay from byte spans to the same text, without a tokenizer."""

import random

import pytest

from mira.core.config import SourceConfig
from mira.corpus.records import make_record, render
from mira.io.readers import RawItem
from mira.text.tokens import get_tokenizer
from mira.text.windows import Slices, replay_slices, slice_windows, sliced, window

TOK = get_tokenizer("cl100k_base")
ODD = ["a", "b c", " ", "\n", "\t", ".", "(", "é", "東京", "👩‍👩‍👧", "e\u0301", "\u200b", "😀", "def ",
       "    return x\n", "<|endoftext|>", "\r\n", "ß", "ﬁ", "\ufeff", "\U0010ffff"]


def _record(text: str):
    return make_record(RawItem("f.jsonl:1", {"text": text}), SourceConfig(name="s", path="x.jsonl"), "text")


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:  # many characters a token, or many tokens a character
            out.append("".join(rng.choice(ODD) for _ in range(rng.randint(300, 4000))))
        else:
            out.append("".join(rng.choice(["👩‍👩‍👧", "東京", "😀x", "é"]) for _ in range(rng.randint(200, 2000))))
    return out


@pytest.mark.parametrize("windows", [1, 2, 3, 5])
def test_slices_replay_to_the_windowed_text(windows):
    rng = random.Random(windows)
    checked = 0
    for text in _texts(windows, 40):
        budget = rng.choice([16, 40, 96])
        if not sliced(text, budget):
            continue
        expected, cut = window(text, budget, TOK, windows)
        pieces, gaps, slices = slice_windows(text, budget, TOK, windows, spans=True)
        assert cut and slices is not None and len(slices.spans) == windows and len(slices.gaps) == windows + 1
        assert replay_slices(text.encode("utf-8"), slices) == expected
        checked += 1
    assert checked >= 20


def test_no_spans_where_bytes_cannot_replay_the_cut():
    text = "lone \ud800 half " * 400  # not valid UTF-8: the tokenizer encodes a repaired copy
    assert slice_windows(text, 64, TOK, 3, spans=True)[2] is None
    assert slice_windows("abcd" * 2000, 64, get_tokenizer("bytes4"), 3, spans=True)[2] is None  # no byte offsets
    assert slice_windows("abcd " * 2000, 64, TOK, 3)[2] is None  # not asked for


def test_render_uses_recorded_windows_only_of_the_matching_kind():
    record = _record("東京 words 😀 " * 900)
    expected = render(record, TOK, 96)
    _, _, slices = slice_windows(record.parts["text"], 96, TOK, 3, spans=True)

    class NoTokenizer:
        name = "none"

        def __getattr__(self, name):
            raise AssertionError(f"tokenizer used: {name}")

    assert render(record, NoTokenizer(), 96, total=expected.tokens, window_bytes=slices) == expected
    # Exact-range spans for a text render cuts on slices (a damaged or foreign file): tokenize.
    exact = [(0, 10), (20, 30), (40, 50)]
    assert render(record, TOK, 96, total=expected.tokens, window_bytes=exact) == expected
    # Slices for a text render cuts by exact ranges: tokenize too.
    short = _record("東京 words 😀 " * 60)
    fake = Slices(((0, 5), (5, 9), (9, 12)), (-1, -1, -1, -1))
    assert render(short, TOK, 96, window_bytes=fake) == render(short, TOK, 96)
