"""`mira compare --replicates N`: MIRA's chain on N annotation draws, judged per draw and pooled.

Draw 0 is the run as it is (its labels, students, scores and the MIRA selections compare built).
Draw r (1..N-1) samples the records to label with ``annotation.seed + r`` and runs the annotate,
distill and score stages (the runner's own, with their done markers and fingerprints) and the MIRA
selections of ``compare.methods`` in ``compare/replicates/r<r>/``, a :class:`mira.run.linked.LinkedRun`
that reads the run's inventory, groups and rubrics through links and shares its teacher cache: a
record labelled by the run or by an earlier draw is answered from the cache, never paid twice.
Group, discover and rubrics are the run's (never redone); the run's own labels, students, scores
and selections are never written. The methods that do not depend on the draw (random, perplexity,
DataMan, ...) are built once, by compare. Every step is skipped when done, so a killed compare
resumes where it stopped and a finished draw costs nothing on a rerun.

:func:`run_replicates` adds the ``replicates`` block to the comparison (the statistics are
:mod:`mira.evaluation.replicates`); :func:`plan` is its dry run, with the teacher requests the draws
would need (cached vs new).
"""

from __future__ import annotations

import logging
from typing import Any

from mira.artifacts.compare import COMPARE_SUMMARY
from mira.core.config import MethodSpec, RunConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.corpus.sources import source_infos
from mira.evaluation import metrics
from mira.evaluation.compare import prepared_methods
from mira.evaluation.cost import stage_cost
from mira.evaluation.replicates import POOLING, VERSION, proxy_verdicts, selection_metrics
from mira.evaluation.training import proxy_api as default_api
from mira.evaluation.training import read_eval_sets, train_results
from mira.pipeline.runner import run_stage
from mira.run.context import StageContext
from mira.run.linked import LinkedRun
from mira.run.rundir import RunDir
from mira.selection.build import select_corpus, selection_fingerprint
from mira.selection.named import read_summary, selection_dir, selection_name
from mira.stages.annotate_plan import annotate_requests
from mira.teacher import estimate
from mira.teacher.cache import TeacherCache
from mira.teacher.speed import teacher_estimate
from mira.teacher.teacher import request_key

log = logging.getLogger(__name__)

CHAIN = ("annotate", "distill", "score")  # then the MIRA selections


def replicate_run(run: RunDir, draw: int) -> LinkedRun:
    """Draw `draw`'s run directory, ``compare/replicates/r<draw>/`` (nothing is created)."""
    return LinkedRun(run.path("compare", "replicates", f"r{draw}"), parent=run.root)


def replicate_config(config: RunConfig, run: RunDir, draw: int) -> RunConfig:
    """The run's config for draw `draw`: ``annotation.seed + draw``, its own run directory."""
    annotation = config.annotation.model_copy(update={"seed": config.annotation.seed + draw})
    return config.model_copy(update={"annotation": annotation, "run_dir": str(replicate_run(run, draw).root)})


def mira_methods(config: RunConfig, run: RunDir) -> list[tuple[MethodSpec, RunConfig]]:
    """The MIRA selections of ``compare.methods`` as compare builds them (its names; no ablations:
    they are judged against their base within one draw, see compare.ablate)."""
    methods, _ = prepared_methods(config, run)
    return [(spec, c) for spec, c in methods if spec.method == "mira" and not spec.exclude]


def add_replicates(config: RunConfig, result: dict[str, Any], progress: ProgressFactory = null_progress,
                   proxy_api: Any = None) -> None:
    """With ``compare.replicates`` > 1, run the draws and save the comparison again with its
    ``replicates`` block (in place; compare saved it without, so a killed draw loses nothing)."""
    block = run_replicates(config, result, progress, proxy_api)
    if block is not None:
        result["replicates"] = block
        COMPARE_SUMMARY.save(RunDir(config.resolved_run_dir()), result)


def run_replicates(config: RunConfig, result: dict[str, Any], progress: ProgressFactory = null_progress,
                   proxy_api: Any = None) -> dict[str, Any] | None:
    """Run every draw's chain (each step skipped when done) and judge the MIRA selections per draw and
    pooled; returns the summary's ``replicates`` block (None for ``compare.replicates: 1``).
    `result` is the comparison compare just made (draw 0's selections and proxy results)."""
    count = config.compare.replicates
    if count <= 1:
        return None
    run = RunDir(config.resolved_run_dir())
    mira = mira_methods(config, run)
    names = [selection_name(c) for _, c in mira]
    infos = source_infos(run)
    random_names = [m["name"] for m in result["methods"] if m["method"] == "random"]
    random_decisions = (metrics.load_decisions(selection_dir(run, random_names[0]), infos) if random_names
                        else None)
    draws: list[dict[str, Any]] = [{"draw": 0, "seed": config.annotation.seed, "folder": None, "run": run,
              "summaries": {n: read_summary(selection_dir(run, n)) for n in names},
              "random_decisions": random_decisions}]
    task = progress("compare: annotation draws", count - 1)
    for draw in range(1, count):
        draws.append(run_draw(config, run, draw, mira, progress))
        task.advance()
    task.close()
    for d in draws:
        d["decisions"] = {n: metrics.load_decisions(selection_dir(d["run"], n), infos) for n in names}
    block: dict[str, Any] = {
        "version": VERSION, "count": count, "pooling": POOLING, "mira": names,
        "random": random_names[0] if random_names else None,
        "draws": [{"draw": d["draw"], "annotation_seed": d["seed"], "folder": d["folder"],
                   "labels": ((d["run"].done("annotate") or {}).get("counts") or {}).get("labels"),
                   "teacher_cost": stage_cost(d["run"], "annotate")} for d in draws],
        "selections": selection_metrics(config, infos, names, random_names[0] if random_names else None, draws),
        "verdicts": None}
    proxy = result.get("proxy")
    if proxy is not None and random_names:
        block["verdicts"] = _proxy(config, result, draws, names, random_names, infos, progress, proxy_api)
    return block


