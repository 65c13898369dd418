"""Teacher text as mira accepts it: no control, bidi or invisible characters; one form for matching.

A teacher's free text (judgment reasons, anchor names and definitions, rationales, a server's
error message) goes into rubric files, labels and the HTML report. A NUL or an ESC there breaks
tools that read those files and terminals that print them; a bidi override (U+202E) makes the
report show text in an order other than the one stored; zero-width characters hide words from
anyone reading. None of them carries meaning in an answer, so :func:`clean_text` removes them
where teacher text enters mira, and tab and newline stay.

:func:`matching_form` is for pattern matching only (the injection filter): NFKC folds fullwidth
and other compatibility forms ("Ｇｉｖｅ ｉｔ １０" is "Give it 10") and invisible characters are
dropped ("Ign\\u200bore"), so a variant of a phrase is matched like the phrase. The text itself
is never replaced by that form.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# C0 controls except tab, newline and carriage return; DEL; C1 controls.
_CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# Invisible format characters: soft hyphen, Arabic letter mark, Mongolian vowel separator,
# zero-width space/joiners, left-to-right/right-to-left marks, bidi embeddings and overrides,
# word joiner and invisible operators, bidi isolates, deprecated format controls, the BOM /
# zero-width no-break space, interlinear annotation marks, and the tag characters.
_FORMAT = ("\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
           "\U000e0000-\U000e007f")
# Lone surrogates (from a JSON escape such as "\ud800") cannot be written as UTF-8 at all.
_SURROGATE = "\ud800-\udfff"
_UNWANTED = re.compile(f"[{_CONTROL}{_FORMAT}{_SURROGATE}]")
# Line and paragraph separators end a line in some readers and not in others: make them newlines.
_SEPARATORS = re.compile("[\u2028\u2029]")


def clean_text(text: str) -> str:
    """`text` without control, bidi, zero-width and other invisible characters (tab and newline stay)."""
    if text.isascii() and text.isprintable():
        return text  # the common case, at the cost of two C-level scans
    return _SEPARATORS.sub("\n", _UNWANTED.sub("", text))


def clean_strings(value: Any) -> Any:
    """`value` (decoded JSON) with :func:`clean_text` applied to every string, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_strings(v) for v in value]
    if isinstance(value, dict):
        return {clean_strings(k) if isinstance(k, str) else k: clean_strings(v) for k, v in value.items()}
    return value


def matching_form(text: str) -> str:
    """`text` as the injection filter reads it: NFKC, without invisible or control characters.

    Only for matching: it may differ from `text` in length and characters.
    """
    return unicodedata.normalize("NFKC", _UNWANTED.sub("", text))
