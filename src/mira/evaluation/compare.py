"""`mira compare`: every selection method side by side at one budget, on the user's own data.

:func:`compare` builds one named selection per ``compare.methods`` entry from the stored scores
(never rescoring: a selection whose fingerprint still matches is reused as it is), then measures
them against each other (:mod:`mira.evaluation.metrics`) and, with ``compare.proxy.enabled``, trains a
small proxy model on each (:mod:`mira.evaluation.training`). It writes ``compare/summary.json`` and
rerenders the report, whose "Comparison" section reads it.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from mira.artifacts.compare import COMPARE_SUMMARY
from mira.core.config import ConfigError, MethodSpec, RunConfig, SelectionConfig
from mira.core.errors import StageNotReady
from mira.core.progress import ProgressFactory, null_progress
from mira.corpus.sources import source_infos
from mira.evaluation.cost import matched_dataman_records, method_costs
from mira.evaluation.naming import SUFFIX, own_names, record_built
from mira.evaluation.overlap import check_overlap, eval_overlap
from mira.evaluation.training import hash_texts
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)

VERSION = "compare-v1"
# Ingest lists at most this many field names per source (mira.stages.ingest.MAX_FIELDS, kept equal by
# a test): past it a field missing from the list may still exist.
LISTED_FIELDS = 500


def method_configs(config: RunConfig, run: RunDir | None = None) -> list[tuple[MethodSpec, RunConfig]]:
    """One run config per compared method: the user's selection settings with that method, its mode
    and the comparison budget; with `run`, also the entries ``compare.ablate`` adds (they read the
    run's masks). Checked up front, so a bad entry fails before any work is done."""
    from mira.evaluation.ablation import ablation_name, ablation_specs, base_name
    from mira.selection.named import selection_name

    # compare.budget (same rule as selection.budget) replaces whichever budget key the selection uses.
    budget_keys = ({"budget": config.compare.budget, "budget_fraction": None, "budget_tokens": None}
                   if config.compare.budget is not None else {})
    specs = list(config.compare.methods) + (ablation_specs(config, run) if run is not None else [])
    out: list[tuple[MethodSpec, RunConfig]] = []
    names: dict[str, int] = {}
    for index, spec in enumerate(specs):
        data = {**config.selection.model_dump(), "method": spec.method, "mode": spec.mode, **budget_keys,
                "name": None}
        where = f"compare.methods[{index}]" if index < len(config.compare.methods) else "compare.ablate"
        try:
            selection = SelectionConfig.model_validate(data)
        except ValidationError as exc:  # an unknown method, or one that lacks its inputs (dsir_target)
            reason = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors()[:2])
            raise ConfigError(f"{where} ({spec.method}): {reason}") from None
        update: dict[str, Any] = {"selection": selection}
        if spec.exclude:  # an ablation: the cells masked on top of reliability.exclude, under its own name
            update["selection"] = selection.model_copy(
                update={"name": ablation_name(base_name(selection), spec.exclude)})
            update["reliability"] = config.reliability.model_copy(
                update={"exclude": [*config.reliability.exclude, *spec.exclude]})
        method_config = config.model_copy(update=update)
        name = selection_name(method_config)
        if name in names:
            raise ConfigError(f"{where} and compare.methods[{names[name]}] are the same selection ({name})")
        names[name] = index
        out.append((spec, method_config))
    return out


def build_selections(config: RunConfig, run: RunDir, progress: ProgressFactory = null_progress
                     ) -> dict[str, dict[str, Any]]:
    """Every compared method's selection (reused when its fingerprint matches); name -> summary."""
    from mira.evaluation.ablation import base_name
    from mira.selection.build import select_corpus, selection_fingerprint
    from mira.selection.named import read_summary, selection_dir, selection_name

    run.require("score")
    methods, budget = prepared_methods(config, run)
    # An ablation is judged against its base under the name the base is built under.
    renamed = {n.removesuffix(SUFFIX): n for n in (selection_name(c) for _, c in methods) if n.endswith(SUFFIX)}
    summaries: dict[str, dict[str, Any]] = {}
    task = progress("compare: selections", len(methods))
    for spec, method_config in methods:
        name = selection_name(method_config)
        summary = read_summary(selection_dir(run, name))
        if summary is None or summary.get("fingerprint") != selection_fingerprint(method_config, run):
            # select_corpus runs the method's own preparation first where it has one (DataMan's
            # teacher labels, the perplexity model), cached and resumable.
            log.info("compare: selecting %s", name)
            select_corpus(method_config, run, progress)
            summary = read_summary(selection_dir(run, name))
            assert summary is not None
            record_built(run, name, summary.get("fingerprint"))
            summary["_built"] = True
        if name.endswith(SUFFIX):  # renamed: its own name holds a selection compare did not build
            summary["_instead_of"] = name.removesuffix(SUFFIX)
        if spec.method == "dataman" and budget is not None:
            summary["_dataman_budget"] = budget
        if spec.exclude:
            base = base_name(method_config.selection)
            summary["_ablation"] = {"of": renamed.get(base, base), "exclude": list(spec.exclude)}
        summaries[name] = summary
        task.advance()
    task.close()
    return summaries


