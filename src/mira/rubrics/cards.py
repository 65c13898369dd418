"""Checks that an anchor card can discriminate between records (MIRA phase 1, pure, no teacher).

A small teacher writes cards that cannot rank records: the same sentence as LOW, MID and HIGH;
a "dimension" lifted from one record's content ("…an incorrect area of the circle"); a measure of
length, format or topic that the cheap features already know. Discover asks :func:`card_problem`
about every card the teacher accepts; a card with a problem goes to ``rubrics/<group>.rejected.jsonl``
with the returned reason and its slot is refilled from the next cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from typing import Protocol

# Two guides whose word sequences match at least this much say the same thing. Real cards'
# guides differ in their key words ("no docstrings" / "some docstrings" / "clear docstrings on
# every function": 0.4-0.7); the demo's degenerate ones are identical (1.0) or differ by a word.
GUIDE_SIMILARITY = 0.85
# A card that reuses this many words found in one record's notes only has copied that record.
DISTINCTIVE_WORDS = 2
# ... and they make up at least this share of its content words (those not in GENERAL_WORDS).
DISTINCTIVE_SHARE = 0.3

_WORD_RE = re.compile(r"[a-z][a-z0-9_+#-]*")
# Length, format and topic: what cheap features measure already, or what no record can have more
# of. A name is judged on the whole lexicon; a definition only on length and topic words, since
# "arguments in the format the tool expects" is a correctness definition.
_LENGTH_TOPIC = (r"length|lengthy|word count|line count|number of (lines|words|characters|tokens)|how long"
                 r"|topic|topics|subject matter")
_NAME_RE = re.compile(r"\b(" + _LENGTH_TOPIC + r"|long|short|shortness|size|format|formats|formatting|layout"
                      r"|markdown|indentation|whitespace|programming language)\b")
_DEFINITION_RE = re.compile(r"\b(" + _LENGTH_TOPIC + r")\b")
# "Relevance to the topic" is a quality a definition may name; "the topic of the text" is not.
_RELEVANT_TO_TOPIC = re.compile(r"\b(relevan\w*|related|pertinent|specific|addresses|stays on)\s+(to\s+)?"
                                r"(the\s+|its\s+|a\s+|specific\s+|each\s+)?(topic|topics|subject matter)\b")
# Words every card may use whatever the records are about: quality vocabulary, the kinds of
# records and their parts. They never make a card "specific to one record".
GENERAL_WORDS = frozenset("""
a about above absent accurate accuracy across adequate all also an and any appropriate are as at bad
basic be below best better brief broken but by can careful clarity clean clear clearly code coherent
comment comments complete completeness concise consistent consistency content context correct
correctly correctness data definition demonstrates describes description descriptive detail detailed
details document documentation documented does each easy effective efficiency efficient else
error errors example examples excellent explain explained explains explanation exemplary expected
few file follow follows for from full function functions fully function's functionality gives good
handle handles handling has have helpful high how ideal if implementation implemented important in
incomplete inconsistent incorrect information input inputs is issue issues it its lacks lacking
little logic logical low mainly many meaning meaningful mid minor missing mistakes more most mostly
much name named names naming no none not of often on only or other outputs overall partial partially
parts poor poorly precise present proper properly provides purpose quality question questions readable
readability reasonable reasoning record records relevant reliable response result results robust
robustness same score some specific step steps structure structured style such text that the their
them there these this thorough thoroughly to tool tools trace uses useful usage valid validation
very well what when whether which while with without work works wrong answer answers call calls
argument arguments trajectory agent user task tasks module modules class classes method methods
variable variables type types value values test tests case cases edge simple complex clear unclear
vague confusing strong weak understandable understand explanations helpfulness usefulness
making makes provide provided providing could should would overly valuable resource recommended
well-defined maintain maintainable maintainability modular modularity separation concerns
""".split())


# Cue words of a guide's direction (reversed_scale). Negators also turn the next few words'
# praise into criticism ("not clear", "no useful", "lacks precise"). "errors" or "edge cases" are
# neither: "handles errors deliberately" is a HIGH guide.
_NEGATORS = frozenset("no not never without lacks lack lacking missing none nothing fails fail cannot".split())
_NEGATION_REACH = 3
_NEGATIVE = frozenset("""
poor poorly incorrect incorrectly unclear inaccurate inaccurately wrong wrongly absent broken confusing
vague incomplete misleading cryptic tangled ignores ignored little bad garbled useless irrelevant
inconsistent unreadable incoherent flawed invalid mistakes mistaken fragmentary hard difficult
sloppy messy weak insufficient inadequate unhelpful erroneous buggy nonexistent rarely barely
""".split())
_POSITIVE = frozenset("""
accurate accurately correct correctly clear clearly complete precise consistent helpful useful good
great detailed robust readable valid relevant concise descriptive thorough well strong rich
comprehensive informative reliable appropriate careful carefully effective
""".split())
# Praise no LOW guide should carry unless it is negated.
_STRONG_POSITIVE = frozenset("""
excellent exemplary perfect perfectly flawless flawlessly outstanding completely fully entirely
totally impeccable ideal superb
""".split())


class _Card(Protocol):
    name: str
    definition: str
    low: str
    mid: str
    high: str


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def guide_similarity(a: str, b: str) -> float:
    """How alike two guides are (0..1), on normalised word sequences, not characters."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def identical_guides(card: _Card, threshold: float = GUIDE_SIMILARITY) -> str | None:
    guides = {"low": card.low, "mid": card.mid, "high": card.high}
    pairs = [("low", "mid"), ("mid", "high"), ("low", "high")]
    worst = max(pairs, key=lambda p: guide_similarity(guides[p[0]], guides[p[1]]))
    similarity = guide_similarity(guides[worst[0]], guides[worst[1]])
    if similarity >= threshold:
        return (f"{worst[0]}/{worst[1]} guides are near-identical (similarity {similarity:.2f} >= {threshold}): "
                "the card cannot tell a low record from a high one")
    return None


