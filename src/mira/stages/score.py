"""Score: every record of the corpus gets its group's per-anchor student scores.

For each shard of each source (from ``inventory.json``) records are streamed, rendered exactly
as the students saw them in training (``config.render``) and predicted in batches of
``engine.batch_size``. Token counts (and the window spans of long records) come from ingest
(:mod:`mira.corpus.shard_tokens`), so scoring tokenizes almost nothing; the output is the same bytes as
with counting. The result is ``scores/<source>/<shard>.parquet``: one row per *input* record, in
input order, quarantined records included (NaN anchors, 0 tokens, the reason). The reliability
mask and the aggregate are applied later, at join time (:mod:`mira.scoring.table`), so changing a
threshold or the aggregator re-selects without scoring again. Later stages join scores to the data
by position and every record is accounted for. The shard's done marker holds a digest of the
input bytes scored (``input_digest``), which select checks before joining.

The shard is the unit of work and of recovery: its Parquet file is written to a temporary name
and renamed, then ``<shard>.done.json`` (stage fingerprint + counts) is written last. A rerun
skips shards whose marker holds the current fingerprint. Writing is deterministic (fixed schema,
no timestamps, fixed row-group size independent of the batch size or engine), so a killed and
resumed run ends with the same bytes as an uninterrupted one.

:func:`score_shard` is a pure function of (config, run directory, shard) usable by any engine;
students are loaded once per worker process and cached.
"""

from __future__ import annotations

from typing import Any

from mira.core.config import RunConfig
from mira.corpus.sources import source_infos
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.scoring.corpus_scores import require_students, score_corpus, scores_fingerprint, shard_done, try_fingerprint


def fingerprint(ctx: StageContext) -> str:
    return scores_fingerprint(ctx.config, ctx.run)


def run(ctx: StageContext) -> dict[str, Any]:
    require_students(ctx.run)
    return score_corpus(ctx.config, ctx.run, force=ctx.force, progress=ctx.progress)


def plan(config: RunConfig, run: RunDir) -> list[str]:
    from mira.engines import worker_count

    try:
        infos = source_infos(run)
    except Exception as exc:  # noqa: BLE001 - a plan reports what it can
        return [f"cannot plan yet: {exc}"]
    shards = [s for info in infos for s in info.shards]
    stage_fp = try_fingerprint(config, run)
    done = sum(1 for s in shards if stage_fp and shard_done(run, s, stage_fp))
    records = sum(info.records for info in infos)
    lines = [f"records: {records:,} in {len(shards)} shards of {len(infos)} sources ({done} shards done already)",
             f"engine: {config.engine.kind}, workers: {worker_count(config.engine, max(1, len(shards) - done))}, "
             f"batch size: {config.engine.batch_size}"]
    if stage_fp is None:
        lines.append("upstream stages (group, distill) not finished: scores cannot be computed yet")
    return lines
