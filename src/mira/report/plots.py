"""Matplotlib figures rendered to inline SVG (no files, no network, text kept as text).

matplotlib is imported inside the functions (STYLE.md: nothing heavy at import time) and always
with the Agg backend, so the report renders on a headless machine. Each SVG gets a per-figure
hash salt, so the ids matplotlib generates (clip paths) never collide between figures inlined
into the same page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mira.report.html import esc

GROUP_COLORS = ["#3b6ea8", "#d9822b", "#3d9a6a", "#c2474f", "#7d62b3", "#8c6d4f", "#c7669e", "#6f7782"]
INK = "#1f2933"
GRID = "#e4e7eb"


def group_color(index: int) -> str:
    return GROUP_COLORS[index % len(GROUP_COLORS)]


def shade(color: str, step: int, steps: int) -> str:
    """The same hue, lighter for later members of a group (sources inside a group)."""
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], float)
    mix = 0.55 * step / max(1, steps - 1) if steps > 1 else 0.0
    out = rgb + (255 - rgb) * mix
    return "#" + "".join(f"{int(v):02x}" for v in out)


def _pyplot(name: str) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "none", "svg.hashsalt": f"mira-{name}",
        "font.family": "sans-serif", "font.sans-serif": ["Inter", "Helvetica", "Arial", "DejaVu Sans"],
        "font.size": 9, "axes.edgecolor": "#9aa5b1", "axes.labelcolor": INK, "text.color": INK,
        "xtick.color": "#52606d", "ytick.color": "#52606d", "axes.spines.top": False,
        "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold",
    })
    return plt


def _svg(fig: Any, name: str, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    # No metadata: a date inside would make every render differ and says nothing to a reader.
    fig.savefig(buffer, format="svg", bbox_inches="tight", transparent=True, metadata={"Date": None}, dpi=160)
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG lives in HTML
    svg = re.sub(r"<metadata>.*?</metadata>|<!--.*?-->", "", svg, flags=re.S)
    # Artist ids ("figure_1", "axes_1") repeat in every figure; referenced ids are hashes without "_".
    svg = re.sub(r' id="[^"]*_[^"]*"', "", svg)
    # Keep the viewBox and let CSS scale the figure down with the page, never up past its natural
    # size (a small figure blown up to the page width has huge text).
    svg = re.sub(r'<svg([^>]*?) width="([^"]*)" height="[^"]*"', r'<svg\1 style="max-width: min(100%, \2)"', svg,
                 count=1)
    svg = svg.replace("<svg", f'<svg class="plot" data-plot="{esc(name)}" role="img" aria-label="{esc(alt)}"', 1)
    return f'<figure class="plot-wrap">{svg}</figure>'


def similarity_heatmap(sources: Sequence[str], matrix: np.ndarray, groups: Sequence[tuple[str, int, int]]) -> str:
    """Source x source cosine similarity; `groups` = (label, first index, end index) blocks."""
    plt = _pyplot("similarity")
    n = len(sources)
    size = min(9.0, 2.4 + 0.42 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0)
    ax.set_xticks(range(n), sources, rotation=50, ha="right")
    ax.set_yticks(range(n), sources)
    ax.spines[:].set_visible(False)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.75 else INK)
    for index, (label, start, end) in enumerate(groups):
        # A white underlay keeps the group's outline visible on any cell colour.
        for color, width in (("white", 5.0), (group_color(index), 2.4)):
            ax.add_patch(plt.Rectangle((start - 0.5, start - 0.5), end - start, end - start, fill=False,
                                       edgecolor=color, linewidth=width))
        ax.text(end - 0.55, start - 0.4, label, ha="right", va="top", fontsize=8, fontweight="bold", color="white")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="cosine similarity of source means")
    return _svg(fig, "similarity", "source similarity heatmap with group boundaries")


def k_scores(scores: dict[int, float], chosen: int | None) -> str:
    plt = _pyplot("kscores")
    ks = sorted(scores)
    fig, ax = plt.subplots(figsize=(3.6, 2.4))
    colors = [GROUP_COLORS[0] if k == chosen else "#b8c2cc" for k in ks]
    ax.bar([str(k) for k in ks], [scores[k] for k in ks], color=colors)
    for k in ks:
        ax.text(str(k), scores[k], f"{scores[k]:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("k (number of groups)")
    ax.set_ylabel("silhouette")
    ax.grid(axis="y", color=GRID)
    ax.set_axisbelow(True)
    return _svg(fig, "kscores", "silhouette score per k")


def score_violins(groups: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, float, int]]]],
                  bins: np.ndarray) -> str:
    """Violins drawn from streamed histograms: groups = (label, [(source, hist, median, n)])."""
    plt = _pyplot("scores")
    columns = sum(max(1, len(members)) for _, members in groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * columns + 1.5), 3.6))
    centers = (bins[:-1] + bins[1:]) / 2
    x, ticks, labels = 0, [], []
    for gi, (label, members) in enumerate(groups):
        start = x
        for si, (source, hist, median, n) in enumerate(members):
            color = shade(group_color(gi), si, len(members))
            if n and hist.sum():
                width = 0.42 * hist / hist.max()
                ax.fill_betweenx(centers, x - width, x + width, color=color, alpha=0.9, linewidth=0)
                ax.plot([x - 0.3, x + 0.3], [median, median], color=INK, linewidth=1.4)
            else:
                ax.text(x, 5, "no scores", ha="center", va="center", rotation=90, color="#7b8794", fontsize=8)
            ticks.append(x)
            labels.append(f"{source}\n(n={n:,})")
            x += 1
        ax.text((start + x - 1) / 2, 10.6, label, ha="center", va="bottom", fontsize=9, fontweight="bold",
                color=group_color(gi))
        if gi < len(groups) - 1:
            ax.axvline(x - 0.5, color="#cbd2d9", linewidth=1, linestyle="--")
    ax.set_xticks(ticks, labels, rotation=35, ha="right", fontsize=8)
    ax.set_xlim(-0.6, x - 0.4)
    ax.set_ylim(0, 10.5)
    ax.set_ylabel("aggregate score (0–10)")
    ax.grid(axis="y", color=GRID)
    ax.set_axisbelow(True)
    return _svg(fig, "scores", "score distribution per source, grouped by group")


def retention_bars(rows: Sequence[tuple[str, int, float, float]], budget: float | None) -> str:
    """Retained share per source: rows = (source, group index, token share, record share)."""
    plt = _pyplot("retention")
    fig, ax = plt.subplots(figsize=(7.5, 0.34 * len(rows) + 1.1))
    y = np.arange(len(rows))[::-1]
    tokens = [r[2] if r[2] == r[2] else 0 for r in rows]
    records = [r[3] if r[3] == r[3] else 0 for r in rows]
    ax.barh(y + 0.18, tokens, height=0.36, color=[group_color(r[1]) for r in rows], label="tokens")
    ax.barh(y - 0.18, records, height=0.36, color=[shade(group_color(r[1]), 1, 2) for r in rows], label="records")
    for yi, t in zip(y, tokens):
        ax.text(t + 0.01, yi + 0.18, f"{100 * t:.0f}%", va="center", fontsize=7.5)
    if budget is not None and 0 < budget <= 1:
        ax.axvline(budget, color=INK, linestyle=":", linewidth=1.2)
        ax.text(budget, len(rows) - 0.35, f" budget {100 * budget:.0f}%", fontsize=8, va="bottom")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xlim(0, 1.08)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{100 * v:.0f}%"))
    ax.set_xlabel("retained share (dark: tokens, light: records)")
    ax.grid(axis="x", color=GRID)
    ax.set_axisbelow(True)
    return _svg(fig, "retention", "retained share per source")


def length_scatter(panels: Sequence[tuple[str, int, Sequence[tuple[str, np.ndarray, np.ndarray]], float]],
                   thresholds: dict[str, float]) -> str:
    """log tokens vs score, one panel per group: (label, group index, [(source, tokens, scores)], rho)."""
    plt = _pyplot("length")
    count = max(1, len(panels))
    cols = min(3, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    for ax, (label, gi, members, rho) in zip(axes.flat, panels):
        for si, (source, tokens, scores) in enumerate(members):
            if len(tokens):
                # Rasterized: thousands of points as vectors would make the page megabytes.
                ax.scatter(np.maximum(tokens, 1), scores, s=7, alpha=0.5, linewidths=0, rasterized=True,
                           color=shade(group_color(gi), si, len(members)), label=source)
        ax.set_xscale("log")
        ax.set_ylim(0, 10)
        title = label if len(label) < 38 else label[:36] + "…"
        ax.set_title(f"{title}\nSpearman ρ(length, score) = {rho:+.2f}" if rho == rho else title, fontsize=9)
        if label in thresholds:
            ax.axhline(thresholds[label], color=INK, linestyle=":", linewidth=1)
        ax.set_xlabel("record tokens (log)")
        ax.grid(color=GRID)
        ax.set_axisbelow(True)
        if any(len(tokens) for _, tokens, _ in members):  # a group with nothing scored has no points to name
            ax.legend(fontsize=7, markerscale=2.5, frameon=False, loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel("aggregate score")
    fig.tight_layout()
    return _svg(fig, "length", "score against record length per group")
