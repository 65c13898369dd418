"""The lines a finished selection adds to the run notes (mira.selection.notes)."""

from mira.selection.notes import (
    empty_budget_notes,
    random_share_notes,
    ranking_lines,
    selection_notes,
    starved_source_notes,
)


def _summary(mode="group", **kept):
    sources = {name: {"tokens_in": 1000, "kept_tokens": k, "unscored_tokens": 1000 if name == "masked" else 0}
               for name, k in kept.items()}
    groups = {name: ("g1" if name != "alone" else "g2") for name in kept}
    return {"mode": mode, "budget_share": 0.5, "budget": 0.5, "sources": sources, "source_groups": groups,
            "units": {"g1": {"eligible_records": 3, "kept_tokens": 1}}}


def test_a_source_the_group_cutoff_dropped_is_named_with_every_share():
    # As measured on demo-full with 72 labels: C headers 0%, stdlib code 76% under one cutoff.
    notes = starved_source_notes(_summary(c_headers=0, stdlib_code=760, sitepkg_code=500))
    assert len(notes) == 1 and notes[0].startswith("group g1: c_headers kept almost none")
    assert "c_headers 0%, sitepkg_code 50%, stdlib_code 76%" in notes[0] and "selection.mode: source" in notes[0]


def test_no_line_for_shares_near_the_budget_other_modes_lone_sources_or_the_random_share():
    assert starved_source_notes(_summary(a=400, b=600)) == []
    assert starved_source_notes(_summary(mode="source", a=0, b=1000)) == []
    assert starved_source_notes(_summary(alone=0, b=500)) == []  # the only source of its group
    assert starved_source_notes(_summary(masked=0, b=1000)) == []  # unscored: its share is random's
    assert empty_budget_notes(_summary(a=400, b=600)) == []


def _shares_summary(unscored: dict[str, int], policy="random", key="score", method="mira"):
    """Groups of 1,000 usable tokens each (plus 50 quarantined), `unscored[g]` of them unscored."""
    groups = {g: {"tokens_in": 1050, "kept_tokens": 500, "rejected_tokens": 500, "unscored_tokens": u,
                  "unscored_kept_tokens": u // 2} for g, u in unscored.items()}
    totals = {k: sum(g[k] for g in groups.values()) for k in next(iter(groups.values()))}
    return {"method": method, "mode": "group", "key": key, "unscored_policy": policy, "budget": 0.5,
            "budget_share": 0.5, "totals": totals, "groups": groups, "sources": {}, "source_groups": {}, "units": {}}


def test_ranking_lines_say_what_share_was_ranked_and_what_was_random_per_group():
    # The demo's first screen said only "49.9% retained" of a selection that was all random.
    lines = ranking_lines(_shares_summary({"g0": 1000, "g1": 250}))
    assert lines[0].startswith("ranked by a reliable score: 37.5% of the tokens; random: 62.5% (unscored: every "
                               "anchor of their source masked as unreliable); 62.5% of the kept tokens are a random")
    assert lines[1:] == ["  g0: 0.0% ranked, 100.0% random (1,000 tokens)",
                         "  g1: 75.0% ranked, 25.0% random (1,000 tokens)"]
    rejected = ranking_lines(_shares_summary({"g0": 1000, "g1": 0}, policy="reject"))
    assert "rejected: 50.0%" in rejected[0] and rejected[1] == "  g0: 0.0% ranked, 100.0% rejected (1,000 tokens)"
    # A baseline ranks by its own key, never falls back: one line, no MIRA wording.
    assert ranking_lines(_shares_summary({"g0": 0}, key="tokens", method="length")) == [
        "ranked by tokens: 100% of the tokens"]


def test_a_mostly_random_selection_is_a_warning_naming_its_groups():
    notes = selection_notes(_shares_summary({"g0": 1000, "g1": 250}))
    assert notes[0].startswith("most of this selection is random: 62.5% of its tokens (groups g0) had every anchor")
    assert "reliability" in notes[0]
    assert random_share_notes(_shares_summary({"g0": 500, "g1": 400})) == []  # 45%: not most
    assert random_share_notes(_shares_summary({"g0": 1000}, policy="reject"))[0].startswith(
        "most of the tokens were not ranked: 100.0% of its tokens (groups g0)")


def test_the_starved_source_note_is_for_mira_only():
    # A length baseline starving short sources is what length does; the note blames MIRA's anchors.
    summary = _summary(c_headers=0, stdlib_code=760, sitepkg_code=500)
    assert starved_source_notes(summary) and not starved_source_notes({**summary, "method": "length"})
