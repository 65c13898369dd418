"""Group: cluster sources by what their records look like, so similar sources share a rubric.

A seeded sample of every source is rendered (the same text the teacher sees), embedded with
MiniLM and averaged into one unit vector per source. The source means are clustered on content
(the paper's method; ``grouping.format_weight`` adds the record format as an option) with KMeans;
k is chosen by silhouette (cosine) over ``max(2, k_min)..min(k_max, n-1)`` unless ``grouping.k``
is set. Silhouette cannot score k=1, so a single group is chosen by a rule: with ``k_min <= 1``,
when every pair of sources is at least ``single_group_similarity`` alike and the best silhouette
is below ``weak_silhouette``, the sources are near-identical and share one group. Sources pinned
with ``SourceConfig.group`` skip the clustering and go to their named group. The whole similarity
matrix and the silhouette scores are written to ``groups.json``, so a user can see why k came out
as it did.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mira.artifacts.rubrics import GROUPS
from mira.core.config import ConfigError, RunConfig
from mira.core.hashing import fingerprint as make_fingerprint
from mira.corpus.records import render
from mira.corpus.sources import SourceInfo, index_note, sample_source, source_infos
from mira.rubrics.grouping import (
    AUTO_ID_RE,
    VERSION,
    assign_ids,
    check_pins,
    choose_k,
    group_label,
    mean_pairwise,
    source_means,
    with_format,
)
from mira.run.context import StageContext
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)


def fingerprint(ctx: StageContext) -> str:
    pins = {s.name: s.group for s in ctx.config.sources if s.group}
    sections = ctx.config.section_hash("grouping", "embed", "render", "tokenizer")
    return make_fingerprint(VERSION, sections, pins, ctx.run.require("ingest"))


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.text.embed import embed_texts
    from mira.text.tokens import get_tokenizer

    config, gcfg = ctx.config, ctx.config.grouping
    pins = check_pins(config)
    infos = sorted(source_infos(ctx.run), key=lambda i: i.name)
    empty = [i.name for i in infos if i.ok == 0]
    if empty:
        ctx.notes.append(f"group: {len(empty)} source(s) have no usable record and belong to no group: "
                         + ", ".join(empty))
    usable: list[SourceInfo] = [i for i in infos if i.ok > 0]
    if not usable:
        raise ConfigError("no source has a usable record; check `mira status` and the quarantine files")

    note = index_note(usable, gcfg.seed)
    if note:
        ctx.notes.append(f"group: {note}")
    tokenizer = get_tokenizer(config.tokenizer.name)
    texts: list[str] = []
    owners: list[int] = []
    sampling = ctx.progress("group: sample sources", len(usable))
    for index, info in enumerate(usable):
        for record in sample_source(config, info, gcfg.sample_per_source, gcfg.seed):
            texts.append(render(record, tokenizer, config.render.max_tokens, config.render.windows).text)
            owners.append(index)
        sampling.advance()
    sampling.close()
    embedding = ctx.progress("group: embed records", len(texts))
    vectors = embed_texts(texts, config.embed, on_batch=embedding.advance)
    embedding.close()

    names = [i.name for i in usable]
    means = source_means(vectors, owners, len(names))
    sim = np.clip(means @ means.T, -1.0, 1.0)
    free = [i for i, name in enumerate(names) if name not in pins]
    formats = {i.name: i.format for i in usable}
    features = with_format(means, [formats[n] for n in names], gcfg.format_weight)
    labels, k, chosen_by, k_scores = choose_k(features[free], gcfg.k, gcfg.k_min, gcfg.k_max,
                                              gcfg.merge_similarity, gcfg.seed, gcfg.single_group_similarity,
                                              gcfg.weak_silhouette)
    if not free:
        chosen_by = "pinned"
    source_to_group = assign_ids(labels.tolist(), [names[i] for i in free])
    source_to_group.update({name: pins[name] for name in names if name in pins})

    group_ids = sorted({g for g in source_to_group.values() if AUTO_ID_RE.match(g)}, key=lambda g: int(g[1:]))
    group_ids += sorted({g for g in source_to_group.values() if not AUTO_ID_RE.match(g)})
    groups = []
    for gid in group_ids:
        members = [n for n in names if source_to_group[n] == gid]
        idx = [names.index(n) for n in members]
        rows = [r for r, owner in enumerate(owners) if owner in idx]
        centroid = vectors[rows].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        groups.append({"id": gid, "label": group_label(members, formats), "sources": members,
                       "within_similarity": round(mean_pairwise(sim, idx), 4),
                       "record_similarity": round(float((vectors[rows] @ centroid).mean()), 4),
                       "pinned": gid not in {f"g{i}" for i in range(k)}})
    result = {
        "k": k, "chosen_by": chosen_by, "k_scores": k_scores, "groups": groups,
        "source_to_group": {n: source_to_group[n] for n in names},
        "similarity": {"sources": names, "matrix": [[round(float(v), 4) for v in row] for row in sim]},
        "empty_sources": empty,
        "format_weight": gcfg.format_weight,
        "embed_model": config.embed.model, "sample_per_source": gcfg.sample_per_source,
        "sampled": {name: owners.count(i) for i, name in enumerate(names)},
    }
    GROUPS.save(ctx.run, result)
    log.info("group: %d sources -> %d groups (k=%d by %s)", len(names), len(groups), k, chosen_by)
    counts: dict[str, Any] = {"sources": len(names), "groups": len(groups), "k": k, "records_embedded": len(texts)}
    if str(k) in k_scores:
        counts["silhouette"] = k_scores[str(k)]
    return counts


def plan(config: RunConfig, run: RunDir) -> list[str]:
    pinned = sum(1 for s in config.sources if s.group)
    g = config.grouping
    k = f"k={g.k}" if g.k else (f"k by silhouette over {max(2, g.k_min)}..{g.k_max}"
                                + (" (or 1 if the sources are near-identical)" if g.k_min <= 1 else ""))
    k += ", on content" + (f" + format (weight {g.format_weight})" if g.format_weight > 0 else " only")
    return [f"embed {config.grouping.sample_per_source} records x {len(config.sources)} sources "
            f"with {config.embed.model} (~26 texts/s on 2 cores), {k}, {pinned} pinned source(s); no teacher calls"]
