"""Select: keep the best records under a token budget, source-aware, from the stored scores.

Selection is a cheap join + threshold over ``scores/`` (never a model call), so a new budget is
seconds of work and never touches the scores. Retention modes (``selection.mode``):

- ``group`` (MIRA-Group, default): within each group keep the best records up to the group's
  share of the budget;
- ``source`` (MIRA-Source): one cutoff per source;
- ``global`` (MIRA-Global): one cutoff over everything.

The budget (``SelectionConfig.budget_share``: a token fraction or count) is shared among the
units (groups / sources / everything) in proportion to their tokens. Per-source ``floor`` and
``cap`` fractions are applied inside every unit: a source's best records up to its floor are
kept first; records past its cap are rejected whatever their score. They bound what the source
keeps whatever ranks its records: its unscored records' random share (below) is held between
floor and cap too, and a floor that cannot be met is logged. Within a unit records are
taken best first (key descending, then a seeded hash of the id) while the kept tokens stay
closest to the unit's budget, so a unit misses its budget by less than one record. A unit's
budget counts all its usable tokens, unscored ones included. Unscored records (every anchor of
their source masked as unreliable) are handled by ``selection.unscored``: ``random`` (default)
keeps the budget's fraction of each such source by a seeded random draw — the source-preserving
random baseline — and the scored records share the rest; ``reject`` drops them, so their share is
filled by the scored sources of the unit. A unit with too few eligible records keeps them all and
reports the shortfall in ``units``.

Baselines (``selection.method``) only change the ranking; see :mod:`mira.selection.rankings`.

Outputs go to the named selection ``selection/<name>/`` (see :mod:`mira.selection.named`; other
selections are never touched): ``<source>/<shard>.jsonl`` (and/or ``.parquet``): kept records,
original fields plus ``mira_id``, ``mira_score``, ``mira_group``, ``mira_tokens``, ``mira_<anchor>``;
``_decisions/<source>/<shard>.parquet``: one row per input record (id, locator, kept, reason, rank
within its unit, key, tokens) so the report can explain every decision; ``summary.json``: per
source and per group records/tokens in, kept, rejected, quarantined (checked to add up before
writing), plus name, fingerprint, mode, method, budget and cutoffs. The whole selection is built
in ``selection/.<name>.partial/`` and swapped in at the end; with ``selection.output`` it is then
published to ``<output>/<name>/`` (a folder or an s3:// URL; summary.json last, see :mod:`mira.selection.publish`).

Outputs are strict: JSONL never holds NaN/Infinity (written as null), and a field whose types
conflict across records (a list here, a string there) becomes a JSON-encoded string column in the
Parquet output, listed under ``parquet_json_columns`` in the summary. Each shard's input is
fingerprinted while it is read and compared with the fingerprint score recorded, so an input
edited since scoring stops the selection instead of pairing new text with old scores.
"""

from __future__ import annotations

from typing import Any

from mira.artifacts.scores import SCORES_SUMMARY
from mira.core.config import RunConfig
from mira.io.storage import shown
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.scoring.table import ScoreTable, load_score_table  # noqa: F401 - re-exported (their old home)
from mira.selection.build import decision_plan, is_selection_file, select_corpus, selection_fingerprint
from mira.selection.cells import check_cells
from mira.selection.decide import Decisions, decide  # noqa: F401 - decide re-exported
from mira.selection.named import CURRENT, ROOT, SUMMARY, selection_dir, selection_name, set_current
from mira.selection.publish import check_output, publication_url, publish_selection
from mira.selection.rankings import ranking_plan, retention_mode


def fingerprint(ctx: StageContext) -> str:
    return selection_fingerprint(ctx.config, ctx.run)


def plan(config: RunConfig, run: RunDir) -> list[str]:
    sel = config.selection
    lines = [f"method: {sel.method}, mode: {retention_mode(config)}, budget: {sel.budget_label()}, "
             f"outputs: {', '.join(sel.output_formats)}"]
    method_lines = ranking_plan(config, run)  # what a method's own corpus pass will cost
    summary = SCORES_SUMMARY.read(run)
    if summary is not None:
        sources = summary.sources.values()
        lines.append(f"reads scores of {sum(s.records for s in sources):,} records "
                     f"({sum(s.tokens for s in sources):,} tokens)"
                     + ("" if method_lines else "; no model is run"))
        lines.append(decision_plan(config, sum(s.records for s in sources)))
    else:
        lines.append("scores not computed yet (run `mira score` first)")
    lines.append(f"writes selection/{selection_name(config)}/ (other selections are kept)")
    if sel.output:
        lines.append(f"publishes it to {shown(publication_url(sel.output, selection_name(config)))}/ "
                     "(summary.json written last)")
    return lines + method_lines


def check(ctx: StageContext) -> None:
    """What can be refused before the runner writes anything (config.yaml, the cleared done marker)."""
    check_cells(ctx.run, [("reliability.exclude", ctx.config.reliability.exclude)])
    output = ctx.config.selection.output
    if output:
        check_output(output, ctx.config.storage)  # a wrong bucket fails before any work


def outputs(ctx: StageContext) -> list[str]:
    """What the done marker vouches for: without them select is not done (a deleted selection is rebuilt)."""
    return [f"{ROOT}/{selection_name(ctx.config)}/{SUMMARY}", f"{ROOT}/{CURRENT}"]


def run(ctx: StageContext) -> dict[str, Any]:
    output = ctx.config.selection.output
    counts = select_corpus(ctx.config, ctx.run, ctx.progress, ctx.notes)  # notes: shown once, by the caller
    # The selection `mira select` wrote last is the one the report shows (mira compare's are not).
    name = selection_name(ctx.config)
    set_current(ctx.run, name)
    if output:
        # Published after the local selection is complete, so a failed upload loses nothing built.
        url = publish_selection(selection_dir(ctx.run, name), output, name, ctx.config.storage, is_selection_file)
        counts["published_to"] = shown(url)
    return counts
