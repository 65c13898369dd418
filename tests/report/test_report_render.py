import json
import re

import pytest

from mira.artifacts.selection import SelectionCounts
from mira.core.stats import spearman
from mira.report import SECTIONS, render_report, write_report
from mira.report.artifacts import selection_counts
from mira.report.html import clipped_text, esc, fmt_compact
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
    assert "undecidable for lack of labels (n=2, needs &gt;= 4)" in rubrics  # masked cells with their reason
    assert 'data-plot="scores"' in _section(page, "scores")
    retention = _section(page, "retention")
    assert 'data-plot="retention"' in retention and "Counts add up" in retention and "✗" not in retention
    reliability = _section(page, "reliability")
    assert 'title="masked: spearman 0.11 &lt; 0.2"' in reliability and "lightgbm" in reliability
    assert "self-consistency" in reliability
    # Which student each group got and why, and what decided the group (its aggregate, within sources).
    assert "chosen by 5-fold cross-validation on the 21 training rows" in reliability
    assert "within-source Spearman <b>0.41</b>" in reliability and "labels set aside 0.33" in reliability
    assert "5 of 15 cells are undecidable for lack of labels" in reliability  # c_headers: n=2 on 5 anchors
    assert "group cell (*)" in reliability and "within-source" in reliability
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


@pytest.mark.slow
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


def test_selection_counts_follow_the_one_convention_select_writes():
    # Select counts unscored records inside `rejected` (or `kept`): in = kept + rejected + quarantined.
    counts = selection_counts(SelectionCounts(records_in=10, tokens_in=100, kept=4, kept_tokens=40, rejected=5,
                                              quarantined=1, unscored=2))
    assert counts["adds_up"] is True and counts["tokens_kept"] == 40 and counts["unscored"] == 2
    off = SelectionCounts(records_in=10, tokens_in=100, kept=4, kept_tokens=40, rejected=3, quarantined=1)
    assert selection_counts(off)["adds_up"] is False


@pytest.mark.slow
def test_a_summary_in_spellings_no_writer_produces_is_not_guessed_at(tmp_path):
    run = build_fixture_run(tmp_path / "run")
    path = run.path("selection", "mira-group-50pct", "summary.json")
    summary = json.loads(path.read_text())
    for level in ("sources", "groups"):
        for name, entry in summary[level].items():
            summary[level][name] = {"records": {"in": entry["records_in"], "kept": entry["kept"]}}
    path.write_text(json.dumps(summary))
    page, states = render_report(run)
    assert states["retention"] == "empty" and "mira-group-50pct" not in _section(page, "retention")


def test_helpers():
    assert fmt_compact(2_170_505) == "2.2M" and fmt_compact(950) == "950"
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 4], [4, 3, 3, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) != spearman([1, 1, 1], [1, 2, 3])  # NaN: undefined
    long = clipped_text("<b>" + "x" * 2000)
    assert "<b>" not in long and "show more" in long


def _rewrite_scores(run, source, scores, tokens):
    """Replace one source's score shards so that each record's aggregate is `scores(i)`: every
    anchor scores it that (any mean of equal values is that value), with the given token counts."""
    import pyarrow as pa

    from mira.artifacts import CATALOGUE
    from mira.artifacts.scores import anchor_columns
    from mira.run.rundir import RunDir

    shards = CATALOGUE["scores"]
    for keys in shards.instances(RunDir(run), source=source):
        table = shards.load(RunDir(run), **keys)
        n = table.num_rows
        values = pa.array([float(scores(i)) for i in range(n)], pa.float64())
        for anchor in anchor_columns(table.column_names):
            table = table.set_column(table.column_names.index(anchor), anchor, values)
        table = table.set_column(table.column_names.index("tokens"), "tokens",
                                 pa.array([int(tokens(i)) for i in range(n)], pa.int64()))
        table = table.set_column(table.column_names.index("quarantine"), "quarantine", pa.nulls(n, pa.string()))
        shards.save(RunDir(run), table, **keys)


@pytest.mark.slow
def test_report_warns_on_constant_or_length_driven_aggregates_and_never_calls_few_rows_reliable(tmp_path):
    from mira.io.files import atomic_write_json

    run = build_fixture_run(tmp_path / "run").root
    # g0 (code): every record 5.88, like the demo's code group; g1: score = a function of length.
    for source in ("stdlib_code", "sitepkg_code", "c_headers"):
        _rewrite_scores(run, source, lambda i: 5.88, lambda i: 100 + i)
    for source in ("man_pages", "doc_readmes", "fortunes"):
        _rewrite_scores(run, source, lambda i: (i % 97) / 10, lambda i: 50 + 10 * (i % 97))
    # An older mask file: an unmasked cell decided on 2 rows with min_support 3 must not show as reliable.
    mask = json.loads((run / "students" / "g2" / "mask.json").read_text())
    mask.pop("needed_rows")
    mask["thresholds"] = {"min_support": 3}
    for cells in mask["cells"].values():
        for cell in cells.values():
            cell.pop("status", None)
    mask["cells"]["math_qa"]["a00"].update(masked=False, reason=None, n=2)
    metrics = json.loads((run / "students" / "g2" / "metrics.json").read_text())
    metrics["cells"]["math_qa"]["a00"]["n"] = 2
    atomic_write_json(run / "students" / "g2" / "mask.json", mask)
    atomic_write_json(run / "students" / "g2" / "metrics.json", metrics)

    page, _ = render_report(run)
    scores = _section(page, "scores")
    notes = re.findall(r'<div class="box warn"><strong>Group g(\d).*?</div>', scores, re.S)
    warned = re.findall(r'<div class="box warn"><strong>Group (g\d)(.*?)</div>', scores, re.S)
    constant = [g[1:] for g, text in warned if "(near-)constant" in text]
    length = [g[1:] for g, text in warned if "mostly explained by length" in text]
    assert len(notes) == 2
    assert constant == ["0"] and "p10 5.88, p90 5.88" in scores
    assert length == ["1"]
    reliability = _section(page, "reliability")
    g2 = reliability[reliability.index("dialogue"):]
    cell = re.search(r'title="undecidable: undecidable for lack of labels"', g2)
    assert cell and "1 of 12 cells are undecidable for lack of labels" in g2


