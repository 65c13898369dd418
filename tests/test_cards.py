"""Card checks (mira.rubrics.cards) on hand-made cards, including the real failures of the 20-minute demo."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mira.rubrics.cards import (
    card_problem,
    guide_similarity,
    identical_guides,
    reversed_scale,
    single_record_content,
    surface_measure,
)


def card(name: str, definition: str, low: str, mid: str, high: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, definition=definition, low=low, mid=mid, high=high)


GOOD = card("Documentation", "How well comments and docstrings explain what the code does.",
            "No comments or docstrings.", "Some functions have docstrings, others none.",
            "Every public function has a clear docstring; tricky lines are commented.")
# The demo's agent card: the same sentence three times, copied from one trajectory.
CIRCLE = "The result is inconsistent with the expected result, providing an incorrect area of the circle."
CONSISTENCY = card("Consistency", "Whether the tool results agree with the expected result.", CIRCLE, CIRCLE,
                   CIRCLE)
NOTES = [("r1", "Consistency: the tool returned an incorrect area of the circle for radius 5"),
         ("r1", "Correctness: calculate_area was called with the wrong radius"),
         ("r2", "Correctness: the weather call uses the right city"),
         ("r3", "Clarity: the final answer restates the tool result clearly"),
         ("r4", "Documentation: the docstring explains each argument")]


def test_identical_low_mid_high_guides_are_rejected():
    assert "near-identical" in identical_guides(CONSISTENCY)
    # One word changed is still the same guide.
    almost = card("Consistency", "d", CIRCLE, CIRCLE.replace("incorrect", "wrong"), CIRCLE)
    assert identical_guides(almost)
    # Case, spacing and punctuation do not make guides different.
    assert guide_similarity("No DOCSTRINGS, at all.", "no docstrings at all") == 1.0


def test_guides_that_differ_in_their_key_words_pass():
    assert identical_guides(GOOD) is None
    graded = card("Error handling", "How errors are handled.", "Errors are ignored.",
                  "Common errors are handled.", "Every error path is handled and reported.")
    assert identical_guides(graded) is None
    assert identical_guides(card("x", "d", "", "", "")) is None  # empty guides: nothing to compare


@pytest.mark.parametrize("bad", [
    card("Length", "How long the text is.", "Very short.", "Medium length.", "Long and detailed."),
    card("Code formatting", "Whether the code follows a consistent layout.", "Messy.", "Mostly tidy.", "Tidy."),
    card("Topic relevance", "Whether the topic is Python.", "Other topic.", "Partly Python.", "All Python."),
    card("Detail", "The number of lines in the file.", "Few lines.", "Some lines.", "Many lines."),
])
def test_length_format_and_topic_cards_are_rejected(bad):
    assert "length, format or topic" in surface_measure(bad)


def test_quality_names_that_merely_contain_similar_letters_pass():
    assert surface_measure(GOOD) is None
    # "format" in a definition is a correctness matter for tool calls; only the name is held to it.
    calls = card("Argument validity", "Whether arguments have the format the tool's schema expects.",
                 "Invalid arguments.", "Mostly valid.", "All arguments valid.")
    assert surface_measure(calls) is None
    assert surface_measure(card("Informativeness", "Useful facts per paragraph.", "a", "b", "c")) is None


def test_a_card_copied_from_one_record_is_rejected():
    reason = single_record_content(CONSISTENCY, NOTES)
    assert reason and "area" in reason and "circle" in reason and "r1" in reason


def test_the_qa_editors_and_ides_card_is_rejected():
    notes = [("q1", "Consistency: answers about different editors and IDEs disagree on shortcuts"),
             ("q2", "Accuracy: the answer names the correct module"),
             ("q3", "Accuracy: the answer explains the error message")]
    ides = card("Consistency", "Whether the answer is consistent across different editors and IDEs.",
                "Advice differs between editors.", "Mostly the same in editors and IDEs.",
                "Consistent advice for all editors and IDEs.")
    reason = single_record_content(ides, notes)
    assert reason and "editors" in reason and "ides" in reason


def test_general_cards_are_not_mistaken_for_one_records_content():
    notes = NOTES + [("r5", "Documentation: no docstring at all")]
    assert single_record_content(GOOD, notes) is None
    # Two words from one judge's note among many general words: still a general card.
    borrowing = card("Documentation", "How well docstrings and comments explain parameters and returns.",
                     "Missing docstrings; nothing explains the parameters.",
                     "Docstrings on some functions, terse comments elsewhere.",
                     "Thorough docstrings describe parameters, returns, exceptions and side effects; "
                     "comments explain intent.")
    notes = notes + [("r6", "Documentation: docstrings list parameters and returns"),
                     ("r7", "Documentation: docstrings are missing for most functions"),
                     ("r8", "Comments: intent is explained in comments")]
    assert single_record_content(borrowing, notes) is None
    # A single record in the group: there is nothing to tell distinctive words from shared ones.
    assert single_record_content(CONSISTENCY, [("r1", CIRCLE)]) is None


def test_card_problem_combines_the_checks_and_requires_two_records():
    assert "1 record" in card_problem(GOOD, records=1, notes=NOTES)
    assert card_problem(GOOD, records=3, notes=NOTES) is None
    assert "near-identical" in card_problem(CONSISTENCY, records=2, notes=NOTES)
    odd = card("Lisibilité ✓", "Qualité du code, 可读性", "mauvais", "moyen", "excellent")
    assert card_problem(odd, records=2, notes=[("r1", "可读性 ✓"), ("r2", "ok")]) is None


# The demo's "Tool Accuracy" card: its LOW guide praises, so the teacher would score it upside down.
TOOL_ACCURACY = card("Tool Accuracy", "Whether the tool calls use the right tools with the right arguments.",
                     "The tool calls are completely accurate.", "Some tool calls have wrong arguments.",
                     "The tool calls are inaccurate and use the wrong tools.")


def test_a_card_whose_scale_runs_the_wrong_way_is_rejected():
    assert "LOW guide praises" in reversed_scale(TOOL_ACCURACY)
    assert "scale reversed" in card_problem(TOOL_ACCURACY, records=3, notes=NOTES)
    # LOW praise alone is enough, whatever HIGH says.
    assert reversed_scale(card("Tool Accuracy", "d", "Completely accurate.", "Mostly accurate.",
                               "Accurate in every call."))
    assert reversed_scale(card("Answer quality", "d", "Excellent answer.", "An ordinary answer.", "Useless."))
    # Milder praise in LOW with plainly negative words in HIGH.
    assert "HIGH guide" in reversed_scale(card("Correctness", "d", "Correct and clear results.", "Some slips.",
                                               "Incorrect, poorly explained results."))


@pytest.mark.parametrize("low, high", [
    ("No comments or docstrings, or misleading ones.", "Clear docstrings and comments on everything non-obvious."),
    ("Cryptic names, tangled or duplicated logic.", "Descriptive names and simple, well-structured logic."),
    ("Ignores errors and edge cases.", "Validates inputs and handles errors and edge cases deliberately."),
    ("Confusing, fragmentary or garbled.", "Precise, well-organised explanation."),
    ("Little or no useful information.", "Dense, accurate, useful information throughout."),
    ("No examples and nothing actionable.", "Concrete, correct examples of usage."),
    ("poor", "exemplary"),
    # HIGH guides may say what is absent; LOW guides may negate praise.
    ("Crashes on malformed input.", "No crashes, no unhandled exceptions, never fails silently."),
    ("Not fully documented; not accurate.", "Fully documented with no incorrect statements."),
    ("Completely lacks error handling.", "Handles every error."),
    ("Accurate but terse.", "Accurate, thorough and without mistakes."),
    ("", "Clear and correct."),
])
def test_cards_that_run_low_to_high_pass_the_direction_check(low, high):
    assert reversed_scale(card("Quality", "How good it is.", low, "In between.", high)) is None


def test_the_direction_check_passes_the_cards_of_the_tests_and_the_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "labels.py"
    spec = importlib.util.spec_from_file_location("labels_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    anchors = [a for cards in module.ANCHORS.values() for a in cards]
    assert len(anchors) == 6 and all(reversed_scale(a) is None for a in anchors)
    assert reversed_scale(GOOD) is None and reversed_scale(CONSISTENCY) is None


# The Q&A group of the 2026-11-27 demo run: four FAQ records judged by the bundled 1.5B teacher.
FAQ_NOTES = [
    ("tk", "relevance: The question and answer are related to the topic of Tk events and I/O handling."),
    ("tk", "clarity: The question and answer are clear and concise."),
    ("tk", "accuracy: The answer is accurate and provides useful information."),
    ("neg", "relevance: The question and answer are directly related to each other, providing a clear and "
            "concise explanation of negative indexing in Python sequences."),
    ("neg", "accuracy: The answer is accurate and provides a clear explanation of negative indexing, making it "
            "a valuable resource for learners."),
    ("neg", "clarity: The answer is clear and easy to understand, making it a valuable resource for learners."),
    ("comma", "quality: The record is clear and concise, with a well-defined question and answer."),
    ("comma", "relevance: The question and answer are directly related to Python's syntax and precedence rules."),
    ("comma", "clarity: The question and answer are easy to understand and follow."),
    ("tabs", "Clarity: The question is clear and concise, and the answer provides a detailed explanation of "
             "the recommended practices."),
    ("tabs", "Relevance: The question is relevant to Python developers and the answer provides practical "
             "advice on how to avoid using tabs in Python source code."),
]

# The demo's Accuracy card about one FAQ entry (negative indexing).
NEGATIVE_INDEXING = card("Accuracy", "The answer is accurate and provides a clear explanation of negative indexing, "
                         "making it a valuable resource for learners.",
                         "The answer is not accurate or does not provide a clear explanation of negative indexing.",
                         "The answer is accurate but does not provide a clear explanation of negative indexing.",
                         "The answer is accurate and provides a clear explanation of negative indexing, making it "
                         "a valuable resource for learners.")


def test_the_demos_general_qa_clarity_card_is_kept():
    # Rejected in the demo as "one record's content" for filler words (making, recommended,
    # well-defined), which left the Q&A group with no anchor at all.
    clarity = card("Clarity", "The question and answer are clear and concise, making it easy to understand and follow.",
                   "The question and answer are unclear or overly complex, making it difficult to understand "
                   "and follow.",
                   "The question and answer are clear and concise, but could be more detailed or comprehensive.",
                   "The question and answer are clear and concise, with a well-defined question and answer, and "
                   "provide a detailed explanation of the recommended practices.")
    assert card_problem(clarity, records=4, notes=FAQ_NOTES) is None


def test_the_demos_cards_about_one_faq_entry_are_still_rejected():
    reason = single_record_content(NEGATIVE_INDEXING, FAQ_NOTES)
    assert reason and "negative" in reason and "indexing" in reason and "neg" in reason


def test_relevance_to_the_topic_is_a_quality_but_measuring_the_topic_is_not():
    documentation = card("Quality of Documentation", "This dimension measures the overall quality of the "
                         "documentation, including its clarity, completeness, and relevance to the topic.",
                         "The documentation is very short and lacks any important information.",
                         "The documentation is adequate but could be improved in terms of clarity and completeness.",
                         "The documentation is well-written, clear, and comprehensive.")
    assert surface_measure(documentation) is None
    topical = card("Coverage", "Which topic the text is about.", "Other topic.", "Partly.", "Python only.")
    assert "topic" in surface_measure(topical)


def _judged() -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "data" / "group_discover" / "judged_records.json").read_text())


def test_with_the_judged_texts_a_general_card_is_not_one_records_content():
    # demo-full lost the prose group's only general card: "command" and "straightforward" appeared
    # in one judge's notes only. Neither is content of one record: "straightforward" is in no
    # record (the judge's own word), and one word is not a copy.
    judged = _judged()
    clarity = card(**{k: judged["prose_clarity_card"][k] for k in ("name", "definition", "low", "mid", "high")})
    notes = [tuple(n) for n in judged["prose_notes"]]
    assert "names the content" in single_record_content(clarity, notes)  # the notes alone: rejected
    assert single_record_content(clarity, notes, texts=judged["prose_texts"]) is None
    assert card_problem(clarity, records=3, notes=notes, texts=judged["prose_texts"]) is None


def test_with_the_judged_texts_cards_about_one_faq_entry_are_still_rejected():
    texts = _judged()["faq_texts"]
    reason = single_record_content(NEGATIVE_INDEXING, FAQ_NOTES, texts=texts)
    assert reason and "negative" in reason and "indexing" in reason and "neg" in reason  # "index" in its text
    # A card naming two FAQ entries' subjects (the demo's "Quality of Reasoning and Answer").
    mixed = card("Quality of Reasoning and Answer",
                 "This dimension measures the quality of the reasoning and explanation provided in the question "
                 "and answer, ensuring they are directly related to the topic and provide a clear and concise "
                 "explanation.",
                 "The question and answer are not directly related to Python's syntax and precedence rules, or "
                 "they are not related to Tk events and I/O handling.",
                 "The question and answer are related to Python's syntax and precedence rules, but not to Tk "
                 "events and I/O handling.",
                 "The question and answer are directly related to Python's syntax and precedence rules, and to "
                 "Tk events and I/O handling, with a clear and concise explanation.")
    reason = single_record_content(mixed, FAQ_NOTES, texts=texts)
    assert reason and "events" in reason and "precedence" in reason
    # The general Clarity card of the same group still passes with the texts.
    clarity = card("Clarity", "The question and answer are clear and concise, making it easy to understand and follow.",
                   "The question and answer are unclear or overly complex.",
                   "The question and answer are clear and concise, but could be more detailed.",
                   "The question and answer are clear and concise, with a detailed explanation of the recommended "
                   "practices.")
    assert card_problem(clarity, records=4, notes=FAQ_NOTES, texts=texts) is None