def prepared_methods(config: RunConfig, run: RunDir
                     ) -> tuple[list[tuple[MethodSpec, RunConfig]], dict[str, Any] | None]:
    """The compared methods' configs as they are built: DataMan's label count matched to MIRA's
    teacher budget (``compare.dataman_budget``; returned too, else None), then each under a name of
    compare's own."""
    methods = method_configs(config, run)
    budget = dataman_budget(config, run, methods)
    if budget is not None:
        methods = [(spec, _with_dataman_records(c, budget["records"]) if spec.method == "dataman" else c)
                   for spec, c in methods]
    return own_names(run, methods), budget


def dataman_budget(config: RunConfig, run: RunDir, methods: list[tuple[MethodSpec, RunConfig]]
                   ) -> dict[str, Any] | None:
    """DataMan's label count at MIRA's annotate budget (``compare.dataman_budget: match_mira``), else None."""
    if config.compare.dataman_budget != "match_mira" or not any(spec.method == "dataman" for spec, _ in methods):
        return None
    return matched_dataman_records(config, run)


def _with_dataman_records(config: RunConfig, records: int) -> RunConfig:
    selection = config.selection
    dataman = selection.dataman.model_copy(update={"records": records})
    return config.model_copy(update={"selection": selection.model_copy(update={"dataman": dataman})})


