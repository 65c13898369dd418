"""The lines a finished selection adds to the run notes (mira.selection.notes)."""

from mira.selection.notes import empty_budget_notes, starved_source_notes


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
