"""Ablations for `mira compare`: MIRA's selection without one cell (or one source's cells) at a time.

The reliability mask says whether a student agrees with its teacher on an anchor, not whether
ranking by that anchor selects better data: a single cell the mask calls reliable can make a MIRA
selection train worse proxies than random, and MIRA without it no worse. ``compare.ablate``
makes that experiment one setting: for every cell the MIRA selection of ``selection.mode`` ranks
by ("cells"), or every source it ranks ("sources"), one more compared selection masks it
(:attr:`mira.core.config.MethodSpec.exclude`, applied like ``reliability.exclude``), and proxy training
judges each against the selection it was taken from.
"""

from __future__ import annotations

from typing import Any

from mira.core.config import ConfigError, MethodSpec, RunConfig
from mira.run.rundir import RunDir


def used_cells(config: RunConfig, run: RunDir) -> dict[str, list[str]]:
    """Source -> the anchors MIRA ranks it by under the current reliability config (unmasked cells:
    its own, or the group cell it falls back to); sources with none are left out."""
    from mira.artifacts.scores import SCORES_SUMMARY
    from mira.scoring.reliability import current_mask, source_cell

    used: dict[str, list[str]] = {}
    masks: dict[str, dict[str, Any] | None] = {}
    for source, entry in SCORES_SUMMARY.load(run).sources.items():
        group = entry.group
        if group is None:
            continue
        if group not in masks:
            masks[group] = current_mask(run, group, config.reliability)
        mask = masks[group]
        if mask is None:
            continue
        anchors = [a for a in mask["anchors"] if not source_cell(mask, source, a)["masked"]]
        if anchors:
            used[source] = anchors
    return used


def ablation_specs(config: RunConfig, run: RunDir) -> list[MethodSpec]:
    """The entries ``compare.ablate`` adds: the MIRA entry of ``selection.mode`` without each cell or source."""
    how = config.compare.ablate
    if how is None:
        return []
    mode = config.selection.mode
    if not any(s.method == "mira" and s.mode == mode and not s.exclude for s in config.compare.methods):
        raise ConfigError(f"compare.ablate needs the selection it ablates in compare.methods: "
                          f"{{method: mira, mode: {mode}}} (selection.mode)")
    used = used_cells(config, run)
    entries = ([[f"{s}/*"] for s in used] if how == "sources"
               else [[f"{s}/{a}"] for s, anchors in used.items() for a in anchors])
    listed = {tuple(sorted(s.exclude)) for s in config.compare.methods if s.method == "mira" and s.mode == mode}
    return [MethodSpec(method="mira", mode=mode, exclude=e) for e in entries if tuple(e) not in listed]


def base_name(selection: Any) -> str:
    """The default name of a selection config (an ablation's is its base's plus what it leaves out)."""
    from mira.selection.named import default_name

    unit, value = selection.budget_unit()
    return default_name(selection.method, selection.mode, value, unit)


def ablation_name(base: str, exclude: list[str]) -> str:
    """The selection name of `base` without the cells `exclude`: ``<base>-without-<source>.<anchor>``
    (``all`` for ``*``), a valid selection name."""
    parts = [entry.replace("*", "all").replace("/", ".") for entry in exclude]
    return f"{base}-without-{'-'.join(parts)}"


def suggest_exclusions(config: RunConfig, methods: list[dict[str, Any]],
                       verdicts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cells whose ablation trained better proxies than its base beyond noise, as a
    ``reliability.exclude`` to try; None when nothing was ablated or judged.

    Every ablation is tested on every eval set, so the tests form one family and a lucky seed
    draw somewhere is likely (8 cells x 2 eval sets at alpha 0.05: a 56% chance of at least one
    false "hurt"). A cell is suggested only when its "better without it" survives Holm's
    correction over the whole family and no eval set is worse without it at plain alpha. The eval
    sets that judged it also chose it: the next compare, with the suggestion applied, measures the
    cells together, and a held-out set the suggestion was not drawn from confirms it.
    """
    ablated = {m["name"]: m for m in methods if m.get("ablation_of")}
    family = [v for v in verdicts if v["a"] in ablated and v["b"] == ablated[v["a"]]["ablation_of"]
              and v.get("p") is not None]
    if not family:
        return None
    alpha = float(family[0].get("alpha") or 0.05)
    held = _holm(family, alpha)
    cells: list[dict[str, Any]] = []
    for name, method in ablated.items():
        own = [v for v in family if v["a"] == name]
        hurt = [v for v in own if id(v) in held and v["diff"] < 0]
        harmed = [v for v in own if v["diff"] > 0 and v["p"] < alpha]
        if hurt and not harmed:
            cells.append({"exclude": list(method["exclude"]), "selection": name, "evidence": [
                {k: v.get(k) for k in ("eval_set", "diff", "low", "high", "p")} for v in hurt]})
    new = [e for c in cells for e in c["exclude"] if e not in config.reliability.exclude]
    return {"tests": len(family), "alpha": alpha, "correction": "holm", "cells": cells,
            "exclude": list(config.reliability.exclude) + new if new else []}


def _holm(family: list[dict[str, Any]], alpha: float) -> set[int]:
    """ids of the verdicts Holm's step-down procedure keeps significant at family-wise `alpha`."""
    kept: set[int] = set()
    ordered = sorted(family, key=lambda v: v["p"])
    for i, v in enumerate(ordered):
        if v["p"] > alpha / (len(ordered) - i):
            break
        kept.add(id(v))
    return kept


def suggestion_text(suggestion: dict[str, Any]) -> str:
    """One line on what :func:`suggest_exclusions` found, with the override that applies it."""
    tests = f"Holm-corrected over {suggestion['tests']} tests at alpha {suggestion['alpha']:g}"
    if not suggestion["cells"]:
        return f"ablations: no cell is better left out beyond noise ({tests})"
    found = ", ".join(e for c in suggestion["cells"] for e in c["exclude"])
    if not suggestion["exclude"]:
        return f"ablations: better without {found} ({tests}); already in reliability.exclude"
    value = "[" + ", ".join(suggestion["exclude"]) + "]"
    return (f"ablations: better without {found} ({tests}); to try it: --set 'reliability.exclude={value}' "
            f"and compare again (the same eval sets chose these cells: confirm on one they were not chosen by)")
