"""annotate_v3: one anchor per request, a bare one-digit answer, the record's prefix cached per slot.

Each label (one record on every anchor of its group) is ``len(anchors)`` requests. The prompt is
system + every anchor card + the calibrated scale (the same for the whole group), then the record,
then a short question naming ONE anchor; the answer is a JSON integer 0-9 under an enum grammar
(one token), and the target is its exact logprob expectation (teacher/scores.py, key
:data:`~mira.teacher.scores.BARE`) mapped to 0-10 (x 10/9). Every score is thus the first token of
its own answer: a weak teacher cannot copy its first score into the others, as it can under
annotate_v2's one-answer JSON.

Why 0-9 and not 0-10: with digit-split tokens (Qwen) "10" is "1" then "0", and the mass of an
unsampled "1" cannot be split between 1 and 10 from one answer's logprobs. Such a target falls
back to the sampled integer, and a teacher puts weight on "1" mostly for poor records (there it
most likely means 1): the fallbacks land on exactly those, and their coarse sampled integers can
rank degraded records above clean ones. On 0-9 every value is one token, so every target is an
exact expectation.

Cost: the requests of one record go consecutively to one llama.cpp slot (``id_slot``, local
server only), so the server processes the group prefix once per slot, the record once, and only
the ~30-token question per anchor (``timings.cache_n`` in benchmarks/labels.py shows the hit).

Self-consistency re-scoring asks an equivalent variant, not the same prompt (identical prompts
give identical logprobs, a trivially perfect "consistency"): the guides of every card and the
bands of the scale are listed from HIGH to LOW instead of LOW to HIGH, with the same numbers
meaning the same things. Failures, caching and budget are the teacher's, per request: a record
whose anchor requests partly failed is a row with ``ok = false``, and a rerun asks only the failed
requests again (answers are cached under their request key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mira.corpus.records import Record, Rendering

# The answer's scale (one digit) and the factor that maps it to the 0-10 scale of every target.
SCALE_MAX = 9
TO_TEN = 10 / SCALE_MAX
# Bands of the 0-9 scale, low to high (annotate_v2's calibration: most records are ordinary).
SCALE = [("0-1", "broken, empty or useless for this dimension."),
         ("2-3", "worse than a typical record of this kind."),
         ("4-5", "a typical, ordinary record. Most records score 4 or 5."),
         ("6-7", "clearly better than typical."),
         ("8", "excellent; few records are this good."),
         ("9", "exemplary; almost never.")]
# One digit, plus one token for an end token or a trailing space the grammar allows.
MAX_TOKENS = 2
# The largest target of a labels row (every protocol's targets are on 0-10), with room for rounding.
TARGET_MAX = 10.0 + 1e-9


def card(anchor: Any, descending: bool, part: dict[str, str]) -> str:
    lines = [f"[{anchor.id}] {anchor.name} (look at: {part.get(anchor.part, anchor.part)})",
             f"  Definition: {anchor.definition}"]
    guides = [("0-2", anchor.low), ("3-6", anchor.mid), ("7-9", anchor.high)]
    for label, guide in (reversed(guides) if descending else guides):
        if guide:
            lines.append(f"  {label}: {guide}")
    return "\n".join(lines)


def scale(descending: bool) -> str:
    return "\n".join(f"{band}: {text}" for band, text in (reversed(SCALE) if descending else SCALE))


# The last line of every request: all that differs between the anchors of one record, so the only
# prompt tokens the server processes per anchor.
QUESTION = "Score the record on [{id}] {name} only{definition}. Answer one integer from 0 to 9."


def question(anchor: Any, define: bool = True) -> str:
    """The question naming one anchor, restating its definition. Without it (`define=False`,
    benchmarks/labels.py's "v3s") the cards above still define every anchor and the two rank records
    alike, but the teacher is no faster and less self-consistent (benchmarks/labels.py), so the
    definition stays."""
    definition = " ".join(str(anchor.definition).split()).rstrip(".") if define else ""
    return QUESTION.format(id=anchor.id, name=anchor.name, definition=f" ({definition})" if definition else "")


def answer_schema() -> Any:
    from pydantic import RootModel

    from mira.teacher import Digit

    class AnchorScore(RootModel[Digit]):  # the bare one-digit integer: `7`
        pass

    return AnchorScore


def build_requests(prompt: Any, anchors: Sequence[Any], record: Record, rendering: Rendering, tag: str,
                   descending: bool, slot: int | None, kind: str, part: dict[str, str],
                   define: bool = True) -> list[Any]:
    """One request per anchor, in anchor order, all with the same prefix up to the question."""
    from mira.teacher import TeacherRequest, wrap_record
    from mira.teacher.scores import BARE

    cards = "\n\n".join(card(a, descending, part) for a in anchors)
    fenced = wrap_record(rendering.text)
    schema = answer_schema()
    out = []
    for anchor in anchors:
        messages = prompt.render(anchors=cards, scale=scale(descending), kind=kind, record=fenced,
                                 question=question(anchor, define))
        out.append(TeacherRequest(messages=messages, schema=schema, prompt_version=prompt.id, max_tokens=MAX_TOKENS,
                                  tag=f"{tag} [{anchor.id}]", score_key=BARE, slot=slot, score_max=SCALE_MAX))
    return out


def label_row(record: Record, rendering: Rendering, anchor_ids: list[str], results: Sequence[Any]) -> dict[str, Any]:
    """One labels row from the per-anchor results (in `anchor_ids` order); ok only if all are.

    Targets are on 0-10 (the answer's 0-9 times 10/9); ``<anchor>__sampled`` is the digit answered.
    """
    row: dict[str, Any] = {"record_id": record.id, "source": record.source, "text": rendering.text,
                           "format": record.format, "tokens": int(rendering.tokens)}
    failed = [(aid, r) for aid, r in zip(anchor_ids, results, strict=True) if not r.ok]
    row["ok"] = not failed
    row["error"] = "; ".join(f"{aid}: {r.error}" for aid, r in failed) or None
    for aid, result in zip(anchor_ids, results, strict=True):
        if failed:
            row[aid], row[f"{aid}__sampled"], row[f"{aid}__why"], row[f"{aid}__target_kind"] = None, None, None, None
            continue
        sampled = int(result.value.root)
        expected = (result.expected_scores or [None])[0]
        row[aid] = (float(expected) if expected is not None else float(sampled)) * TO_TEN
        row[f"{aid}__target_kind"] = "expected" if expected is not None else "sampled"
        row[f"{aid}__sampled"] = sampled
        row[f"{aid}__why"] = ""
    return refuse_bad_targets(row, anchor_ids)


def bad_targets(row: dict[str, Any], anchor_ids: Sequence[str]) -> list[str]:
    """Anchors of an ok row whose target is not a number in 0-10 (NaN fails every comparison)."""
    return [aid for aid in anchor_ids
            if not (isinstance(row.get(aid), (int, float)) and 0.0 <= row[aid] <= TARGET_MAX)]


def refuse_bad_targets(row: dict[str, Any], anchor_ids: Sequence[str]) -> dict[str, Any]:
    """`row`, failed (``ok = false``, the error naming the anchors) when an ok row has a target that
    is not a number in 0-10: a NaN or an infinity must never become a label. The teacher fails
    such answers before they get here (malformed logprobs, never cached); this is the last guard."""
    bad = bad_targets(row, anchor_ids) if row["ok"] else []
    if not bad:
        return row
    row["ok"], row["error"] = False, "target not a number in 0-10 for " + ", ".join(
        f"{aid} ({row[aid]!r})" for aid in bad)
    for aid in anchor_ids:
        row[aid], row[f"{aid}__sampled"], row[f"{aid}__why"], row[f"{aid}__target_kind"] = None, None, None, None
    return row


def output_tokens(n_anchors: int) -> int:
    return MAX_TOKENS * n_anchors


def prompt_overhead_tokens(n_anchors: int) -> int:
    """Tokens processed per record beyond the record itself (one question per anchor), for the dry run."""
    return 40 * n_anchors