def surface_measure(card: _Card) -> str | None:
    """The card's name or definition measures length, format or topic."""
    for field, pattern in (("name", _NAME_RE), ("definition", _DEFINITION_RE)):
        text = " ".join(_words(getattr(card, field)))
        if field == "definition":
            text = _RELEVANT_TO_TOPIC.sub(" ", text)
        match = pattern.search(text)
        if match:
            return f"measures length, format or topic ({field} says {match.group(0)!r}), not a quality"
    return None


def single_record_content(card: _Card, notes: Iterable[tuple[str, str]],
                          min_words: int = DISTINCTIVE_WORDS, texts: Mapping[str, str] | None = None) -> str | None:
    """The card reuses words that only one record's notes contain: it describes that record.

    `notes` are (record id, note text) pairs of the whole group, so a word is distinctive only
    if no other record's judge used it. `texts` (record id -> the text the judge saw), when given,
    also require the word to be *content* of that record alone: in its text and in no other
    judged record's. A judge's own adjective ("straightforward") is in no record; a word of the
    kind of records ("command" in man pages) is in several; "circle" in one function-calling
    trajectory is in one. Without it, the notes of a handful of judged records make ordinary words
    look specific, and general cards (a Clarity card) would be rejected as one record's content.
    """
    by_word: dict[str, set[str]] = {}
    for record_id, text in notes:
        for word in set(_words(text)):
            by_word.setdefault(word, set()).add(record_id)
    if len({r for ids in by_word.values() for r in ids}) < 2:
        return None  # one record in the group: nothing to compare against
    card_words = set(_words(" ".join((card.name, card.definition, card.low, card.mid, card.high))))
    content = {w for w in card_words - GENERAL_WORDS if len(w) >= 4}
    distinctive = sorted(w for w in content if len(by_word.get(w, ())) == 1)
    if texts is not None:
        # Content of that one record: words of its text (stemmed: the card's "indexing" is the
        # record's "index") and of no other judged record's. Then two such words are a copy,
        # whatever share of the card they are: "Tk events" and "precedence" in one card name two
        # FAQ entries, and general words around them do not make it general.
        vocab = {rid: {_stem(w) for w in _TEXT_WORD_RE.findall(text.lower())} for rid, text in texts.items()}
        distinctive = [w for w in distinctive
                       if [rid for rid, words in vocab.items() if _in_text(w, words)] == list(by_word[w])]
        if len(distinctive) >= min_words:
            records = sorted({next(iter(by_word[w])) for w in distinctive})
            where = records[0] if len(records) == 1 else f"one record each: {'; '.join(records[:3])}"
            return (f"names the content of one record ({', '.join(distinctive[:4])} appear only in the text and "
                    f"the notes of {where}), not a quality records share")
        return None
    # A general card may borrow a word or two from one judge's note among many general ones;
    # a copied card is made of that record's words.
    if len(distinctive) >= min_words and len(distinctive) >= DISTINCTIVE_SHARE * len(content):
        record = next(iter(by_word[distinctive[0]]))
        return (f"names the content of one record ({', '.join(distinctive[:4])} appear only in the notes "
                f"on {record}), not a quality records share")
    return None