def run_draw(config: RunConfig, run: RunDir, draw: int, mira: list[tuple[MethodSpec, RunConfig]],
             progress: ProgressFactory = null_progress) -> dict[str, Any]:
    """Annotate, distill, score and select draw `draw` (each skipped when done)."""
    rep = replicate_run(run, draw)
    rep.link()
    rep_config = replicate_config(config, run, draw)
    for stage in CHAIN:
        outcome = run_stage(stage, StageContext(rep_config, rep, progress=progress))
        for note in outcome.notes:
            log.info("draw r%d: %s", draw, note)
        if not outcome.skipped:
            log.info("draw r%d: %s done in %.0f s", draw, stage, outcome.seconds)
    summaries = {}
    for _, method_config in mira:
        selection_config = method_config.model_copy(update={"annotation": rep_config.annotation,
                                                            "run_dir": rep_config.run_dir})
        name = selection_name(selection_config)
        summary = read_summary(selection_dir(rep, name))
        if summary is None or summary.get("fingerprint") != selection_fingerprint(selection_config, rep):
            log.info("draw r%d: selecting %s", draw, name)
            select_corpus(selection_config, rep, progress)
            summary = read_summary(selection_dir(rep, name))
        summaries[name] = summary
    return {"draw": draw, "seed": rep_config.annotation.seed, "run": rep, "summaries": summaries,
            "folder": rep.root.relative_to(run.root).as_posix(), "config": rep_config}


def _proxy(config: RunConfig, result: dict[str, Any], draws: list[dict[str, Any]], names: list[str],
           random_names: list[str], infos: list[Any], progress: ProgressFactory, proxy_api: Any
           ) -> list[dict[str, Any]]:
    """Train (or reuse) each draw's MIRA selections on the proxy seeds; verdicts per draw and pooled."""
    api = proxy_api or default_api()
    table = result["proxy"]["table"]
    eval_names = list(result["proxy"]["eval_sets"])
    first = {n: {e: table[n][e]["bpb"]["values"] for e in eval_names} for n in [*names, *random_names]}
    values = [first]
    eval_sets = read_eval_sets(config)
    for d in draws[1:]:
        results, _, counts = train_results(d["config"], d["run"], infos, d["summaries"], d["decisions"], eval_sets,
                                           progress, api)
        log.info("draw r%d: proxy runs %s", d["draw"], ", ".join(f"{k} {v}" for k, v in counts.items()))
        values.append({n: {e: [r.eval[e].bpb for r in results[n]] for e in eval_names} for n in names}
                      | {b: first[b] for b in random_names})
    return proxy_verdicts(api, names, random_names, eval_names, values)


def plan(config: RunConfig) -> list[str]:
    """Dry run of the draws: the teacher requests each needs (in the cache, asked by an earlier draw,
    new), with the time the new ones take, and the work after them."""
    count = config.compare.replicates
    if count <= 1:
        return []
    run = RunDir(config.resolved_run_dir())
    seed = config.annotation.seed
    try:
        selections = len(mira_methods(config, run))
    except Exception:  # noqa: BLE001 - before score the names are not final; the count is the config's
        selections = sum(s.method == "mira" and not s.exclude for s in config.compare.methods)
    lines = [f"annotation draws: {count} (r0: the run's own labels; r1..r{count - 1}: annotation.seed "
             f"{seed + 1}..{seed + count - 1} in compare/replicates/): annotate, distill, score and "
             f"{selections} MIRA selection(s) each"]
    if not run.done("group") or not run.done("discover"):
        return lines + ["  their teacher requests are known once group and discover have run"]
    lines += _teacher_lines(config, run, count)
    proxy = config.compare.proxy
    if proxy.enabled:
        lines.append(f"  proxy training for the draws: {count - 1} x {selections} selections x {proxy.seeds} seeds")
    return lines


def _teacher_lines(config: RunConfig, run: RunDir, count: int) -> list[str]:
    per_draw: list[dict[str, Any]] = []
    for draw in range(1, count):
        requests = annotate_requests(replicate_config(config, run, draw), run)  # the run's inputs: the same
        per_draw.append({request_key(config.teacher, r): r for r in requests})
    cached: set[str] = set()
    if run.teacher_cache_path.exists():
        cache = TeacherCache(run.teacher_cache_path)
        try:
            cached = cache.has([k for keys in per_draw for k in keys])
        finally:
            cache.close()
    lines: list[str] = []
    seen: set[str] = set()
    new_requests: list[Any] = []
    for draw, keyed in enumerate(per_draw, start=1):
        in_cache = sum(k in cached for k in keyed)
        earlier = sum(k in seen and k not in cached for k in keyed)
        new = [r for k, r in keyed.items() if k not in cached and k not in seen]
        seen |= set(keyed)
        new_requests += new
        lines.append(f"  r{draw}: {len(keyed)} annotate requests: {in_cache} in the teacher cache, "
                     f"{earlier} asked by an earlier draw, {len(new)} new")
    work = estimate(config.teacher, run, new_requests)
    when = teacher_estimate(config, run, "annotate", work)
    time = f"about {when.seconds / 60:.0f} min" if when.seconds is not None else "time unknown"
    lines.append(f"  draws: {len(new_requests)} new teacher requests, {time} ({when.basis})")
    return lines
