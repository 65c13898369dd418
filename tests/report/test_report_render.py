import json
import re
import pytest

from mira.report import SECTIONS, render_report, write_report
from mira.report.artifacts import selection_counts
from mira.report.html import clipped_text, esc, fmt_compact, spearman
from tests.report.fixture_run import INJECTION, INJECTION_WHY, build_fixture_run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return build_fixture_run(tmp_path_factory.mktemp("full") / "run")


@pytest.fixture(scope="module")
def full_page(full_run):
    return render_report(full_run)


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}" data-state="(\w+)">(.*?)</section>', page, re.S)
    assert match, f"section {section_id} missing"
    return match.group(1) + "|" + match.group(2)


def test_every_section_is_filled_from_the_fixture(full_page):
    page, states = full_page
    # `mira compare` is optional and was not run on the fixture: only its section waits for it.
    assert states == {s.id: "empty" if s.id == "comparison" else "filled" for s in SECTIONS}
    assert "filled by <code>mira compare</code>" in _section(page, "comparison")
    assert "mira-group-50pct" in _section(page, "selections") and "mira-group-50pct" in _section(page, "retention")
    assert page.count("Stage not run yet") == 1 and "could not be rendered" not in page
    # Each section shows numbers that can only come from the artifacts.
    overview = _section(page, "overview")
    assert "fixture-run" in overview and "2.2M → 1.1M" in overview and "qwen2.5-coder-1.5b" in overview
    assert "49 min 14 s" in overview  # annotate's duration from its done marker
    assert "2,980" in _section(page, "inventory") and "invalid json" in _section(page, "inventory")
    groups = _section(page, "groups")
    assert 'data-plot="similarity"' in groups and 'data-plot="kscores"' in groups and "chosen by silhouette" in groups
    rubrics = _section(page, "rubrics")
    assert rubrics.count('class="card"') == 16 and "Argument validity" in rubrics
    assert "n 2 &lt; min_support 3" in rubrics  # masked cells summary with its reason
    assert 'data-plot="scores"' in _section(page, "scores")
    retention = _section(page, "retention")
    assert 'data-plot="retention"' in retention and "Counts add up" in retention and "✗" not in retention
    reliability = _section(page, "reliability")
    assert 'title="masked: spearman 0.11 &lt; 0.2"' in reliability and "lightgbm" in reliability
    assert "self-consistency" in reliability
    length = _section(page, "length")
    assert 'data-plot="length"' in length and "Spearman ρ" in length
    readtests = _section(page, "readtests")
    assert "Largest student–teacher disagreements" in readtests and "Top by score" in readtests
    assert "validation.parquet" in readtests


def test_record_text_and_rationales_are_escaped(full_page):
    page, _ = full_page
    assert INJECTION not in page and INJECTION_WHY not in page
    assert esc(INJECTION) in page  # shown, as text
    assert esc(INJECTION_WHY) in page
    # The only scripts are ours: one inline block, allowed by a hash in the CSP.
    assert page.count("<script") == 1
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", page)


def test_page_is_self_contained(full_page):
    page, _ = full_page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert "@import" not in page and "url(http" not in page
    assert "<?xml" not in page  # inline SVG, not pasted files


def test_partial_run_shows_not_run_boxes(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group"))
    path, states = write_report(run)
    page = path.read_text()
    assert states["inventory"] == states["groups"] == states["overview"] == "filled"
    for section in ("rubrics", "scores", "retention", "reliability", "length", "readtests"):
        assert states[section] == "empty", section
        assert "Stage not run yet" in _section(page, section)
    assert "<code>mira select</code>" in _section(page, "retention")
    assert "could not be rendered" not in page


def test_empty_run_directory_renders(tmp_path):
    page, states = render_report(tmp_path / "nothing")
    assert states["overview"] == "filled"
    assert all(state == "empty" for name, state in states.items() if name != "overview")
    assert "0 / 8" in page


def test_read_tests_fall_back_to_scores_without_validation_file(tmp_path):
    run = build_fixture_run(tmp_path / "run", with_validation=False)
    page, states = render_report(run)
    readtests = _section(page, "readtests")
    assert states["readtests"] == "filled"
    assert "joined with scores/" in readtests and "Largest student–teacher disagreements" in readtests


def test_broken_artifact_only_breaks_its_section(tmp_path):
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group", "discover"))
    groups = json.loads(run.groups_path.read_text())
    groups["similarity"] = {"sources": ["a"], "matrix": "not a matrix"}
    groups["groups"] = [{"id": "g0", "sources": 3}]  # wrong type
    run.groups_path.write_text(json.dumps(groups))
    page, states = render_report(run)
    assert states["groups"] == "error" and "could not be rendered" in _section(page, "groups")
    assert states["inventory"] == "filled"


def test_selection_counts_accept_both_unscored_conventions():
    inside = selection_counts({"records_in": 10, "kept": 4, "rejected": 5, "quarantined": 1, "unscored": 2,
                               "kept_tokens": 40, "tokens_in": 100})
    assert inside["adds_up"] is True and inside["unscored_separate"] is False and inside["tokens_kept"] == 40
    separate = selection_counts({"records": {"in": 10, "kept": 4, "rejected": 3, "quarantined": 1, "unscored": 2}})
    assert separate["adds_up"] is True and separate["unscored_separate"] is True
    assert selection_counts({"records_in": 10, "kept": 4, "rejected": 3, "quarantined": 1})["adds_up"] is False


def test_helpers():
    assert fmt_compact(2_170_505) == "2.2M" and fmt_compact(950) == "950"
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 4], [4, 3, 3, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # NaN: undefined
    long = clipped_text("<b>" + "x" * 2000)
    assert "<b>" not in long and "show more" in long