def test_aggregate_warnings_and_cell_status_rules():
    import numpy as np

    from mira.report.artifacts import aggregate_warnings
    from mira.report.sections_scores import cell_status

    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 5000, 500).astype(float)
    spread = rng.uniform(2, 9, 500)
    assert aggregate_warnings(spread, tokens) == []
    assert "(near-)constant" in aggregate_warnings(np.full(500, 5.88), tokens)[0]
    assert "(near-)constant" in aggregate_warnings(rng.choice([6.0, 6.5, 7.0], 500), tokens)[0]  # 3 values
    assert "length" in aggregate_warnings(np.log(tokens) + rng.normal(0, 0.3, 500), tokens)[0]
    assert aggregate_warnings(np.array([np.nan, 4.0]), np.array([1.0, 2.0])) == []
    assert cell_status({"masked": False, "n": 2, "basis": "source"}, None, 3) == "undecidable"
    assert cell_status({"masked": False, "n": 2, "basis": "*"}, None, 3) == "reliable"  # the group cell decided
    assert cell_status({"masked": False, "status": "reliable", "n": 12}, None, 10) == "reliable"
    assert cell_status({"masked": True, "status": "undecidable", "n": 1}, None, 10) == "undecidable"
    assert cell_status({"masked": True, "reason": "Spearman 0.1 < 0.2", "n": 40}, None, 10) == "unreliable"
    assert cell_status(None, None, 10) == "unknown"


def test_reliability_section_says_how_the_cells_were_validated():
    from mira.report.sections_scores import _how_validated

    assert _how_validated({}) == "held-out validation rows"  # metrics of an older distill
    crossfit = {"validation": "5-fold cross-fitting: each row predicted by a student trained without its fold"}
    assert _how_validated(crossfit).startswith("every label row, out of fold (5-fold cross-fitting")


def test_label_spread_warns_when_targets_barely_vary_or_fell_back():
    from mira.report.sections_scores import label_spread

    html = label_spread({"a00": {"n": 12, "std": 0.04, "modal_share": 0.83, "exact_share": 0.75},
                         "a01": {"n": 12, "std": 1.2, "modal_share": 0.3, "exact_share": 1.0}},
                        {"a00": "Clarity", "a01": "Correctness"})
    assert "std 0.04" in html and "most common answer 83%" in html and "exact expectations 75%" in html
    flat_warning = html.split("nearly constant")[1].split("</div>")[0]
    assert flat_warning.startswith(" on a00 Clarity") and "a01" not in flat_warning
    assert "fell back to the sampled integer" in html and "a00 Clarity (25%)" in html
    assert label_spread({}, {}) == ""
    # demo-full's agent labels: a small spread, exact and consistent, is no reason to warn.
    calm = label_spread({"a01": {"n": 36, "std": 0.27, "modal_share": 0.89, "exact_share": 1.0}}, {})
    assert "box warn" not in calm


def test_stage_counts_show_floats_as_floats(tmp_path):
    # A float count went through an int formatter: `mira status` said silhouette=0.6193, the
    # report's stage table silhouette=1.
    run = build_fixture_run(tmp_path / "run", stages=("ingest", "group"))
    run.mark_done("group", "fp", {"sources": 9, "groups": 4, "silhouette": 0.6193, "records_embedded": 288})
    overview = _section(render_report(run)[0], "overview")
    assert "silhouette=0.6193" in overview and "groups=4" in overview and "records_embedded=288" in overview


def test_the_first_screen_says_what_was_ranked_and_warns_when_most_is_random(tmp_path):
    # The demo's overview showed only "49.9% retained" for a selection that was 99.8% random.
    from mira.artifacts import CATALOGUE
    from tests.report.fixture_run import SELECTION

    run = build_fixture_run(tmp_path / "run")
    overview = _section(render_report(run)[0], "overview")
    assert "ranked by a reliable score" in overview and "Most of this selection is random" not in overview
    summary = CATALOGUE["selection_summary"].load(run, name=SELECTION)
    for counts in [summary.totals, *summary.groups.values()]:  # every usable token unscored, half kept at random
        counts.unscored_tokens = counts.kept_tokens + counts.rejected_tokens
        counts.unscored_kept_tokens = counts.kept_tokens
    CATALOGUE["selection_summary"].save(run, summary, name=SELECTION)
    overview = _section(render_report(run)[0], "overview")
    warning = overview.index("Most of this selection is random.")
    assert warning < overview.index('class="tiles"')  # above everything else on the page
    assert "100.0% of its tokens (groups g0, g1, g2)" in overview and "0.0% of tokens" in overview
    assert overview.count("mostly random") == 3  # the badge of each group's random share