_TEXT_WORD_RE = re.compile(r"[a-z0-9]+")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _in_text(word: str, stems: set[str]) -> bool:
    """`word` (a card word, maybe "clang-format" or "tool_call") is among a record's word stems."""
    parts = [p for p in re.split(r"[^a-z0-9]+", word) if p]
    return bool(parts) and all(_stem(p) in stems for p in parts)


def _polarity(text: str) -> tuple[int, int, int, int]:
    """Cues of a guide: (negative, plainly negative words, positive, strong positive).

    A word within a few words after a negator is read through it: "not clear" and "no useful" are
    negative, not positive; "no incorrect" is not a plainly negative word (a HIGH guide may say it).
    """
    negative = plain = positive = strong = 0
    after_negator = 0
    for word in _words(text):
        negated = after_negator > 0
        after_negator = max(0, after_negator - 1)
        if word in _NEGATORS:
            negative += 1
            after_negator = _NEGATION_REACH
        elif word in _NEGATIVE:
            negative += 1
            plain += not negated
        elif word in _POSITIVE or word in _STRONG_POSITIVE:
            if negated:
                negative += 1
            else:
                positive += 1
                strong += word in _STRONG_POSITIVE
    return negative, plain, positive, strong


def reversed_scale(card: _Card) -> str | None:
    """The card's scale runs the wrong way: its LOW guide praises, or its HIGH guide reads negative
    where its LOW one reads positive (e.g. a "Tool Accuracy" card whose LOW is "completely accurate").

    Lexical, so it only fires on clear cases: LOW with strong praise ("excellent", "completely
    accurate") and no negative cue, or LOW positive without a negative cue while HIGH carries
    plainly negative words ("inaccurate", "poor"; a negated one, "no incorrect calls", is fine)
    outweighing its praise. The teacher would score such a card upside down.
    """
    low_neg, _, low_pos, low_strong = _polarity(card.low)
    _, high_plain, high_pos, _ = _polarity(card.high)
    if low_strong and not low_neg:
        return f"scale reversed: the LOW guide praises ({card.low.strip()!r}) and has no negative cue"
    if low_pos and not low_neg and high_plain > high_pos:
        return (f"scale reversed: the HIGH guide ({card.high.strip()!r}) reads negative and the LOW guide "
                f"({card.low.strip()!r}) positive")
    return None


def card_problem(card: _Card, records: int, notes: Sequence[tuple[str, str]],
                 texts: Mapping[str, str] | None = None) -> str | None:
    """Why `card` cannot discriminate, or None. `records`: distinct records behind its cluster;
    `texts`: the judged records' texts (record id -> text), see :func:`single_record_content`."""
    if records < 2:
        return f"supported by {records} record only: a quality needs at least 2 records behind it"
    return (identical_guides(card) or reversed_scale(card) or surface_measure(card)
            or single_record_content(card, notes, texts=texts))
