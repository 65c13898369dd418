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
import re
from collections import Counter
from typing import Any

import numpy as np

from mira.artifacts.rubrics import GROUPS
from mira.core.config import ConfigError, RunConfig
from mira.core.hashing import fingerprint as make_fingerprint
from mira.corpus.records import render
from mira.corpus.sources import SourceInfo, index_note, sample_source, source_infos
from mira.run.context import StageContext
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)
VERSION = "group-v2"  # v2: content-only default, k=1 for near-identical sources
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
AUTO_ID_RE = re.compile(r"^g\d+$")


def fingerprint(ctx: StageContext) -> str:
    pins = {s.name: s.group for s in ctx.config.sources if s.group}
    sections = ctx.config.section_hash("grouping", "embed", "render", "tokenizer")
    return make_fingerprint(VERSION, sections, pins, ctx.run.require("ingest"))


# --- pure helpers (no I/O; tested directly) --------------------------------------------------------

def source_means(vectors: np.ndarray, owners: list[int], n_sources: int) -> np.ndarray:
    """Unit-normalised mean embedding per source; `owners[i]` is the source index of row i."""
    means = np.zeros((n_sources, vectors.shape[1]), dtype=np.float64)
    counts = np.zeros(n_sources)
    for row, owner in zip(vectors, owners, strict=True):
        means[owner] += row
        counts[owner] += 1
    means /= np.maximum(counts, 1)[:, None]
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def with_format(means: np.ndarray, formats: list[str], weight: float) -> np.ndarray:
    """Append a scaled one-hot of each source's record format, then renormalise.

    An option (``grouping.format_weight``, default 0: content only, as in the paper). Content
    embeddings alone group by *topic*: on the demo corpus Python code lands with Python prose docs
    and C headers with man pages. Where formats must not share a rubric (a trace, a tool call, a
    file), a weight makes the format part of the grouping signal: same-format sources move to
    (cos + w^2) / (1 + w^2), others to cos / (1 + w^2). Too strong, it groups by format alone
    (w=1.5: 5 content clusters x 3 formats come out as the 3 formats).
    """
    if weight <= 0:
        return means
    kinds = sorted(set(formats))
    onehot = np.zeros((len(formats), len(kinds)))
    for row, fmt in enumerate(formats):
        onehot[row, kinds.index(fmt)] = weight
    joined = np.hstack([means, onehot])
    return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)


def choose_k(means: np.ndarray, k: int | None, k_min: int, k_max: int, merge_similarity: float,
             seed: int, single_group_similarity: float = 1.0,
             weak_silhouette: float = -1.0) -> tuple[np.ndarray, int, str, dict[str, float]]:
    """Cluster `means` (one row per source): (labels, k, chosen_by, silhouette score per tried k).

    ``chosen_by`` is ``near-identical`` when the single-group rule (module docstring) applied.
    """
    n = len(means)
    if n == 0:
        return np.zeros(0, dtype=int), 0, "none", {}
    if k is not None:
        if k > n:
            raise ConfigError(f"grouping.k={k} but only {n} source(s) are clustered; "
                              f"set grouping.k <= {n} or leave it unset")
        return _kmeans(means, k, seed), k, "config", {}
    lo, hi = max(2, k_min), min(k_max, n - 1)
    if lo > hi:
        # Silhouette needs 2 <= k <= n-1, so with one or two sources it cannot choose: keep them
        # together when they look alike, apart otherwise.
        if n == 1:
            return np.zeros(1, dtype=int), 1, "single source", {}
        if n == 2:
            together = float(means[0] @ means[1]) >= merge_similarity
            labels = np.array([0, 0] if together else [0, 1])
            return labels, len(set(labels.tolist())), "similarity", {}
        k_forced = min(max(k_min, 1), n)
        return _kmeans(means, k_forced, seed), k_forced, "k_min", {}
    from sklearn.metrics import silhouette_score

    scores: dict[str, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    for candidate in range(lo, hi + 1):
        labels = _kmeans(means, candidate, seed)
        if len(set(labels.tolist())) < 2:  # identical sources: KMeans found fewer clusters
            score = -1.0
        else:
            score = float(silhouette_score(means, labels, metric="cosine"))
        scores[str(candidate)] = round(score, 4)
        # Strictly better only: ties go to the smaller k (fewer rubrics to discover).
        if best is None or score > best[0] + 1e-9:
            best = (score, candidate, labels)
    assert best is not None
    if k_min <= 1 and best[0] < weak_silhouette:
        sim = means @ means.T
        if float(sim[np.triu_indices(n, 1)].min()) >= single_group_similarity:
            return np.zeros(n, dtype=int), 1, "near-identical", scores
    return best[2], best[1], "silhouette", scores


def _kmeans(means: np.ndarray, k: int, seed: int) -> np.ndarray:
    if k == 1:
        return np.zeros(len(means), dtype=int)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(means).astype(int)


def mean_pairwise(sim: np.ndarray, idx: list[int]) -> float:
    if len(idx) < 2:
        return 1.0
    block = sim[np.ix_(idx, idx)]
    return float((block.sum() - np.trace(block)) / (len(idx) * (len(idx) - 1)))


def group_label(sources: list[str], formats: dict[str, str]) -> str:
    kinds = Counter(formats.get(s, "?") for s in sources)
    kind = "+".join(sorted(kinds, key=lambda f: (-kinds[f], f)))
    shown = ", ".join(sources[:4]) + (f" (+{len(sources) - 4})" if len(sources) > 4 else "")
    return f"{kind}: {shown}"


def assign_ids(labels: list[int], names: list[str]) -> dict[str, str]:
    """Source -> "g<i>", numbering clusters by their first source name (stable across reruns)."""
    members: dict[int, list[str]] = {}
    for label, name in zip(labels, names, strict=True):
        members.setdefault(label, []).append(name)
    ordered = sorted(members.values(), key=lambda m: min(m))
    return {name: f"g{i}" for i, m in enumerate(ordered) for name in m}


# --- the stage --------------------------------------------------------------------------------------

def _check_pins(config: RunConfig) -> dict[str, str]:
    pins = {s.name: s.group for s in config.sources if s.group}
    for source, name in pins.items():
        if not GROUP_NAME_RE.match(name):
            raise ConfigError(f"source {source!r}: group name {name!r} must be letters, digits, '_', '.' or '-'")
        if AUTO_ID_RE.match(name):
            raise ConfigError(f"source {source!r}: group name {name!r} clashes with automatic group ids "
                              "(g0, g1, ...); choose another name")
    return pins


def run(ctx: StageContext) -> dict[str, Any]:
    from mira.text.embed import embed_texts
    from mira.text.tokens import get_tokenizer

    config, gcfg = ctx.config, ctx.config.grouping
    pins = _check_pins(config)
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
