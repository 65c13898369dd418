"""Artifacts of `mira compare` and of the baselines' own corpus passes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mira.run.artifact import Artifact
from mira.run.bookkeeping import Document


class ComparedMethod(Document):
    name: str
    method: str | None = None
    mode: str | None = None
    key: str | None = None
    fingerprint: str | None = None
    rebuilt: bool = False
    ablation_of: str | None = None  # compare.ablate: the selection this one is, without `exclude`
    instead_of: str | None = None  # built as <name>-compare: <name> holds a selection compare did not build
    exclude: list[str] = Field(default_factory=list)


class SuggestedCell(Document):
    exclude: list[str]  # the cells its ablation left out
    selection: str  # that ablation
    evidence: list[dict[str, Any]]  # per eval set it was better on: eval_set, diff (bpb), low, high, p


class AblationSuggestion(Document):
    """``mira.evaluation.ablation.suggest_exclusions``: cells better left out (Holm over every ablation test)."""

    tests: int
    alpha: float
    correction: str
    cells: list[SuggestedCell] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)  # reliability.exclude to try; empty: nothing new to exclude


class CompareSummary(Document):
    """``compare/summary.json`` (``mira.evaluation.compare.compare``); the metric blocks are documented in
    docs/architecture.md ("mira compare")."""

    version: str | None = None
    budget: float | None = None
    budget_kind: str | None = None
    methods: list[ComparedMethod]
    retention: dict[str, Any] = Field(default_factory=dict)
    source_groups: dict[str, str | None] = Field(default_factory=dict)
    overlap: dict[str, Any] = Field(default_factory=dict)
    length_bias: dict[str, Any] = Field(default_factory=dict)
    rank_agreement: dict[str, Any] = Field(default_factory=dict)
    known_good: dict[str, Any] | None = None
    known_bad: dict[str, Any] | None = None
    proxy: dict[str, Any] | None = None  # null when proxy training is off
    suggestion: AblationSuggestion | None = None  # null without proxy-judged ablations
    # name -> {stages, requests, cache_hits, answered, prompt_tokens, completion_tokens, seconds}
    # (mira.evaluation.cost); null in summaries written before it
    teacher_cost: dict[str, Any] | None = None
    # compare.dataman_budget match_mira: {records, annotate_tokens, tokens_per_request, estimated_tokens}
    dataman_budget: dict[str, Any] | None = None
    # proxy training on: {corpus (ingest fingerprint), eval_sets {name: text hash}, sets {name: {records,
    # exact, normalised, near, overlapping, share, examples}}} (mira.evaluation.overlap); else null
    eval_overlap: dict[str, Any] | None = None
    # compare.replicates > 1: {version, count, pooling, mira, random, draws [{draw, annotation_seed, folder,
    # labels, teacher_cost}], selections {name: {draws [...], pooled}}, verdicts [{a, b, eval_set, draws,
    # pooled}] or null without proxy} (mira.pipeline.replicates, mira.evaluation.replicates); else null
    replicates: dict[str, Any] | None = None


class ComparedSelections(Document):
    """``compare/selections.json`` (``mira.evaluation.naming``): the selections `mira compare` built,
    name -> the fingerprint it built them with; compare rebuilds only these, never one of `mira select`'s."""

    built: dict[str, str] = Field(default_factory=dict)


class ProxyRecord(Document):
    """One stored proxy-training result with the stamps it is reused under."""

    version: str
    selection: str
    selection_fingerprint: str | None = None
    seed: int
    eval_sets: dict[str, str] = Field(default_factory=dict)  # name -> sha256 of its texts
    result: dict[str, Any]  # a mira.evaluation.proxy.ProxyResult: parse with proxy_result() (importing it is not cheap)

    def proxy_result(self) -> Any:
        from mira.artifacts.proxy import ProxyResult

        return ProxyResult.model_validate(self.result)


COMPARE_SUMMARY = Artifact(
    "compare_summary", "compare/summary.json", "compare", "methods, retention, overlap, length bias, rank "
    "agreement, known records, proxy", model=CompareSummary)
COMPARE_SELECTIONS = Artifact(
    "compare_selections", "compare/selections.json", "compare", "the selections compare built (name -> "
    "fingerprint): it rebuilds only its own", model=ComparedSelections)
PROXY_RESULT = Artifact(
    "proxy_result", "compare/proxy/{selection}/seed{seed}.json", "compare", "one proxy-training result "
    "(resumable), see below", model=ProxyRecord)
PROXY_PLOT = Artifact(
    "proxy_plot", "compare/proxy.png", "compare", "bits per byte of each selection's proxy model per eval set "
    "(the report embeds it)", kind="opaque", owner="mira.evaluation.training")
REPLICATE = Artifact(
    "replicate", "compare/replicates/r{draw}/", "compare (`compare.replicates` > 1)", "one annotation draw of MIRA's "
    "chain (`annotation.seed + draw`): a run directory of its own with `labels/`, `students/`, `scores/`, "
    "`selection/<MIRA selection>/`, `compare/proxy/`, `usage/annotate.json`, `_done/`; the run's inventory, "
    "quarantine, groups, judgments, rubrics and their done markers are relative links, the teacher cache is the "
    "run's", kind="opaque", owner="mira.pipeline.replicates")
PERPLEXITY = Artifact(
    "perplexity", "baselines/perplexity/", "select (`method: perplexity`)", "reference n-gram model(s) + "
    "`reference.json`, `scores/<source>/<shard>.parquet` (`id, bits_per_token, tokens`) + `.done.json`",
    kind="opaque", owner="mira.selection.rankings.perplexity")
DATAMAN = Artifact(
    "dataman", "baselines/dataman/", "select (`method: dataman`) / `prepare_dataman`", "a mini run dir: "
    "`rubrics/dataman.jsonl`, `labels/dataman.parquet`, `students/dataman/`, `scores/<source>/<shard>.parquet`, "
    "`_done/{labels,dataman}.json`", kind="opaque", owner="mira.selection.rankings.dataman")
