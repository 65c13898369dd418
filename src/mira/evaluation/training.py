"""Proxy training for `mira compare`: does a selection help a small model learn?

For each selection and seed, :func:`mira.evaluation.proxy.train_proxy` trains a small model from scratch on
``compare.proxy.train_bytes`` bytes drawn (seeded) from the selection's kept records and evaluates
it on every ``compare.eval_sets`` entry. Each (selection, seed) result is its own artifact,
``compare/proxy/<selection>/seed<k>.json``, holding what it was built from (a digest of the kept
records with the corpus's ingest fingerprint, a hash of the eval texts, the proxy settings): a
rerun reuses every result that still matches and trains only the missing or stale ones, so an
interrupted comparison resumes. The key is the kept records, not the selection's fingerprint: a
setting that changes every selection's fingerprint but not what random or perplexity keep (a
reliability option, say) does not train them again. (Results stored before this key are still
matched by their selection fingerprint.)

Selections that keep exactly the same records (MIRA with every cell masked falls back to the
same source-preserving random share as the random baseline) train the same bytes, so a seed's
result is computed once and shared; the summary's ``identical`` names them, and the report says so.

Texts are the records' full renderings (the same renderer as the teacher and the students, without
the windowing), so a selection's text and an eval set's text look alike.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import ConfigError, RunConfig, SourceConfig
from mira.core.progress import ProgressFactory, null_progress
from mira.corpus.records import Record, full_text
from mira.corpus.sources import SourceInfo, iter_shard_records
from mira.evaluation.metrics import Decisions
from mira.evaluation.proxy.verdict import holm
from mira.io.files import atomic_write_text, read_json
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)

VERSION = "proxy-run-v1"
BASELINE = "random"  # every method is judged against source-preserving random at least


def proxy_api() -> Any:
    """The proxy trainer (:mod:`mira.evaluation.proxy`: ``train_proxy``, ``verdict``, ``ProxyResult``)."""
    import mira.evaluation.proxy

    return mira.evaluation.proxy


def result_path(run: RunDir, selection: str, seed: int) -> Path:
    return run.path("compare", "proxy", selection, f"seed{seed}.json")


def run_proxy(config: RunConfig, run: RunDir, infos: list[SourceInfo], selections: dict[str, dict[str, Any]],
              decisions: dict[str, Decisions], eval_sets: dict[str, list[str]],
              progress: ProgressFactory = null_progress, api: Any = None) -> dict[str, Any]:
    """Train (or reuse) every (selection, seed) result; return the table, the verdicts and the plot path.

    `selections` maps a selection name to its summary (method, fingerprint); `eval_sets` are the
    texts of :func:`read_eval_sets`; `api` replaces :mod:`mira.evaluation.proxy` (tests pass a stand-in trainer).
    """
    api = api or proxy_api()
    proxy = config.compare.proxy
    eval_hash = {name: hash_texts(texts) for name, texts in eval_sets.items()}
    results, identical, counts = train_results(config, run, infos, selections, decisions, eval_sets, progress, api)
    table = summarize_results(results, list(eval_sets))
    verdicts = pairwise_verdicts(api, results, list(eval_sets), selections, identical)
    plot = run.path("compare", "proxy.png")
    plot_results(table, plot)
    return {"settings": proxy.model_dump(mode="json"), "eval_sets": {n: {"texts": len(t), "sha256": eval_hash[n]}
                                                                   for n, t in eval_sets.items()},
            **counts, "identical": identical,
            "table": table, "verdicts": verdicts,
            "plot": str(plot.relative_to(run.root))}


def train_results(config: RunConfig, run: RunDir, infos: list[SourceInfo], selections: dict[str, dict[str, Any]],
                  decisions: dict[str, Decisions], eval_sets: dict[str, list[str]],
                  progress: ProgressFactory = null_progress, api: Any = None
                  ) -> tuple[dict[str, list[Any]], dict[str, str], dict[str, int]]:
    """Every (selection, seed) result, trained or reused from ``compare/proxy/`` of `run`; returns the
    results per selection (in seed order), the identical selections (:func:`identical_selections`)
    and the counts trained, reused and shared."""
    api = api or proxy_api()
    proxy = config.compare.proxy
    eval_hash = {name: hash_texts(texts) for name, texts in eval_sets.items()}
    identical = identical_selections({name: decisions[name] for name in selections})
    corpus = run.stage_fingerprint("ingest")
    results: dict[str, list[Any]] = {}
    trained = reused = shared = 0
    task = progress("proxy training (selections x seeds)", len(selections) * proxy.seeds)
    for name, summary in selections.items():
        results[name] = []
        for seed in range(proxy.seeds):
            stamp = {"version": VERSION, "selection": name, "records": f"{corpus}:{kept_digest(decisions[name])}",
                     "selection_fingerprint": summary.get("fingerprint"), "seed": seed, "eval_sets": eval_hash}
            result, legacy = _stored(api, result_path(run, name, seed), stamp, proxy)
            if legacy is not None:  # stored before the records key: stamped with it, for the next run
                atomic_write_text(result_path(run, name, seed), json.dumps({**legacy, **stamp}, indent=1) + "\n")
            if result is None:
                twin = identical.get(name)
                if twin is not None:  # the same kept records, so the same training bytes: its result
                    result = results[twin][seed]
                    shared += 1
                else:
                    texts = kept_texts(config, infos, decisions[name])
                    result = api.train_proxy(texts, eval_sets, proxy, seed, progress)
                    trained += 1
                envelope = {**stamp, "result": json.loads(result.to_json())}
                if twin is not None:
                    envelope["same_records_as"] = twin
                atomic_write_text(result_path(run, name, seed), json.dumps(envelope, indent=1) + "\n")
            else:
                reused += 1
            results[name].append(result)
            task.advance()
    task.close()
    return results, identical, {"trained": trained, "reused": reused, "shared": shared}


def identical_selections(decisions: dict[str, Decisions]) -> dict[str, str]:
    """Each selection that keeps exactly the records an earlier one (in the given order) keeps,
    mapped to that earlier one."""
    first: dict[str, str] = {}
    twins: dict[str, str] = {}
    for name, d in decisions.items():
        digest = kept_digest(d)
        if digest in first:
            twins[name] = first[digest]
        else:
            first[digest] = name
    return twins


def kept_digest(decisions: Decisions) -> str:
    """SHA-256 of which rows (in corpus order) a selection keeps."""
    kept = np.asarray(decisions.kept, dtype=bool)
    return hashlib.sha256(len(kept).to_bytes(8, "little") + np.packbits(kept).tobytes()).hexdigest()


# Keys that say which training bytes a result came from: the kept records, or (results stored
# before that key existed) the selection's fingerprint.
_IDENTITY = ("records", "selection_fingerprint")


def _stored(api: Any, path: Path, stamp: dict[str, Any], proxy: Any) -> tuple[Any, dict[str, Any] | None]:
    """The stored result if it was built from exactly these records, eval texts and settings (else
    None), and its envelope if it matched by the older key only (None otherwise)."""
    if not path.exists():
        return None, None
    try:
        envelope = read_json(path)
        result = api.ProxyResult.from_json(json.dumps(envelope["result"]))
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("proxy result %s is unreadable; training again", path)
        return None, None
    same_bytes = (envelope.get("records") == stamp["records"] if "records" in envelope
                  else envelope.get("selection_fingerprint") == stamp["selection_fingerprint"])
    if (not same_bytes or any(envelope.get(k) != v for k, v in stamp.items() if k not in _IDENTITY)
            or not result.matches(proxy)):
        log.info("proxy result %s is stale; training again", path)
        return None, None
    return result, (None if "records" in envelope else envelope)


def kept_texts(config: RunConfig, infos: list[SourceInfo], decisions: Decisions) -> Iterator[str]:
    """Full text of every kept record of a selection, in corpus order (streamed: the trainer draws its
    seeded byte budget from this in one pass)."""
    row = 0
    for info in infos:
        source = config.source(info.name)
        for shard in info.shards:
            for item in iter_shard_records(config, source, shard, info.format):
                if decisions.kept[row] and isinstance(item, Record):
                    yield full_text(item)
                row += 1


def read_eval_sets(config: RunConfig) -> dict[str, list[str]]:
    """Each eval set's record texts, read like a source, up to the bytes the trainer evaluates."""
    from mira.io.readers import plan_shards

    sets = config.compare.eval_sets
    if not sets:
        raise ConfigError("compare.proxy.enabled needs compare.eval_sets (held-out data shaped like `sources`)")
    limit = config.compare.proxy.eval_bytes + 1
    out: dict[str, list[str]] = {}
    for source in sets:
        texts: list[str] = []
        size = 0
        fmt = _eval_format(config, source)
        shards = plan_shards(source, config.ingest.shard_records, config.ingest.max_record_bytes, config.storage)
        for shard in shards:
            for item in iter_shard_records(config, source, shard, fmt):
                if isinstance(item, Record):
                    texts.append(full_text(item))
                    size += len(texts[-1].encode("utf-8")) + 1
                if size >= limit:
                    break
            if size >= limit:
                break
        if not texts:
            raise ConfigError(f"compare.eval_sets {source.name!r} has no usable record ({source.path})")
        out[source.name] = texts
    return out