def held_out(config: RunConfig, run: RunDir, eval_sets: dict[str, list[str]],
             progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """How far each eval set overlaps the corpus (``mira.evaluation.overlap``; one corpus pass, reused
    from the last summary while the corpus and the eval texts are the same); refuses a set above 10%."""
    stamp = {"corpus": run.stage_fingerprint("ingest"), "eval_sets": {n: hash_texts(t) for n, t in eval_sets.items()}}
    previous = COMPARE_SUMMARY.read(run)
    stored = previous.eval_overlap if previous is not None else None
    if stored and {k: stored.get(k) for k in stamp} == stamp:
        sets = stored["sets"]
    else:
        task = progress("compare: eval sets against the corpus", 1)
        sets = eval_overlap(config, source_infos(run), eval_sets)
        task.advance()
        task.close()
    for name, entry in sets.items():
        if entry["overlapping"]:
            log.warning("compare: eval set %s: %d of %d records duplicate corpus records", name,
                        entry["overlapping"], entry["records"])
    check_overlap(sets)
    return {**stamp, "sets": sets}


def plan(config: RunConfig) -> list[str]:
    """Dry run: which selections `mira compare` would reuse or build, and the proxy training it would do."""
    from mira.selection.build import selection_fingerprint
    from mira.selection.named import effective_mode, read_summary, selection_dir, selection_name

    run = RunDir(config.resolved_run_dir())
    check_config(config, run)
    lines = []
    scored = True
    try:
        methods, budget = prepared_methods(config, run)
        if budget is not None:
            lines.append(f"compare.dataman_budget match_mira: DataMan labels {budget['records']} records "
                         f"(~{budget['estimated_tokens']:,} teacher tokens; annotate's: {budget['annotate_tokens']:,})")
    except StageNotReady:  # no scores yet: compare.ablate's cells are not known
        scored = False
        methods = method_configs(config)
        lines.append(f"compare.ablate ({config.compare.ablate}): its selections are decided once scores exist")
    for spec, method_config in methods:
        name = selection_name(method_config)
        summary = read_summary(selection_dir(run, name))
        try:
            fresh = summary is not None and summary.get("fingerprint") == selection_fingerprint(method_config, run)
        except StageNotReady:
            fresh = False
        mode = effective_mode(spec.method, spec.mode)
        without = f", without {', '.join(spec.exclude)}" if spec.exclude else ""
        instead = (f"; selection/{name.removesuffix(SUFFIX)} is kept (not compare's, other settings)"
                   if name.endswith(SUFFIX) else "")
        lines.append(f"{name}: {'reuse' if fresh else 'select'} ({spec.method}, {mode}{without}){instead}")
        if spec.method == "dataman" and not fresh:  # the one method that calls the teacher
            from mira.selection.rankings import dataman

            lines.extend(f"  {line}" for line in dataman.plan(method_config, run))
    if config.compare.ablate and scored and not any(spec.exclude for spec, _ in methods):
        lines.append(f"compare.ablate ({config.compare.ablate}): nothing to ablate, MIRA ranks by no cell "
                     "(every cell is masked)")
    proxy = config.compare.proxy
    if proxy.enabled:
        lines.append(f"proxy training: {len(methods)} selections x {proxy.seeds} seeds, {proxy.train_bytes:,} bytes "
                     f"each; eval sets: {', '.join(s.name for s in config.compare.eval_sets) or 'none (required)'}")
    else:
        lines.append("proxy training: off (--set compare.proxy.enabled=true)")
    return lines


def check_config(config: RunConfig, run: RunDir) -> None:
    """Refuse, in one line and before any selection is built, what would compare nothing: an
    excluded cell whose anchor the scores do not have, a known_good/known_bad field no record has."""
    from mira.selection.cells import check_cells, named_cells

    check_cells(run, named_cells(config))
    if config.compare.replicates > 1 and not any(s.method == "mira" and not s.exclude for s in config.compare.methods):
        raise ConfigError(f"compare.replicates {config.compare.replicates}: compare.methods has no MIRA selection to "
                          "judge over annotation draws; add one ({method: mira}) or set compare.replicates: 1")
    for key in ("known_good", "known_bad"):
        field = getattr(config.compare, key)
        if isinstance(field, str):
            check_known_field(run, f"compare.{key}", field)


def check_known_field(run: RunDir, where: str, field: str) -> None:
    """A ConfigError when no usable record of the corpus has `field` (from ingest's field lists);
    nothing is said while ingest has not run or a list may be incomplete."""
    from mira.core.config_base import did_you_mean
    from mira.corpus.sources import source_infos

    if run.done("ingest") is None:
        return
    infos = [info for info in source_infos(run) if info.ok]
    if any(len(info.fields) >= LISTED_FIELDS or not info.fields for info in infos):
        return  # a list cut short, or an older run's inventory without field lists
    fields = {name for info in infos for name in info.fields}
    if field not in fields:
        hint = did_you_mean(field, fields, "fields")
        raise ConfigError(f"{where}: no record of the corpus has a field {field!r}{hint}")


def compare(config: RunConfig, progress: ProgressFactory = null_progress, proxy_api: Any = None) -> dict[str, Any]:
    """Build and compare the selections of ``compare.methods``; writes ``compare/summary.json`` (the
    API's :func:`mira.api.compare` then rerenders the report). `proxy_api` replaces
    :mod:`mira.evaluation.proxy` (tests pass a stand-in trainer)."""
    from mira.evaluation import metrics
    from mira.selection.named import selection_dir

    run = RunDir(config.resolved_run_dir())
    check_config(config, run)
    eval_sets = None
    overlap = None
    if config.compare.proxy.enabled:
        from mira.evaluation.training import read_eval_sets

        eval_sets = read_eval_sets(config)  # a bad eval set fails before any selection is built
        run.require("score")
        overlap = held_out(config, run, eval_sets, progress)
    summaries = build_selections(config, run, progress)
    infos = source_infos(run)
    sources = [i.name for i in infos]
    task = progress("compare: metrics", 1)
    decisions = {name: metrics.load_decisions(selection_dir(run, name), infos) for name in summaries}
    metrics.check_aligned(decisions)
    first = next(iter(summaries.values()))
    result: dict[str, Any] = {
        "version": VERSION, "budget": first.get("budget"), "budget_kind": first.get("budget_kind"),
        "methods": [{"name": name, "method": s.get("method"), "mode": s.get("mode"), "key": s.get("key"),
                     "fingerprint": s.get("fingerprint"), "rebuilt": bool(s.get("_built")),
                     "ablation_of": (s.get("_ablation") or {}).get("of"), "instead_of": s.get("_instead_of"),
                     "exclude": (s.get("_ablation") or {}).get("exclude", [])}
                    for name, s in summaries.items()],
        "retention": {name: metrics.retention(s) for name, s in summaries.items()},
        "source_groups": first.get("source_groups", {}),
        "overlap": metrics.overlap(decisions),
        "length_bias": metrics.length_bias(decisions, sources),
        "rank_agreement": metrics.rank_agreement(decisions),
        "known_good": metrics.known_records(config, infos, decisions, config.compare.known_good),
        "known_bad": metrics.known_records(config, infos, decisions, config.compare.known_bad),
        "proxy": None,
        "suggestion": None,
        "eval_overlap": overlap,
        "replicates": None,  # compare.replicates > 1: mira.pipeline.replicates adds it
    }
    result["teacher_cost"] = method_costs(run, result["methods"])
    result["dataman_budget"] = next((s["_dataman_budget"] for s in summaries.values() if "_dataman_budget" in s),
                                    None)
    task.advance()
    task.close()
    if eval_sets is not None:
        from mira.evaluation.ablation import suggest_exclusions
        from mira.evaluation.training import run_proxy

        result["proxy"] = run_proxy(config, run, infos, summaries, decisions, eval_sets, progress, proxy_api)
        result["suggestion"] = suggest_exclusions(config, result["methods"], result["proxy"]["verdicts"])
    COMPARE_SUMMARY.save(run, result)
    return result


__all__ = ["build_selections", "compare", "method_configs", "plan"]