def _eval_format(config: RunConfig, source: SourceConfig) -> str:
    if source.format != "auto":
        return source.format
    from mira.corpus.records import detect_source_format
    from mira.io.readers import iter_shard, plan_shards

    shards = plan_shards(source, config.ingest.shard_records, config.ingest.max_record_bytes, config.storage)
    samples = (raw.data for shard in shards[:1] for raw in itertools.islice(
        iter_shard(shard, config.ingest.max_record_bytes, storage=config.storage), 64) if raw.data)
    fmt = detect_source_format(samples)
    if fmt is None:
        raise ConfigError(f"cannot detect the format of compare.eval_sets {source.name!r}; set its `format`")
    return fmt


def hash_texts(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace") + b"\0")
    return digest.hexdigest()[:16]


def summarize_results(results: dict[str, list[Any]], eval_names: list[str]) -> dict[str, Any]:
    """Mean and spread (sample standard deviation over seeds, min, max) of bpb and loss."""
    table: dict[str, Any] = {}
    for name, runs in results.items():
        table[name] = {}
        for eval_name in eval_names:
            entry: dict[str, Any] = {"seeds": len(runs)}
            for metric in ("bpb", "loss"):
                values = np.array([getattr(r.eval[eval_name], metric) for r in runs], dtype=np.float64)
                entry[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
                                 else None, "min": float(values.min()), "max": float(values.max()),
                                 "values": [float(v) for v in values]}
            table[name][eval_name] = entry
    return table


def pairwise_verdicts(api: Any, results: dict[str, list[Any]], eval_names: list[str],
                      selections: dict[str, dict[str, Any]], identical: dict[str, str] | None = None
                      ) -> list[dict[str, Any]]:
    """A verdict on bits per byte (lower is better) for every pair of selections and eval set;
    pairs with source-preserving random come first. `identical` (:func:`identical_selections`) marks
    pairs that keep the same records: ``same_records`` true, outside the Holm family (they cannot differ)."""
    twin = identical or {}
    names = list(results)
    random_names = [n for n in names if selections[n].get("method") == BASELINE]
    pairs = [(a, b) for b in random_names for a in names if a != b]
    # An ablation (compare.ablate) is judged against the selection it was taken from, not every other.
    ablation_of: dict[str, str | None] = {n: (selections[n].get("_ablation") or {}).get("of") for n in names}
    pairs += [(a, base) for a, base in ablation_of.items() if base is not None and base in results]
    pairs += [(a, b) for a, b in itertools.combinations(names, 2)
              if not ablation_of[a] and not ablation_of[b] and (a, b) not in pairs and (b, a) not in pairs]
    out = []
    for a, b in pairs:
        for eval_name in eval_names:
            # Seed k of every selection is a pair (the same initial weights and batch order): paired.
            values_a = [r.eval[eval_name].bpb for r in results[a]]
            values_b = [r.eval[eval_name].bpb for r in results[b]]
            verdict = api.verdict(values_a, values_b, labels=(a, b))
            out.append({"a": a, "b": b, "eval_set": eval_name, "metric": "bpb", "vs_random": b in random_names,
                        "same_records": twin.get(a, a) == twin.get(b, b),
                        **{k: _clean(v) for k, v in verdict.items()}})
    correct_vs_baseline(out)
    for v in out:
        v["better"] = (v["a"] if v["diff"] < 0 else v["b"]) if v.get("beyond_noise") else None
    return out


def correct_vs_baseline(verdicts: list[dict[str, Any]]) -> None:
    """Holm over the family of every method against the baseline on every eval set: with 8 methods
    and 3 eval sets that is 24 tests, and one lucky seed draw among them is likely at plain alpha.
    Each such verdict gets ``p_holm`` and ``family`` and is beyond noise only when ``p_holm`` is
    below alpha; the other pairs keep their plain p (``p_holm`` None). A method that keeps random's
    very records is no test: it stays out of the family. In place."""
    family = [v for v in verdicts if v["vs_random"] and v.get("p") is not None and not v.get("same_records")]
    for v, adjusted in zip(family, holm([v["p"] for v in family]), strict=True):
        alone = bool(v.get("beyond_noise"))
        v.update(p_holm=adjusted, family=len(family), beyond_noise=adjusted < float(v.get("alpha") or 0.05))
        text = v["text"].replace("beyond seed noise", "beyond seed noise alone, within it over the family") \
            if alone and not v["beyond_noise"] else v["text"]
        v["text"] = f"{text}; Holm p={adjusted:.3g} over {len(family)} tests"
    for v in verdicts:
        v.setdefault("p_holm", None)
        v.setdefault("family", None)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def plot_results(table: dict[str, Any], path: Path) -> None:
    """One panel per eval set: mean bits per byte per selection, bars = min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from mira.io.files import atomic_path

    names = list(table)
    eval_names = list(next(iter(table.values()))) if table else []
    fig, axes = plt.subplots(1, max(1, len(eval_names)), figsize=(1.6 + 3.2 * max(1, len(eval_names)),
                                                                    0.9 + 0.38 * max(1, len(names))), squeeze=False)
    for ax, eval_name in zip(axes[0], eval_names, strict=False):
        means = [table[n][eval_name]["bpb"]["mean"] for n in names]
        low = [m - table[n][eval_name]["bpb"]["min"] for n, m in zip(names, means, strict=True)]
        high = [table[n][eval_name]["bpb"]["max"] - m for n, m in zip(names, means, strict=True)]
        ys = np.arange(len(names))
        colors = ["#c2474f" if n.startswith(f"{BASELINE}-") else "#3b6ea8" for n in names]
        ax.errorbar(means, ys, xerr=[low, high], fmt="none", ecolor="#52606d", capsize=3)
        ax.scatter(means, ys, c=colors, zorder=3)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xlabel("bits per byte (lower is better)")
        ax.set_title(eval_name)
        ax.grid(axis="x", color="#e4e7eb")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # No metadata: the same results give the same bytes.
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
